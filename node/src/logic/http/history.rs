//! `GET /goim/history/room?type=&room=&since=&limit=` [ext]: a room's retained messages
//! after offset `since`, oldest first, for clients that fetch what they missed themselves.
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use base64::Engine;
use serde_json::{json, Value};

use super::{ok, ApiResult, Params};
use crate::logic::Logic;

const MAX_LIMIT: usize = 1000;

fn message_json(r: &goim_net::rpc::PushRecord) -> Value {
    let mut m = json!({ "room_seq": r.room_seq(), "seq": r.seq, "ts_ms": r.ts_ms, "op": r.op });
    match std::str::from_utf8(&r.body) {
        Ok(text) => m["body"] = json!(text),
        Err(_) => m["body_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&r.body)),
    }
    m
}

pub async fn room(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q);
    let room = format!("{}://{}", p.required("type")?, p.required("room")?);
    let since = p.parsed::<u64>("since")?.unwrap_or(0);
    let limit = p.parsed::<usize>("limit")?.unwrap_or(100).clamp(1, MAX_LIMIT);
    let h = logic.history(&room, since, 0, limit).await?;
    // Whether the messages right after `since` are still retained (else some are gone).
    let complete = h.last_seq <= since || h.records.first().and_then(|r| r.room_seq()) == Some(since + 1);
    ok(json!({
        "room_id": room,
        "epoch": format!("{:x}", h.epoch),
        "room_seq": h.last_seq,
        "complete": complete,
        "messages": h.records.iter().map(message_json).collect::<Vec<_>>(),
    }))
}
