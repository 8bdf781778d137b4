//! The sans-IO parts of logic's HTTP API: query-parameter parsing (`params`), kept here
//! beside the other wire formats so the fuzz targets (net/fuzz) reach it without the node.
mod params;

pub use params::{ParamError, Params, TargetLimits};
