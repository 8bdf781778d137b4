//! The messages roles exchange (defined in goim-types, re-exported here so a role needs one
//! import path) and the one thing that moves them here: the failover client to logic.
pub mod logic_client;

pub use goim_types::rpc::*;
