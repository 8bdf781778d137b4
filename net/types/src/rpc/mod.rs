//! Messages the roles exchange over QUIC. Roles never import each other: a comet, a logic
//! node and a job meet only through these types. Every stream starts with one `Service`
//! byte, then length-prefixed frames encoded by `crate::serial`. The calls that carry
//! them live in goim-net (`rpc::logic_client`, `quic`).
pub mod logic;
pub mod push;
pub mod record;
pub mod tail;

pub use record::{PushRecord, PushTarget};

/// First byte of every QUIC bi-stream: which service the stream is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Service {
    /// Raft RPCs between logic nodes (append, vote, snapshot, forwarded writes).
    Raft = 1,
    /// Comet → logic unary calls (connect, disconnect, renew online, receive …).
    Logic = 2,
    /// Job ← logic streaming read of the push log.
    Tail = 3,
    /// Job → comet ordered push stream with acks.
    Push = 4,
}

impl Service {
    pub fn from_byte(b: u8) -> Option<Service> {
        match b {
            1 => Some(Service::Raft),
            2 => Some(Service::Logic),
            3 => Some(Service::Tail),
            4 => Some(Service::Push),
            _ => None,
        }
    }
}

/// An error carried back to the caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum RpcError {
    /// The request was understood and refused (bad auth, unknown key …).
    #[error("rejected: {0}")]
    Rejected(String),
    /// This node cannot serve it right now (no leader, shutting down); retry elsewhere/later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request could not be decoded or is not for this service.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The peer answered with a reply of the wrong kind (a version mismatch or a bug).
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
}

impl RpcError {
    pub fn unexpected(reply: &impl std::fmt::Debug) -> RpcError {
        RpcError::UnexpectedReply(format!("{reply:?}"))
    }
}
