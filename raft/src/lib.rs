//! The Raft layer of a logic node: the openraft type configuration (`types`), the replicated
//! commands, one file each (`command`), the Raft network over the node's QUIC endpoint
//! (`network`), the node's Raft lifecycle: start, self-initialisation, forwarded writes
//! (`cluster`), fast failover when a peer's process dies (`liveness`), a stranded leader
//! stepping aside (`check_quorum`), membership change (`membership`), group commit of client
//! writes (`proposer`) and what a member tells another about itself (`status`).
mod atomic_instant;
mod check_quorum;
pub mod cluster;
pub mod command;
mod liveness;
pub mod membership;
pub mod network;
mod proposer;
pub mod status;
pub mod types;

pub use cluster::{Cluster, ClusterConfig, StartError};
pub use command::{Reply, Request};
pub use network::WriteError;
pub use status::MemberStatus;
pub use types::{Raft, TypeConfig};
