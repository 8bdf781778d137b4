//! Per-room offsets and history. `room_seq` is the dense offset of a room's messages (from
//! 1); the epoch names this incarnation of the room's history, so an offset from a wiped or
//! rebuilt cluster is never trusted. The history index maps (room, room_seq) to the push-log
//! seq holding the message: recovery and `/goim/history/room` read the push log through it.
use std::collections::BTreeMap;

use goim_types::rpc::PushRecord;
use serde::{Deserialize, Serialize};

use super::{key, pushlog, Kv, Txn};
use crate::StorageError;

const ROOM: &[u8] = b"rseq/";
const HISTORY: &[u8] = b"rhist/";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// The room's newest offset (0 before its first push).
    pub last_seq: u64,
    /// Set when the room is first seen, from the creating command's clock.
    pub epoch: u64,
}

fn history_key(room: &str, room_seq: u64) -> Vec<u8> {
    let mut k = key(HISTORY, &[room.as_bytes(), b""]);
    k.extend_from_slice(&room_seq.to_be_bytes());
    k
}

/// The room's state, if it was ever joined or pushed to.
pub fn state(kv: &impl Kv, room: &str) -> Result<Option<RoomState>, StorageError> {
    kv.get(&key(ROOM, &[room.as_bytes()]))
}

/// The room's state, created with epoch `seed` (a clock reading carried by the command) if
/// the room is new.
pub fn open(txn: &mut Txn<'_>, room: &str, seed: u64) -> Result<RoomState, StorageError> {
    if let Some(s) = state(txn, room)? {
        return Ok(s);
    }
    let s = RoomState::new(seed);
    txn.put(key(ROOM, &[room.as_bytes()]), &s)?;
    Ok(s)
}

impl RoomState {
    /// A room first seen by a command carrying the clock reading `seed`.
    fn new(seed: u64) -> RoomState {
        RoomState { last_seq: 0, epoch: seed.max(1) }
    }
}

/// Allocates the offsets of many pushes with each room's state read once and written once
/// (`finish`). Until `finish` the states stored in the txn are stale: while `Offsets` is
/// in use, nothing else may read or change the rooms it holds.
#[derive(Debug, Default)]
pub struct Offsets {
    rooms: BTreeMap<String, RoomState>,
}

impl Offsets {
    /// Allocates the next `room_seq` of `room` (opening it with `seed` if new).
    pub fn next_seq(&mut self, txn: &mut Txn<'_>, room: &str, seed: u64) -> Result<u64, StorageError> {
        let state = match self.rooms.get_mut(room) {
            Some(state) => state,
            // Read only: `finish` stores it, new or not.
            None => {
                let state = state(txn, room)?.unwrap_or_else(|| RoomState::new(seed));
                self.rooms.entry(room.to_owned()).or_insert(state)
            }
        };
        state.last_seq += 1;
        Ok(state.last_seq)
    }

    /// Stores every room's state.
    pub fn finish(self, txn: &mut Txn<'_>) -> Result<(), StorageError> {
        for (room, state) in self.rooms {
            txn.put(key(ROOM, &[room.as_bytes()]), &state)?;
        }
        Ok(())
    }
}

/// Records that `room_seq` is at push-log `seq`, and forgets the entry that falls out of a
/// per-room window of `keep` messages (0: no per-room limit, only the push log's).
pub fn index(txn: &mut Txn<'_>, room: &str, room_seq: u64, seq: u64, keep: u64) -> Result<(), StorageError> {
    txn.put(history_key(room, room_seq), &seq)?;
    if keep > 0 && room_seq > keep {
        txn.delete(history_key(room, room_seq - keep));
    }
    Ok(())
}

/// Forgets `room_seq` (its record left the push log).
pub fn unindex(txn: &mut Txn<'_>, room: &str, room_seq: u64) {
    txn.delete(history_key(room, room_seq));
}

/// Retained messages of `room` with offsets in `(after, until]`, oldest first, at most
/// `limit` and about `max_bytes` of bodies (at least one). Stops at a hole: what is
/// returned is always dense.
pub fn history(
    kv: &impl Kv,
    room: &str,
    after: u64,
    until: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<PushRecord>, StorageError> {
    let start = history_key(room, after.saturating_add(1));
    let end = history_key(room, until.saturating_add(1));
    let mut out: Vec<PushRecord> = Vec::new();
    let mut bytes = 0;
    for (k, v) in kv.range_raw(&start, &end, limit)? {
        let room_seq = k.len().checked_sub(8).and_then(|at| k[at..].try_into().ok()).map(u64::from_be_bytes);
        let seq: u64 = goim_types::serial::decode(&v)?;
        let Some(record) = pushlog::get(kv, 0, seq)? else { break };
        let dense = match out.last() {
            Some(prev) => room_seq == prev.room_seq().map(|s| s + 1),
            None => true,
        };
        if !dense || record.room_seq() != room_seq {
            break;
        }
        bytes += record.body.len();
        out.push(record);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}
