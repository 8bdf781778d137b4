//! `POST /goim/push/batch` [ext]: many pushes per request, so a producer is not held to
//! one round trip per message. The body is JSON lines (`push_lines`); the valid lines are
//! committed as one `PushBatch` write, in line order, each once per id, and the reply has
//! one result per non-blank line: its seqs, or why the line was refused. A request that
//! did not commit fails whole (as a single push does), to be retried whole with the same
//! ids; in the hidden `--unsafe-ack-before-commit` mode valid lines are answered seq 0 at
//! once.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use goim_net::api::ParamError;
use goim_raft::command::{PushTo, Pushed};
use serde_json::{json, Value};

use super::push::not_committed;
use super::push_lines::{self, LineLimits};
use super::{ok, ApiError, ApiResult};
use crate::logic::Logic;

pub const PATH: &str = "/goim/push/batch";

pub async fn handle(State(logic): State<Arc<Logic>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body.map_err(|e| ApiError::bad(format!("body: {e}")))?;
    let limits = LineLimits { targets: logic.target_limits(), body: logic.max_push_body };
    let lines = push_lines::parse(&body, &limits)?;
    // Each line's slot in the reply: a valid one (a room push or not) awaits its outcome.
    let mut msgs = Vec::new();
    let slots: Vec<Result<bool, ParamError>> = lines
        .into_iter()
        .map(|line| {
            line.map(|m| {
                let room = matches!(m.to, PushTo::Room(_));
                msgs.push(m);
                room
            })
        })
        .collect();
    let refused = (slots.len() - msgs.len()) as u64;
    metrics::counter!("goim_http_batch_lines_total", "result" => "refused").increment(refused);
    metrics::counter!("goim_http_batch_lines_total", "result" => "valid").increment(msgs.len() as u64);
    let pushed = if msgs.is_empty() {
        Vec::new()
    } else if logic.unsafe_ack_before_commit {
        let n = msgs.len();
        tokio::spawn(async move {
            if let Err(e) = logic.push_batch(msgs).await {
                tracing::warn!(error = %e, "push batch acknowledged before commit was not committed");
            }
        });
        vec![Pushed { seq: 0, room_seq: 0 }; n]
    } else {
        logic.push_batch(msgs).await.map_err(not_committed)?
    };
    let mut pushed = pushed.into_iter();
    let results: Vec<Value> = slots
        .into_iter()
        .map(|slot| match slot {
            Err(ParamError(why)) => json!({ "error": why }),
            Ok(room) => match (pushed.next(), room) {
                (Some(p), true) => json!({ "seq": p.seq, "room_seq": p.room_seq }),
                (Some(p), false) => json!({ "seq": p.seq }),
                (None, _) => json!({ "error": "the commit gave no outcome for this line" }),
            },
        })
        .collect();
    ok(json!({ "results": results }))
}
