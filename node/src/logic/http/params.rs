//! Query parameters the goim way: repeated keys form lists (`mids=1&mids=2`), and, as an
//! extension, comma-separated values do too (`mids=1,2`). The parsing is sans-IO in
//! `goim_net::api` (fuzzed there, net/fuzz); here its errors become -400 replies.
pub use goim_net::api::{Params, TargetLimits};

use super::ApiError;

impl From<goim_net::api::ParamError> for ApiError {
    fn from(e: goim_net::api::ParamError) -> ApiError {
        ApiError::bad(e.0)
    }
}
