//! The network vocabulary shared by every role: the goim v2 client wire protocol
//! (`packet`), a Rust goim client (`client`), the one serde codec (`serial`), the QUIC
//! endpoint (`quic`), the internal RPC messages that roles exchange (`rpc`) and the HTTP
//! API's query parameters (`api`). Every decoder of untrusted bytes here is fuzzed (net/fuzz).
pub mod api;
pub mod client;
pub mod packet;
pub mod quic;
pub mod rpc;
pub mod serial;
