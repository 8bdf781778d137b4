//! The node's one QUIC endpoint (UDP, default :3119) carrying all cluster traffic. Every
//! bi-stream opens with a `Service` byte; the endpoint routes it to the handler the node
//! registered for that service. Outgoing connections are cached per peer address.
mod certs;
mod endpoint;
mod frame;
mod tls;

pub use certs::write_cluster_certs;
pub use endpoint::{serve_unary, BiStream, QuicEndpoint, StreamHandler};
pub use frame::{body_len, decode_frame, encode_frame, read_frame, write_frame, LEN_PREFIX};
pub use tls::{ClusterTls, SERVER_NAME};

use crate::serial::SerialError;

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("resolve {0}: {1}")]
    Resolve(String, String),
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("read: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    #[error("peer closed the stream before replying")]
    NoReply,
    #[error("timed out")]
    Timeout,
    #[error("no answer from {0} while connecting")]
    DialTimeout(String),
    #[error("codec: {0}")]
    Serial(#[from] SerialError),
    #[error("tls: {0}")]
    Tls(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The code a unary service resets its reply stream with when it cannot decode the request.
pub const UNDECODABLE_REQUEST: u32 = 2;

impl QuicError {
    /// Whether the peer read the request and reset the stream because it could not decode
    /// it: a peer of an earlier version that does not know the message (or a bug).
    pub fn is_undecodable_request(&self) -> bool {
        matches!(
            self,
            QuicError::Read(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code)))
                if code.into_inner() == u64::from(UNDECODABLE_REQUEST)
        )
    }
}
