//! Idempotency of pushes: the outcome of each push by its request id, so a retried push
//! (a client retry, or a forward retried across a leader change) is answered from here and
//! not appended twice. Entries expire a fixed time after they were written, by the
//! proposer's clock carried in the commands (deterministic on every replica).
use serde::{Deserialize, Serialize};

use super::{key, Kv, Txn};
use crate::StorageError;

const OUTCOME: &[u8] = b"req/";
const BY_TIME: &[u8] = b"reqt/";

/// How long a request id is remembered.
pub const REMEMBER_MS: u64 = 10 * 60 * 1000;
/// Most expired ids dropped by one push (keeps each apply bounded).
const EXPIRE_PER_APPLY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub seq: u64,
    pub room_seq: u64,
    pub ts_ms: u64,
}

fn time_key(ts_ms: u64, id: &str) -> Vec<u8> {
    key(BY_TIME, &[&ts_ms.to_be_bytes(), id.as_bytes()])
}

pub fn get(kv: &impl Kv, id: &str) -> Result<Option<Outcome>, StorageError> {
    kv.get(&key(OUTCOME, &[id.as_bytes()]))
}

pub fn put(txn: &mut Txn<'_>, id: &str, outcome: Outcome) -> Result<(), StorageError> {
    txn.put(key(OUTCOME, &[id.as_bytes()]), &outcome)?;
    txn.put_raw(time_key(outcome.ts_ms, id), Vec::new());
    Ok(())
}

/// Forgets ids written before `now_ms - REMEMBER_MS` (a bounded number per call).
pub fn expire(txn: &mut Txn<'_>, now_ms: u64) -> Result<(), StorageError> {
    let cutoff = now_ms.saturating_sub(REMEMBER_MS);
    let end = key(BY_TIME, &[&cutoff.to_be_bytes()]);
    for (k, _) in txn.range_raw(BY_TIME, &end, EXPIRE_PER_APPLY)? {
        let id_start = BY_TIME.len() + 8 + 1;
        if k.len() >= id_start {
            let id = k[id_start..].to_vec();
            txn.delete(key(OUTCOME, &[&id]));
        }
        txn.delete(k);
    }
    Ok(())
}
