//! `POST /goim/push/{keys,mids,room,all}`: the body is the message; the reply is sent once
//! the push is committed on a majority, with its log seq (and room offset for rooms).
//! [ext] An `Idempotency-Key` header makes a retried push (to any node) apply once.
//! In the hidden fault-testing mode `--unsafe-ack-before-commit` the reply (seq 0) is sent
//! as soon as the push is handed to Raft, without waiting for the commit.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use goim_net::api;
use goim_raft::command::PushTo;
use goim_raft::WriteError;
use serde_json::json;

use super::params::TargetLimits;
use super::{ok, ApiError, ApiResult, Params};
use crate::logic::{Logic, Message};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Which `/goim/push/*` route was called.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    Keys,
    Mids,
    Room,
    All,
}

/// The route's target, from its query parameters (goim's names), within `limits`.
fn target(route: Route, p: &Params, limits: &TargetLimits) -> Result<PushTo, ApiError> {
    Ok(match route {
        Route::Keys => PushTo::Keys(p.keys(limits)?),
        Route::Mids => PushTo::Mids(p.mids(limits)?),
        Route::Room => PushTo::Room(p.room(limits)?),
        Route::All => {
            // goim's `speed` throttles broadcast fan-out; validated here, not applied yet.
            p.parsed::<u32>("speed")?;
            PushTo::All
        }
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value.to_str().unwrap_or_default();
    Ok(Some(api::idempotency_key("Idempotency-Key", key)?.to_owned()))
}

pub async fn handle(
    route: Route,
    State(logic): State<Arc<Logic>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = Params::parse(q);
    let op = p.operation()?;
    let to = target(route, &p, &logic.target_limits())?;
    let key = idempotency_key(&headers)?;
    let body = body.map_err(|e| ApiError::bad(format!("body: {e}")))?;
    api::body_len("body", body.len(), logic.max_push_body)?;
    let msg = Message { to, op, body, key };
    if logic.unsafe_ack_before_commit {
        tokio::spawn(async move {
            if let Err(e) = logic.push(msg).await {
                tracing::warn!(error = %e, "push acknowledged before commit was not committed");
            }
        });
        return match route {
            Route::Room => ok(json!({ "seq": 0, "room_seq": 0 })),
            _ => ok(json!({ "seq": 0 })),
        };
    }
    let pushed = logic.push(msg).await.map_err(not_committed)?;
    match route {
        Route::Room => ok(json!({ "seq": pushed.seq, "room_seq": pushed.room_seq })),
        _ => ok(json!({ "seq": pushed.seq })),
    }
}

/// A push (or batch) that did not commit: the caller may retry it whole, with the same ids.
pub(super) fn not_committed(e: WriteError) -> ApiError {
    ApiError::internal(format!("push not committed: {e}"))
}
