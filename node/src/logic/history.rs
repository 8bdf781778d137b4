//! Room history reads, for comets recovering a reconnecting client (`History` RPC) and for
//! `GET /goim/history/room`. Served from this node's applied state: the caller names the
//! offset it needs (`until`), and a follower that has not applied it yet is given a moment
//! to catch up. The per-room age limit is applied here, at read time.
use std::time::Duration;

use goim_net::rpc::PushRecord;
use goim_storage::tables::rooms;
use goim_storage::StorageError;

use super::Logic;
use crate::clock::now_ms;

/// How long a read waits for this node to apply the offset it was asked for.
const CATCH_UP: Duration = Duration::from_secs(2);
/// Most body bytes in one read.
const MAX_READ_BYTES: usize = 1 << 20;

pub struct History {
    /// 0 when the room was never joined or pushed to.
    pub epoch: u64,
    /// The room's newest offset here.
    pub last_seq: u64,
    /// Dense, oldest first; starts after the requested offset only if that is retained.
    pub records: Vec<PushRecord>,
}

impl Logic {
    /// Retained messages of `room` after `after`, at most `limit`, none past `until` (0:
    /// no bound).
    pub async fn history(
        &self,
        room: &str,
        after: u64,
        until: u64,
        limit: usize,
    ) -> Result<History, StorageError> {
        let view = &self.cluster.view;
        let mut changes = view.push_changes();
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        let state = loop {
            let state = rooms::state(view, room)?.unwrap_or_default();
            if state.last_seq >= until {
                break state;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => break state,
            }
        };
        let until = if until == 0 { u64::MAX } else { until };
        let mut records = rooms::history(view, room, after, until, limit, MAX_READ_BYTES)?;
        let cutoff = now_ms().saturating_sub(self.room_retention_ms);
        let expired = records.iter().take_while(|r| r.ts_ms < cutoff).count();
        records.drain(..expired);
        Ok(History { epoch: state.epoch, last_seq: state.last_seq, records })
    }
}
