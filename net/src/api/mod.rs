//! The sans-IO parts of logic's HTTP API: query-parameter parsing (`params`) and what a push
//! may carry (`limits`), kept here beside the other wire formats so the fuzz targets
//! (net/fuzz) reach them without the node.
mod limits;
mod params;

pub use limits::{app_op, body_len, idempotency_key, TargetLimits, MAX_IDEMPOTENCY_KEY};
pub use params::{ParamError, Params};
