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
use goim_raft::command::PushTo;
use serde_json::json;

use super::params::TargetLimits;
use super::{ok, ApiError, ApiResult, Params};
use crate::logic::Logic;

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 256;

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

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_KEY_LEN => Ok(Some(k)),
        Some(_) => {
            Err(ApiError::bad(format!("Idempotency-Key: 1 to {MAX_KEY_LEN} visible ASCII characters")))
        }
    }
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
    let limits = TargetLimits {
        targets: logic.max_push_targets,
        key_len: logic.max_key_len,
        room_len: logic.max_room_len,
    };
    let to = target(route, &p, &limits)?;
    let key = idempotency_key(&headers)?;
    let body = body.map_err(|e| ApiError::bad(format!("body: {e}")))?;
    if body.len() > logic.max_push_body {
        return Err(ApiError::bad(format!(
            "body: {} bytes exceeds the limit of {}",
            body.len(),
            logic.max_push_body
        )));
    }
    if logic.unsafe_ack_before_commit {
        let (logic, key) = (logic.clone(), key.map(str::to_owned));
        tokio::spawn(async move {
            if let Err(e) = logic.push(to, op, body, key.as_deref()).await {
                tracing::warn!(error = %e, "push acknowledged before commit was not committed");
            }
        });
        return match route {
            Route::Room => ok(json!({ "seq": 0, "room_seq": 0 })),
            _ => ok(json!({ "seq": 0 })),
        };
    }
    let pushed = logic
        .push(to, op, body, key)
        .await
        .map_err(|e| ApiError::internal(format!("push not committed: {e}")))?;
    match route {
        Route::Room => ok(json!({ "seq": pushed.seq, "room_seq": pushed.room_seq })),
        _ => ok(json!({ "seq": pushed.seq })),
    }
}
