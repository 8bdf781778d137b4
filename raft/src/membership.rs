//! Online membership change, run on the leader: `Add` brings a node in as a learner, waits
//! until it has caught up, then makes it a voter; `Remove` takes a voter out (one joint
//! consensus step each, as openraft does it).
use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::network::WriteError;
use crate::types::Raft;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add node `id`, reachable at QUIC address `addr`, as a voter.
    Add { id: u64, addr: String },
    /// Remove voter (or learner) `id`.
    Remove { id: u64 },
}

/// The membership after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    pub nodes: BTreeMap<u64, String>,
}

impl MembershipView {
    pub fn of(raft: &Raft) -> MembershipView {
        let m = raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let nodes: BTreeMap<u64, String> = membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
        let learners = nodes.keys().filter(|id| !voters.contains(id)).copied().collect();
        MembershipView { voters, learners, nodes }
    }
}

fn map_err(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> WriteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match (f.leader_id, f.leader_node) {
            (Some(id), Some(node)) => WriteError::ForwardToLeader(id, node.addr),
            _ => WriteError::NoLeader,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            WriteError::Rejected(e.to_string())
        }
        other => WriteError::Fatal(other.to_string()),
    }
}

pub async fn change_local(raft: &Raft, change: MembershipChange) -> Result<MembershipView, WriteError> {
    let voters: BTreeSet<u64> = MembershipView::of(raft).voters;
    match change {
        MembershipChange::Add { id, addr } => {
            raft.add_learner(id, BasicNode { addr }, true).await.map_err(map_err)?;
            if !voters.contains(&id) {
                let mut next = voters;
                next.insert(id);
                raft.change_membership(next, false).await.map_err(map_err)?;
            }
        }
        MembershipChange::Remove { id } => {
            let mut next = voters;
            let was_voter = next.remove(&id);
            if next.is_empty() {
                return Err(WriteError::Rejected("cannot remove the last voter".into()));
            }
            if was_voter || MembershipView::of(raft).learners.contains(&id) {
                raft.change_membership(next, false).await.map_err(map_err)?;
            }
        }
    }
    Ok(MembershipView::of(raft))
}
