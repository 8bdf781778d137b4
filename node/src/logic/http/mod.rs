//! Logic's HTTP API: goim's `/goim/*` routes with goim's reply shape
//! (`{"code":0,"message":"","data":…}`, HTTP 200 even for errors, code -400/-500), plus the
//! extensions of docs/PROTOCOL.md §4.2 (push-log reads, history, room members, cluster
//! status and overview).
mod cluster;
mod history;
mod log;
mod nodes;
mod online;
mod overview;
mod params;
mod push;
mod push_batch;
mod push_lines;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;

use super::Logic;
use crate::auth;

pub use params::Params;
pub use push_batch::PATH as BATCH_PATH;
pub use push_lines::MAX_BYTES as BATCH_MAX_BYTES;

/// The logic routes. With an API token, pushes and `/cluster/*` need it (reads too with
/// `--api-token-reads`); see `auth::api`.
pub fn routes(logic: Arc<Logic>) -> Router {
    let api = logic.api_auth.clone();
    let guarded = Router::new()
        .route("/goim/push/keys", post(|s, q, h, b| push::handle(push::Route::Keys, s, q, h, b)))
        .route("/goim/push/mids", post(|s, q, h, b| push::handle(push::Route::Mids, s, q, h, b)))
        .route("/goim/push/room", post(|s, q, h, b| push::handle(push::Route::Room, s, q, h, b)))
        .route("/goim/push/all", post(|s, q, h, b| push::handle(push::Route::All, s, q, h, b)))
        .route(push_batch::PATH, post(push_batch::handle))
        .route("/cluster/status", get(cluster::status))
        .route("/cluster/add", post(cluster::add))
        .route("/cluster/remove", post(cluster::remove))
        .route_layer(middleware::from_fn_with_state(api.clone(), auth::api::require));
    let reads = Router::new()
        .route("/goim/online/top", get(online::top))
        .route("/goim/online/room", get(online::room))
        .route("/goim/online/total", get(online::total))
        .route("/goim/online/members", get(online::members))
        .route("/goim/nodes/weighted", get(nodes::weighted))
        .route("/goim/nodes/instances", get(nodes::instances))
        .route("/goim/log", get(log::read))
        .route("/goim/history/room", get(history::room))
        .route("/cluster/overview", get(overview::overview));
    let reads = if api.reads {
        reads.route_layer(middleware::from_fn_with_state(api, auth::api::require))
    } else {
        reads
    };
    let reads = reads.route_layer(middleware::map_response(any_origin));
    guarded.merge(reads).with_state(logic)
}

/// Reads may be fetched by a page of another node (the web demo turns to another logic node
/// when its own stops answering): simple GETs, no credentials, so any origin may read them.
/// With `--api-token-reads` a browser must send the token, which this does not allow.
async fn any_origin(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, axum::http::HeaderValue::from_static("*"));
    response
}

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    code: i32,
    message: String,
    data: T,
}

pub type ApiResult = Result<Response, ApiError>;

pub fn ok(data: impl Serialize) -> ApiResult {
    Ok(Json(Envelope { code: 0, message: String::new(), data }).into_response())
}

/// A failed API call, replied in goim's shape: -400 the caller must fix the request, -500
/// something failed on our side (both HTTP 200, as goim answers); [ext] -413 (HTTP 413) a
/// batch over its limits, refused whole. Counted either way.
#[derive(Debug)]
pub struct ApiError {
    code: i32,
    message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError { code: -400, message: message.into() }
    }

    pub fn internal(message: impl ToString) -> ApiError {
        ApiError { code: -500, message: message.to_string() }
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError { code: -413, message: message.into() }
    }
}

impl From<goim_storage::StorageError> for ApiError {
    fn from(e: goim_storage::StorageError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (counter, status) = match self.code {
            -400 => ("goim_http_bad_requests_total", StatusCode::OK),
            -413 => ("goim_http_bad_requests_total", StatusCode::PAYLOAD_TOO_LARGE),
            _ => ("goim_http_errors_total", StatusCode::OK),
        };
        metrics::counter!(counter).increment(1);
        (status, Json(Envelope { code: self.code, message: self.message, data: () })).into_response()
    }
}
