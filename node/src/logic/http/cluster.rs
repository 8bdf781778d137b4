//! `/cluster/*` [ext]: `GET status` is this node's view of the cluster (members, leader,
//! term, log and apply positions, push-log head, job offsets with their lag, comets);
//! `POST add?id=&addr=` and `POST remove?id=` change the voters online, on any node.
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use goim_raft::membership::MembershipChange;
use goim_storage::tables::{offsets, pushlog};
use goim_storage::StateView;
use serde_json::{json, Value};

use super::{ok, ApiError, ApiResult, Params};
use crate::clock::now_ms;
use crate::logic::Logic;

pub async fn status(State(logic): State<Arc<Logic>>) -> ApiResult {
    let m = logic.cluster.raft.metrics().borrow().clone();
    let (push_log, jobs) = log_and_jobs(&logic.cluster.view)?;
    let comets = logic.live_comets()?;
    let members: serde_json::Map<String, serde_json::Value> =
        m.membership_config.membership().nodes().map(|(id, n)| (id.to_string(), json!(n.addr))).collect();
    let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
    ok(json!({
        "node_id": m.id,
        "state": format!("{:?}", m.state),
        "leader": logic.cluster.leader(),
        "millis_since_quorum_ack": m.millis_since_quorum_ack,
        "term": m.current_term,
        "last_log_index": m.last_log_index,
        "applied_index": m.last_applied.map(|l| l.index),
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "replication": m.replication.as_ref().map(|r| {
            r.iter().map(|(id, l)| (id.to_string(), json!(l.map(|l| l.index)))).collect::<serde_json::Map<_, _>>()
        }),
        "members": members,
        "voters": voters,
        "push_log": push_log,
        "jobs": jobs,
        "comets": comets.iter().map(|c| json!({ "id": c.info.id, "conn_count": c.conn_count, "expires_ms": c.expires_ms })).collect::<Vec<_>>(),
    }))
}

/// The push log's head and the job partition's progress (offset, lag, lease), as
/// `/cluster/status` and `/cluster/overview` give them.
pub(super) fn log_and_jobs(view: &StateView) -> Result<(Value, Value), ApiError> {
    let head = pushlog::head(view, 0)?;
    let offset = offsets::offset(view, 0)?;
    let lease = offsets::lease(view, 0)?;
    let now = now_ms();
    let push_log = json!({ "first_seq": head.first_seq, "last_seq": head.last_seq });
    let jobs = json!([{
        "partition": 0,
        "offset": offset,
        "lag": head.last_seq.saturating_sub(offset),
        "lease_holder": lease.as_ref().map(|l| l.holder.clone()),
        "lease_expires_ms": lease.as_ref().map(|l| l.expires_ms),
        "lease_live": lease.as_ref().map(|l| l.expires_ms >= now),
    }]);
    Ok((push_log, jobs))
}

pub async fn add(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q);
    let id = p.parsed::<u64>("id")?.ok_or_else(|| ApiError::bad("id: missing"))?;
    let addr = p.required("addr")?.to_string();
    change(&logic, MembershipChange::Add { id, addr }).await
}

pub async fn remove(State(logic): State<Arc<Logic>>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q);
    let id = p.parsed::<u64>("id")?.ok_or_else(|| ApiError::bad("id: missing"))?;
    change(&logic, MembershipChange::Remove { id }).await
}

async fn change(logic: &Logic, change: MembershipChange) -> ApiResult {
    match logic.cluster.change_membership(change).await {
        Ok(m) => ok(json!({ "voters": m.voters, "learners": m.learners, "nodes": m.nodes })),
        Err(goim_raft::WriteError::Rejected(why)) => Err(ApiError::bad(why)),
        Err(e) => Err(ApiError::internal(format!("membership change failed: {e}"))),
    }
}
