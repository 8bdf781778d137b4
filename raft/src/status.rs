//! One member's view of the cluster, as any other member can ask for it over the Raft
//! stream (`RaftRpc::Status`): what `/cluster/overview` shows for each logic node, so an
//! overview served by one node covers every member and marks the silent ones down.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::network::{call_as, RaftRpc, RaftRpcReply};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: u64,
    /// openraft's server state: Leader, Follower, Candidate, Learner, Shutdown.
    pub state: String,
    /// The leader this member trusts (see `Cluster::leader`).
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// What the node says about itself (`ClusterConfig::about`: its roles, its HTTP address).
    pub about: String,
}

impl Cluster {
    /// This member's status, as `RaftRpc::Status` answers it.
    pub fn local_status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        MemberStatus {
            node_id: m.id,
            state: format!("{:?}", m.state),
            leader: self.leader(),
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            about: self.about.clone(),
        }
    }

    /// The status of the member at QUIC address `addr`, or why it did not answer in `timeout`.
    pub async fn member_status(&self, addr: &str, timeout: Duration) -> Result<MemberStatus, String> {
        let pick = |reply| match reply {
            RaftRpcReply::Status(s) => Ok(s),
            other => Err(Box::new(other)),
        };
        let call = call_as(&self.endpoint, addr, &RaftRpc::Status, timeout, pick);
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}
