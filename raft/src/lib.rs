//! The Raft layer of a logic node: the openraft type configuration (`types`), the replicated
//! commands, one file each (`command`), the Raft network over the node's QUIC endpoint
//! (`network`) and the node's Raft lifecycle: start, self-initialisation, forwarded writes
//! (`cluster`).
pub mod cluster;
pub mod command;
pub mod network;
pub mod types;

pub use cluster::{Cluster, ClusterConfig, StartError};
pub use command::{Reply, Request};
pub use network::WriteError;
pub use types::{Raft, TypeConfig};
