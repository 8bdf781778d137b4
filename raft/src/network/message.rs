//! What travels on a `Service::Raft` stream: one request frame, one reply frame.
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::command::{Reply, Request};
use crate::membership::{MembershipChange, MembershipView};
use crate::types::TypeConfig;

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Work only the leader can do, forwarded by a follower.
    Leader(LeaderOp),
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
    /// The request could not be decoded or served.
    Bad(String),
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
}
