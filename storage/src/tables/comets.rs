//! The comet registry (goim's discovery): each comet's addresses, weight and the online
//! counts it last reported, with an expiry renewed by every report.
use std::collections::BTreeMap;

use goim_types::rpc::logic::CometInfo;
use serde::{Deserialize, Serialize};

use super::{key, Kv, Txn};
use crate::StorageError;

const COMET: &[u8] = b"comet/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CometState {
    pub info: CometInfo,
    /// Connections per room on this comet.
    pub rooms: BTreeMap<String, u32>,
    pub conn_count: u32,
    pub ip_count: u32,
    pub updated_ms: u64,
    pub expires_ms: u64,
    /// Past `expires_ms` and its sessions dropped; kept registered (jobs still push to it
    /// if it answers) until `Tick` forgets it after a grace period.
    pub expired: bool,
}

impl CometState {
    /// Counted in online totals and offered to clients.
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.expired && self.expires_ms >= now_ms
    }
}

pub fn get(kv: &impl Kv, id: &str) -> Result<Option<CometState>, StorageError> {
    kv.get(&key(COMET, &[id.as_bytes()]))
}

pub fn put(txn: &mut Txn<'_>, c: &CometState) -> Result<(), StorageError> {
    txn.put(key(COMET, &[c.info.id.as_bytes()]), c)
}

pub fn remove(txn: &mut Txn<'_>, id: &str) {
    txn.delete(key(COMET, &[id.as_bytes()]));
}

pub fn list(kv: &impl Kv) -> Result<Vec<CometState>, StorageError> {
    Ok(kv.scan::<CometState>(COMET)?.into_iter().map(|(_, c)| c).collect())
}

/// Online count per room summed over every comet not expired.
pub fn room_totals(kv: &impl Kv) -> Result<BTreeMap<String, u64>, StorageError> {
    let mut totals = BTreeMap::new();
    for c in list(kv)?.into_iter().filter(|c| !c.expired) {
        for (room, n) in c.rooms {
            *totals.entry(room).or_insert(0u64) += u64::from(n);
        }
    }
    Ok(totals)
}
