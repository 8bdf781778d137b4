//! `GET /cluster/overview` [ext]: the whole cluster as the web demo's panel shows it, from any
//! logic node: every Raft member asked for its own status over QUIC (a short timeout; one
//! that does not answer is `"up":false`), the job's lag and every registered comet with its
//! connections and whether it is live. `/cluster/status` is one node's view; this is all of
//! them in one reply, so a page polling one node sees another node fall and come back.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use goim_raft::MemberStatus;
use goim_storage::tables::comets;
use serde_json::{json, Value};

use super::{ok, ApiResult};
use crate::clock::now_ms;
use crate::logic::Logic;

/// How long a member gets to answer before it is shown down.
const MEMBER_TIMEOUT: Duration = Duration::from_millis(700);

fn member_json(id: u64, addr: &str, voter: bool, status: Result<MemberStatus, String>) -> Value {
    let mut node = json!({ "node_id": id, "addr": addr, "voter": voter });
    match status {
        Ok(s) => {
            let about: Value = serde_json::from_str(&s.about).unwrap_or(Value::Null);
            node["up"] = json!(true);
            node["roles"] = about.get("roles").cloned().unwrap_or(Value::Null);
            node["http"] = about.get("http").cloned().unwrap_or(Value::Null);
            node["state"] = json!(s.state);
            node["leader"] = json!(s.leader);
            node["term"] = json!(s.term);
            node["last_log_index"] = json!(s.last_log_index);
            node["applied_index"] = json!(s.applied_index);
        }
        Err(why) => {
            node["up"] = json!(false);
            node["error"] = json!(why);
        }
    }
    node
}

pub async fn overview(State(logic): State<Arc<Logic>>) -> ApiResult {
    let cluster = &logic.cluster;
    let m = cluster.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let asks = membership.nodes().map(|(id, node)| {
        let (id, addr, voter) = (*id, node.addr.clone(), voters.contains(id));
        async move {
            let status = if id == cluster.node_id {
                Ok(cluster.local_status())
            } else {
                cluster.member_status(&addr, MEMBER_TIMEOUT).await
            };
            member_json(id, &addr, voter, status)
        }
    });
    let nodes = futures_util::future::join_all(asks).await;

    let (push_log, jobs) = super::cluster::log_and_jobs(&cluster.view)?;
    let now = now_ms();
    let comets: Vec<Value> = comets::list(&cluster.view)?
        .iter()
        .map(|c| {
            json!({
                "id": c.info.id, "ws": c.info.ws_addr, "tcp": c.info.tcp_addr,
                "conn_count": c.conn_count, "live": c.is_live(now),
            })
        })
        .collect();
    ok(json!({
        "answered_by": cluster.node_id,
        "leader": cluster.leader(),
        "term": m.current_term,
        "nodes": nodes,
        "push_log": push_log,
        "jobs": jobs,
        "comets": comets,
    }))
}
