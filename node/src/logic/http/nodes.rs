//! `GET /goim/nodes/{weighted,instances}`: where clients should connect. `weighted` keeps
//! goim's shape (hosts, ports, heartbeat, backoff) and adds each comet's full addresses,
//! least loaded per unit of weight first.
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use serde_json::json;

use super::{ok, ApiResult, Params};
use crate::logic::Logic;

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

pub async fn weighted(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let _platform = Params::parse(q).one("platform").map(String::from);
    let mut comets = logic.live_comets()?;
    comets.sort_by(|a, b| {
        let load = |c: &goim_storage::tables::comets::CometState| {
            u64::from(c.conn_count) * 1000 / u64::from(c.info.weight.max(1))
        };
        load(a).cmp(&load(b)).then_with(|| a.info.id.cmp(&b.info.id))
    });
    let first = comets.first();
    ok(json!({
        "domain": "",
        "tcp_port": first.map(|c| port_of(&c.info.tcp_addr)).unwrap_or(0),
        "ws_port": first.map(|c| port_of(&c.info.ws_addr)).unwrap_or(0),
        "wss_port": logic.wss_port,
        "heartbeat": logic.heartbeat_secs,
        "heartbeat_max": 2,
        "backoff": { "max_delay": 300, "base_delay": 3, "factor": 1.8, "jitter": 0.3 },
        "nodes": comets.iter().map(|c| host_of(&c.info.tcp_addr)).collect::<Vec<_>>(),
        "addrs": comets.iter().map(|c| json!({
            "id": c.info.id, "tcp": c.info.tcp_addr, "ws": c.info.ws_addr, "weight": c.info.weight,
        })).collect::<Vec<_>>(),
    }))
}

pub async fn instances(State(logic): State<Arc<Logic>>) -> ApiResult {
    ok(logic
        .live_comets()?
        .iter()
        .map(|c| {
            json!({
                "id": c.info.id,
                "tcp_addr": c.info.tcp_addr,
                "ws_addr": c.info.ws_addr,
                "quic_addr": c.info.quic_addr,
                "zone": c.info.zone,
                "weight": c.info.weight,
                "conn_count": c.conn_count,
                "ip_count": c.ip_count,
                "updated": c.updated_ms,
            })
        })
        .collect::<Vec<_>>())
}
