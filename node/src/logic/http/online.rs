//! `GET /goim/online/{top,room,total}`: online counts from the comets' latest reports,
//! summed over every live comet. Rooms are stored as `type://id`; replies use the bare id.
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use serde_json::json;

use super::{ok, ApiError, ApiResult, Params};
use crate::logic::Logic;

fn room_totals(logic: &Logic) -> Result<BTreeMap<String, u64>, ApiError> {
    let mut totals = BTreeMap::new();
    for c in logic.live_comets()? {
        for (room, n) in c.rooms {
            *totals.entry(room).or_insert(0u64) += u64::from(n);
        }
    }
    Ok(totals)
}

pub async fn top(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q);
    let kind = format!("{}://", p.required("type")?);
    let limit = p.parsed::<usize>("limit")?.unwrap_or(20);
    let mut rooms: Vec<(String, u64)> = room_totals(&logic)?
        .into_iter()
        .filter_map(|(room, n)| room.strip_prefix(&kind).map(|id| (id.to_string(), n)))
        .filter(|(_, n)| *n > 0)
        .collect();
    rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rooms.truncate(limit);
    ok(rooms
        .into_iter()
        .map(|(room_id, count)| json!({ "room_id": room_id, "count": count }))
        .collect::<Vec<_>>())
}

pub async fn room(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q);
    let kind = p.required("type")?.to_string();
    let rooms = p.list("rooms");
    if rooms.is_empty() {
        return Err(ApiError::bad("rooms: missing"));
    }
    let totals = room_totals(&logic)?;
    let counts: BTreeMap<String, u64> = rooms
        .into_iter()
        .map(|id| {
            let n = totals.get(&format!("{kind}://{id}")).copied().unwrap_or(0);
            (id, n)
        })
        .collect();
    ok(counts)
}

pub async fn total(State(logic): State<Arc<Logic>>) -> ApiResult {
    let comets = logic.live_comets()?;
    let conn: u64 = comets.iter().map(|c| u64::from(c.conn_count)).sum();
    let ip: u64 = comets.iter().map(|c| u64::from(c.ip_count)).sum();
    ok(json!({ "ip_count": ip, "conn_count": conn }))
}
