//! The network vocabulary shared by every role: the goim v2 client wire protocol
//! (`packet`), a Rust goim client (`client`), the one serde codec (`serial`), the QUIC
//! endpoint (`quic`) and the internal RPC messages that roles exchange (`rpc`).
pub mod client;
pub mod packet;
pub mod quic;
pub mod rpc;
pub mod serial;
