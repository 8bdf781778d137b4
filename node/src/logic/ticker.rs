//! While this node leads, propose what the clock makes due: `Tick { now }` when a comet's
//! registration has expired (its sessions and online counts leave the tables), `Trim` when
//! the push log outgrows its retention (count or age). Nothing is proposed when nothing is
//! due: an idle cluster writes no log entries. A node that just became leader waits one
//! comet TTL before expiring comets: nobody could renew during the election.
use std::sync::Arc;
use std::time::{Duration, Instant};

use goim_raft::command::{Tick, Trim, MAX_PER_TRIM};
use goim_raft::Request;
use goim_storage::tables::{comets, pushlog, Kv};
use goim_storage::StorageError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Logic;
use crate::clock::now_ms;

const PERIOD: Duration = Duration::from_millis(500);
const PARTITION: u32 = 0;

pub async fn run(logic: Arc<Logic>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(PERIOD);
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if logic.cluster.leader() != Some(logic.cluster.node_id) {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        let judge_comets = since.elapsed() >= Duration::from_millis(logic.comet_ttl_ms);
        let now = now_ms();
        let due = match due(&logic, now, judge_comets) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "reading state for the ticker");
                continue;
            }
        };
        for req in due {
            if let Err(e) = logic.cluster.write(req).await {
                warn!(error = %e, "proposing a clock command");
            }
        }
    }
}

fn due(logic: &Logic, now: u64, judge_comets: bool) -> Result<Vec<Request>, StorageError> {
    let view = &logic.cluster.view;
    let mut due = Vec::new();
    let expired: Vec<String> =
        comets::list(view)?.into_iter().filter(|c| Tick::is_due(c, now)).map(|c| c.info.id).collect();
    if judge_comets && !expired.is_empty() {
        info!(?expired, "comet registrations expired");
        due.push(Request::Tick(Tick { now_ms: now }));
    }
    if let Some(before_seq) = trim_point(view, logic.retention_records, logic.retention_ms, now)? {
        due.push(Request::Trim(Trim { partition: PARTITION, before_seq }));
    }
    Ok(due)
}

/// The first seq to keep, when records before it fall out of the retention window.
fn trim_point(
    view: &impl Kv,
    max_records: u64,
    max_age_ms: u64,
    now: u64,
) -> Result<Option<u64>, StorageError> {
    let head = pushlog::head(view, PARTITION)?;
    if head.last_seq < head.first_seq {
        return Ok(None);
    }
    let mut keep_from = head.first_seq;
    let len = head.last_seq + 1 - head.first_seq;
    if len > max_records {
        keep_from = head.last_seq + 1 - max_records;
    }
    let cutoff = now.saturating_sub(max_age_ms);
    let window = pushlog::range(view, PARTITION, keep_from, MAX_PER_TRIM as usize)?;
    if window.first().is_some_and(|r| r.ts_ms < cutoff) {
        keep_from = window
            .iter()
            .find(|r| r.ts_ms >= cutoff)
            .map(|r| r.seq)
            .unwrap_or(keep_from + window.len() as u64);
    }
    Ok((keep_from > head.first_seq).then_some(keep_from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use goim_raft::command::{Push, PushTo};
    use goim_raft::TypeConfig;
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    #[tokio::test]
    async fn retention_by_count_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = goim_storage::open::<TypeConfig>(dir.path(), Default::default()).await.unwrap();
        // Ten records, one per second from t=1000 s.
        let entries: Vec<Entry<TypeConfig>> = (1..=10u64)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(Request::Push(Push {
                    id: format!("p{i}"),
                    to: PushTo::All,
                    op: 1000,
                    body: "x".into(),
                    ts_ms: 1_000_000 + i * 1000,
                    room_keep: 0,
                })),
            })
            .collect();
        sm.apply(entries).await.unwrap();
        let view = sm.view();
        let now = 1_000_000 + 10_000;
        assert_eq!(trim_point(&view, 100, u64::MAX, now).unwrap(), None, "within both limits");
        assert_eq!(trim_point(&view, 4, u64::MAX, now).unwrap(), Some(7), "keep the newest 4");
        // Older than 3.5 s at t=1010 s: records 1..=6 (ts 1001..1006 s) go.
        assert_eq!(trim_point(&view, 100, 3_500, now).unwrap(), Some(7));
        assert_eq!(trim_point(&view, 2, 3_500, now).unwrap(), Some(9), "the stricter limit wins");
        assert_eq!(trim_point(&view, 100, 0, now + 1).unwrap(), Some(11), "everything expired");
    }
}
