//! `POST /goim/push/{keys,mids,room,all}`: the body is the message; the reply is sent once
//! the push is committed on a majority, with its log seq (and room offset for rooms).
//! [ext] An `Idempotency-Key` header makes a retried push (to any node) apply once.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use goim_raft::command::PushTo;
use serde_json::json;

use super::{ok, ApiError, ApiResult, Params};
use crate::logic::Logic;

type Body = Result<Bytes, BytesRejection>;

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 256;

struct Request {
    to: PushTo,
    op: i32,
    headers: HeaderMap,
    body: Body,
}

async fn push(logic: &Logic, r: Request) -> ApiResult {
    let Request { to, op, headers, body } = r;
    let body = body.map_err(|e| ApiError::bad(format!("body: {e}")))?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_KEY_LEN => Some(k),
            _ => {
                return Err(ApiError::bad(format!(
                    "Idempotency-Key: 1 to {MAX_KEY_LEN} visible ASCII characters"
                )))
            }
        },
    };
    if body.len() > logic.max_push_body {
        return Err(ApiError::bad(format!(
            "body: {} bytes exceeds the limit of {}",
            body.len(),
            logic.max_push_body
        )));
    }
    let is_room = matches!(to, PushTo::Room(_));
    let p = logic
        .push(to, op, body, key)
        .await
        .map_err(|e| ApiError::internal(format!("push not committed: {e}")))?;
    if is_room {
        ok(json!({ "seq": p.seq, "room_seq": p.room_seq }))
    } else {
        ok(json!({ "seq": p.seq }))
    }
}

pub async fn keys(
    State(logic): State<Arc<Logic>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::parse(q);
    let op = p.operation()?;
    let keys = p.list("keys");
    if keys.is_empty() {
        return Err(ApiError::bad("keys: missing"));
    }
    push(&logic, Request { to: PushTo::Keys(keys), op, headers, body }).await
}

pub async fn mids(
    State(logic): State<Arc<Logic>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::parse(q);
    let op = p.operation()?;
    let mids = p
        .list("mids")
        .iter()
        .map(|m| m.parse::<i64>().map_err(|_| ApiError::bad(format!("mids: invalid value {m:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if mids.is_empty() {
        return Err(ApiError::bad("mids: missing"));
    }
    push(&logic, Request { to: PushTo::Mids(mids), op, headers, body }).await
}

pub async fn room(
    State(logic): State<Arc<Logic>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::parse(q);
    let op = p.operation()?;
    let room = format!("{}://{}", p.required("type")?, p.required("room")?);
    push(&logic, Request { to: PushTo::Room(room), op, headers, body }).await
}

pub async fn all(
    State(logic): State<Arc<Logic>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::parse(q);
    let op = p.operation()?;
    // goim's `speed` throttles broadcast fan-out; validated here, not applied yet.
    p.parsed::<u32>("speed")?;
    push(&logic, Request { to: PushTo::All, op, headers, body }).await
}
