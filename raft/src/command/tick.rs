//! `Tick`: the leader's clock, proposed when something is due. A comet whose registration
//! expired loses every session it held (online counts fall when a comet dies) and is marked
//! expired; after `FORGET_AFTER_MS` more it leaves the registry. Until then jobs still push
//! to it if it answers, so a comet whose renewals were merely late (a long election) misses
//! nothing. Time enters the state machine only through this command.
use std::collections::BTreeSet;

use goim_storage::tables::{comets, sessions, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub now_ms: u64,
}

/// How long an expired comet stays registered.
pub const FORGET_AFTER_MS: u64 = 60_000;

impl Tick {
    /// Whether a `Tick` at `now_ms` would change anything for this comet.
    pub fn is_due(comet: &comets::CometState, now_ms: u64) -> bool {
        comet.expires_ms < now_ms && (!comet.expired || comet.expires_ms + FORGET_AFTER_MS < now_ms)
    }

    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let mut expiring = BTreeSet::new();
        for mut comet in comets::list(txn)? {
            if !Tick::is_due(&comet, self.now_ms) {
                continue;
            }
            if comet.expired {
                comets::remove(txn, &comet.info.id);
                continue;
            }
            sessions::drop_legacy_comet_index(txn, &comet.info.id)?;
            comet.expired = true;
            comet.rooms.clear();
            comet.conn_count = 0;
            comet.ip_count = 0;
            comets::put(txn, &comet)?;
            expiring.insert(comet.info.id);
        }
        if !expiring.is_empty() {
            // One read of the session table for every comet expiring at this tick.
            for s in sessions::of_comets(txn, &expiring)? {
                sessions::remove(txn, &s);
            }
        }
        Ok(Reply::Done)
    }
}

typed_write!(Tick => (), super::Reply::Done => ());
