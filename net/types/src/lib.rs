//! The values every goim crate shares, and nothing that moves them: the one serde codec
//! (`serial`), the push record and the messages roles exchange (`rpc`), the auth body a
//! client sends (`auth`). It depends on neither the network nor a runtime, so the storage
//! crate can use it without compiling QUIC, TLS or HTTP.
pub mod auth;
pub mod rpc;
pub mod serial;
