//! Per-room push counters: `room_seq`, the dense offset of a room's messages (from 1).
use super::{key, Kv, Txn};
use crate::StorageError;

const ROOM_SEQ: &[u8] = b"rseq/";

pub fn last_seq(kv: &impl Kv, room: &str) -> Result<u64, StorageError> {
    Ok(kv.get::<u64>(&key(ROOM_SEQ, &[room.as_bytes()]))?.unwrap_or(0))
}

/// Allocates the next `room_seq` of `room`.
pub fn next_seq(txn: &mut Txn<'_>, room: &str) -> Result<u64, StorageError> {
    let next = last_seq(txn, room)? + 1;
    txn.put(key(ROOM_SEQ, &[room.as_bytes()]), &next)?;
    Ok(next)
}
