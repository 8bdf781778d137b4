//! `GET /goim/online/{top,room,total}`: online counts from the comets' latest reports,
//! summed over every live comet. Rooms are stored as `type://id`; replies use the bare id.
//! `GET /goim/online/members` [ext]: who is in a room now, from the session table.
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

/// Sessions read at most per `/goim/online/members` (the table has no room index).
const MEMBERS_MAX_SCAN: usize = 10_000;
/// Distinct mids listed at most.
const MEMBERS_MAX_MIDS: usize = 200;

/// `?type=&room=`: the room's connections now (sessions are written when a client joins, so
/// the count does not wait for a comet report) and their distinct mids, at most 200.
/// `complete` is false when the session table was larger than one scan reads.
pub async fn members(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q);
    let room = format!("{}://{}", p.required("type")?, p.required("room")?);
    let (sessions, complete) =
        goim_storage::tables::sessions::in_room(&logic.cluster.view, &room, MEMBERS_MAX_SCAN)?;
    let mids: std::collections::BTreeSet<i64> = sessions.iter().map(|s| s.mid).collect();
    ok(json!({
        "room_id": room,
        "count": sessions.len(),
        "mids": mids.into_iter().take(MEMBERS_MAX_MIDS).collect::<Vec<_>>(),
        "complete": complete,
    }))
}
