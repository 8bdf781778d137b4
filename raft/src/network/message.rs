//! What travels on a `Service::Raft` stream: one request frame, one reply frame.
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::snapshot_chunk::SnapshotChunk;
use crate::command::{Reply, Request};
use crate::membership::{MembershipChange, MembershipView};
use crate::status::MemberStatus;
use crate::types::TypeConfig;

/// A consensus message and the node it is meant for. The process at a voter's address may
/// be another node: the voter's data was lost and a new node, under a new id and with
/// nothing, was started in its place. Answering for the voter it would grant votes and
/// acknowledge entries the voter never held, and a leader lacking committed entries could
/// be elected. So a node serves only the messages addressed to its own id.
#[derive(Debug, Serialize, Deserialize)]
pub struct To<T> {
    pub node: u64,
    pub rpc: T,
}

/// The first five variants are the messages of nodes before `To`, in their order (the codec
/// writes a variant's index): they are served as before, so that voters can be upgraded one
/// at a time; a node sends the addressed ones, and the unaddressed ones only to a peer that
/// cannot read those (`network::client`).
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(SnapshotChunk),
    /// Work only the leader can do, forwarded by a follower.
    Leader(LeaderOp),
    /// This member's view of the cluster (`/cluster/overview` asks every member).
    Status,
    AppendTo(To<AppendEntriesRequest<TypeConfig>>),
    VoteTo(To<VoteRequest<u64>>),
    SnapshotTo(To<SnapshotChunk>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderOp {
    Write(Request),
    Membership(MembershipChange),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    Write(Reply),
    Membership(MembershipView),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpcReply {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Leader(Result<LeaderReply, WriteError>),
    Status(MemberStatus),
    /// The request could not be decoded or served.
    Bad(String),
    /// A consensus message for another node reached this one (its id here).
    Misaddressed(u64),
}

impl RaftRpc {
    /// The node a consensus message is for; `None` for the others (and for the unaddressed
    /// messages of earlier versions), which any member serves.
    pub fn addressed_to(&self) -> Option<u64> {
        match self {
            RaftRpc::AppendTo(to) => Some(to.node),
            RaftRpc::VoteTo(to) => Some(to.node),
            RaftRpc::SnapshotTo(to) => Some(to.node),
            _ => None,
        }
    }

    /// The same message as nodes before `To` sent it.
    pub fn unaddressed(self) -> RaftRpc {
        match self {
            RaftRpc::AppendTo(to) => RaftRpc::Append(to.rpc),
            RaftRpc::VoteTo(to) => RaftRpc::Vote(to.rpc),
            RaftRpc::SnapshotTo(to) => RaftRpc::Snapshot(to.rpc),
            other => other,
        }
    }
}

/// Why a write did not commit. Only `ForwardToLeader` and `NoLeader` are worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteError {
    #[error("not the leader; leader is node {0} at {1}")]
    ForwardToLeader(u64, String),
    #[error("no leader elected yet")]
    NoLeader,
    #[error("raft: {0}")]
    Fatal(String),
    /// The request itself is not acceptable (e.g. removing the last voter).
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("timed out waiting for commit")]
    Timeout,
    /// Too many writes are waiting to be proposed on this node; retry later.
    #[error("busy: too many writes waiting to be proposed")]
    Busy,
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use goim_net::serial;
    use openraft::error::Fatal;
    use openraft::{
        AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId,
        Membership, StorageError, StorageIOError, Vote,
    };

    use super::*;
    use crate::command::{Push, PushTo};

    /// An error `depth` causes deep, for a chain of `AnyError` sources.
    #[derive(Debug)]
    struct Caused(Option<Box<Caused>>);

    impl std::fmt::Display for Caused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("failed")
        }
    }

    impl std::error::Error for Caused {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.as_deref().map(|c| c as _)
        }
    }

    fn failed_append(depth: usize) -> RaftRpcReply {
        let cause = (1..depth).fold(Caused(None), |inner, _| Caused(Some(Box::new(inner))));
        let io = StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, AnyError::new(&cause));
        RaftRpcReply::Append(Err(RaftError::Fatal(Fatal::StorageError(StorageError::IO { source: io }))))
    }

    fn push(n: u64) -> Request {
        let to = PushTo::Keys(vec![format!("k{n}")]);
        Request::Push(Push { id: format!("p{n}"), to, op: 1000, body: "m".into(), ts_ms: n, room_keep: 0 })
    }

    fn nested_batch(depth: usize) -> Request {
        (1..depth).fold(Request::Batch(vec![push(0)]), |inner, _| Request::Batch(vec![inner]))
    }

    /// The deepest messages a node sends decode within the serial codec's depth bound.
    #[test]
    fn real_messages_decode_within_the_depth() {
        let log_id = |index| LogId::new(CommittedLeaderId::new(2, 1), index);
        let nodes = BTreeMap::from([(1, BasicNode::new("a:1")), (2, BasicNode::new("b:1"))]);
        let entries: Vec<Entry<TypeConfig>> = vec![
            Entry { log_id: log_id(5), payload: EntryPayload::Normal(nested_batch(2)) },
            Entry {
                log_id: log_id(6),
                payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2])], nodes)),
            },
        ];
        let append = RaftRpc::AppendTo(To {
            node: 2,
            rpc: AppendEntriesRequest {
                vote: Vote::new_committed(2, 1),
                prev_log_id: Some(log_id(4)),
                entries,
                leader_commit: Some(log_id(4)),
            },
        });
        let decoded: RaftRpc = serial::decode(&serial::encode(&append).unwrap()).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{append:?}"));
        let reply = failed_append(3);
        let decoded: RaftRpcReply = serial::decode(&serial::encode(&reply).unwrap()).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{reply:?}"));
    }

    /// Earlier versions' messages keep their variant indices (the codec's first byte), so a
    /// node reads what a voter not yet upgraded sends, and that voter reads its replies.
    #[test]
    fn the_messages_of_earlier_versions_keep_their_encoding() {
        let index = |v: &RaftRpc| serial::encode(v).unwrap()[0];
        let vote = VoteRequest::new(Vote::new(3, 2), None);
        assert_eq!(index(&RaftRpc::Vote(vote.clone())), 1);
        assert_eq!(index(&RaftRpc::Status), 4);
        assert_eq!(index(&RaftRpc::VoteTo(To { node: 1, rpc: vote.clone() })), 6);
        assert_eq!(index(&RaftRpc::VoteTo(To { node: 1, rpc: vote }).unaddressed()), 1);
        let reply = |v: &RaftRpcReply| serial::encode(v).unwrap()[0];
        assert_eq!(reply(&RaftRpcReply::Bad("x".into())), 5);
        assert_eq!(reply(&RaftRpcReply::Misaddressed(2)), 6);
    }

    /// Regression (net/fuzz `rpc`): a forwarded write of nested batches, or a reply whose
    /// error has a long chain of sources, decoded until the stack overflowed (a few bytes a
    /// level) and aborted the node; both are now decode errors.
    #[test]
    fn deeply_nested_requests_and_replies_are_refused() {
        let write = RaftRpc::Leader(LeaderOp::Write(nested_batch(100)));
        let err = serial::decode::<RaftRpc>(&serial::encode(&write).unwrap()).unwrap_err();
        assert!(err.to_string().contains("nested too deep"), "{err}");
        let reply = failed_append(100);
        let err = serial::decode::<RaftRpcReply>(&serial::encode(&reply).unwrap()).unwrap_err();
        assert!(err.to_string().contains("nested too deep"), "{err}");
    }
}
