//! Raft over the node's QUIC endpoint: `client` implements openraft's network (one stream
//! per RPC, dialled lazily), `server` answers Raft streams from the local Raft, `message`
//! holds what travels on them (`snapshot_chunk`: a snapshot chunk's data as one byte string).
mod client;
mod message;
mod server;
mod snapshot_chunk;

pub use client::{call_as, QuicNetwork};
pub use message::{LeaderOp, LeaderReply, RaftRpc, RaftRpcReply, To, WriteError};
pub use server::RaftService;
