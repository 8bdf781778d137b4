//! `GET /goim/log?from=&limit=` [ext]: reads the applied push log (what `goim log tail`
//! prints), like Kafka's console consumer.
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use goim_net::rpc::{PushRecord, PushTarget};
use goim_storage::tables::pushlog;
use serde_json::{json, Value};

use super::{ok, ApiResult, Params};
use crate::logic::Logic;

const MAX_LIMIT: usize = 10_000;

pub fn record_json(r: &PushRecord) -> Value {
    let target = match &r.target {
        PushTarget::Keys { comet, keys } => json!({ "type": "keys", "comet": comet, "keys": keys }),
        PushTarget::Room { room, room_seq } => {
            json!({ "type": "room", "room": room, "room_seq": room_seq })
        }
        PushTarget::All => json!({ "type": "all" }),
        PushTarget::Kick { comet, key, conn } => {
            json!({ "type": "kick", "comet": comet, "key": key, "conn": conn })
        }
    };
    json!({
        "partition": r.partition,
        "seq": r.seq,
        "ts_ms": r.ts_ms,
        "target": target,
        "op": r.op,
        "body": String::from_utf8_lossy(&r.body),
    })
}

pub async fn read(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q);
    let from = p.parsed::<u64>("from")?.unwrap_or(1);
    let limit = p.parsed::<usize>("limit")?.unwrap_or(1000).min(MAX_LIMIT);
    let partition = p.parsed::<u32>("partition")?.unwrap_or(0);
    let view = &logic.cluster.view;
    let head = pushlog::head(view, partition)?;
    let records = pushlog::range(view, partition, from, limit)?;
    ok(json!({
        "first_seq": head.first_seq,
        "last_seq": head.last_seq,
        "records": records.iter().map(record_json).collect::<Vec<_>>(),
    }))
}
