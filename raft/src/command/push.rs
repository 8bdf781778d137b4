//! `Push`: an HTTP push (`/goim/push/keys|mids|room|all`). Targets are resolved here, at
//! apply time, from the session table at this log position, so every replica appends the
//! same records: one per comet for keys and mids, one per room push, one per broadcast.
use std::collections::BTreeMap;

use bytes::Bytes;
use goim_net::rpc::{PushRecord, PushTarget};
use goim_storage::tables::{pushlog, rooms, sessions, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushTo {
    Keys(Vec<String>),
    Mids(Vec<i64>),
    Room(String),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub to: PushTo,
    pub op: i32,
    pub body: Bytes,
    /// Proposer's clock, stored in the records.
    pub ts_ms: u64,
}

impl Push {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let record = |target| PushRecord {
            partition: 0,
            seq: 0,
            ts_ms: self.ts_ms,
            target,
            op: self.op,
            body: self.body.clone(),
        };
        match &self.to {
            PushTo::Room(room) => {
                let room_seq = rooms::next_seq(txn, room)?;
                let target = PushTarget::Room {
                    room: room.clone(),
                    room_seq,
                };
                let seq = pushlog::append(txn, record(target))?;
                Ok(Reply::Pushed { seq, room_seq })
            }
            PushTo::All => {
                let seq = pushlog::append(txn, record(PushTarget::All))?;
                Ok(Reply::Pushed { seq, room_seq: 0 })
            }
            PushTo::Keys(keys) => self.push_keys(txn, keys.iter().cloned(), record),
            PushTo::Mids(mids) => {
                let mut keys = Vec::new();
                for mid in mids {
                    keys.extend(sessions::keys_of_mid(txn, *mid)?);
                }
                self.push_keys(txn, keys.into_iter(), record)
            }
        }
    }

    fn push_keys(
        &self,
        txn: &mut Txn<'_>,
        keys: impl Iterator<Item = String>,
        record: impl Fn(PushTarget) -> PushRecord,
    ) -> Result<Reply, StorageError> {
        let mut by_comet: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in keys {
            if let Some(s) = sessions::get(txn, &key)? {
                let keys = by_comet.entry(s.comet).or_default();
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        let mut seq = pushlog::head(txn, 0)?.last_seq;
        for (comet, keys) in by_comet {
            seq = pushlog::append(txn, record(PushTarget::Keys { comet, keys }))?;
        }
        Ok(Reply::Pushed { seq, room_seq: 0 })
    }
}
