//! The job consumer group: per partition, the committed offset (last seq every comet acked)
//! and the lease naming the job that owns the partition until `expires_ms`.
use goim_types::rpc::record::Partition;
use serde::{Deserialize, Serialize};

use super::{Kv, Txn};
use crate::StorageError;

const OFFSET: &[u8] = b"off/";
const LEASE: &[u8] = b"lease/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub expires_ms: u64,
}

fn pkey(prefix: &[u8], p: Partition) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&p.to_be_bytes());
    k
}

pub fn offset(kv: &impl Kv, p: Partition) -> Result<u64, StorageError> {
    Ok(kv.get(&pkey(OFFSET, p))?.unwrap_or(0))
}

/// Offsets only move forward.
pub fn commit(txn: &mut Txn<'_>, p: Partition, seq: u64) -> Result<u64, StorageError> {
    let cur = offset(txn, p)?;
    let next = cur.max(seq);
    txn.put(pkey(OFFSET, p), &next)?;
    Ok(next)
}

pub fn lease(kv: &impl Kv, p: Partition) -> Result<Option<Lease>, StorageError> {
    kv.get(&pkey(LEASE, p))
}

pub fn set_lease(txn: &mut Txn<'_>, p: Partition, lease: &Lease) -> Result<(), StorageError> {
    txn.put(pkey(LEASE, p), lease)
}
