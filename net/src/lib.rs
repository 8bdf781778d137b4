//! The network layer shared by every role: the goim v2 client wire protocol, sans-IO
//! (`packet`), the QUIC endpoint (`quic`), calls to logic with failover (`rpc::logic_client`)
//! and the HTTP API's query parameters (`api`). The values these carry (`rpc`, `serial`)
//! live in goim-types and are re-exported; the Rust client is goim-client. Every decoder
//! of untrusted bytes here is fuzzed (net/fuzz).
pub mod api;
mod log_every;
pub mod packet;
pub mod quic;
pub mod rpc;

pub use goim_types::serial;
pub use log_every::LogEvery;
