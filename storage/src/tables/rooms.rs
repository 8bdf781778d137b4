//! Per-room offsets and history. `room_seq` is the dense offset of a room's messages (from
//! 1); the epoch names this incarnation of the room's history, so an offset from a wiped or
//! rebuilt cluster is never trusted. The history index maps (room, room_seq) to the push-log
//! seq holding the message: recovery and `/goim/history/room` read the push log through it.
//!
//! A room is one value (`ROOM`): its offset, epoch, the oldest offset history still serves
//! (`floor`: the per-room window and the log's retention move it) and the newest index
//! entries (`tail`). A full tail becomes a chunk (`HISTORY`, keyed by the room and the
//! chunk's last offset). So a push writes no index key of its own: an apply batch writes
//! each room it touched once, plus a chunk per `TAIL_MAX` messages. Inside apply, rooms
//! are read and changed in the txn (`Txn::rooms`) and stored at commit (`seal`).
//!
//! Data dirs written before this layout hold a room's state as `LEGACY_STATE` and one
//! index key per message (`LEGACY_HISTORY`): both are read, a legacy state is replaced the
//! first time its room is written, and legacy index keys are dropped as `floor` passes them.
use std::collections::BTreeMap;

use goim_types::rpc::PushRecord;
use serde::{Deserialize, Serialize};

use super::{key, prefix_end, pushlog, Kv, Txn};
use crate::StorageError;

const ROOM: &[u8] = b"room/";
const HISTORY: &[u8] = b"rhc/";
const LEGACY_STATE: &[u8] = b"rseq/";
const LEGACY_HISTORY: &[u8] = b"rhist/";
/// Index entries a room keeps in its own value before they become a chunk.
const TAIL_MAX: usize = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// The room's newest offset (0 before its first push).
    pub last_seq: u64,
    /// Set when the room is first seen, from the creating command's clock.
    pub epoch: u64,
}

impl RoomState {
    /// A room first seen by a command carrying the clock reading `seed`.
    fn new(seed: u64) -> RoomState {
        RoomState { last_seq: 0, epoch: seed.max(1) }
    }
}

/// A room as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Room {
    state: RoomState,
    /// The oldest offset history serves (older entries are being dropped).
    floor: u64,
    /// The offset of `tail[0]`.
    tail_first: u64,
    /// Push-log seqs of the newest offsets, not yet in a chunk.
    tail: Vec<u64>,
}

/// Push-log seqs of the offsets `first ..`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Chunk {
    first: u64,
    seqs: Vec<u64>,
}

impl Chunk {
    fn last(&self) -> u64 {
        self.first + self.seqs.len() as u64 - 1
    }

    fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (self.first..).zip(self.seqs.iter().copied())
    }
}

/// A room read into the txn.
pub(crate) struct Cached {
    room: Room,
    /// Changed in this txn (stored at commit).
    dirty: bool,
    /// Read from `LEGACY_STATE` (removed when the room is stored).
    legacy: bool,
}

/// Rooms read or changed by one apply batch (`Txn` holds them; `seal` stores them).
pub(crate) type Unsealed = BTreeMap<String, Cached>;

fn room_key(room: &str) -> Vec<u8> {
    key(ROOM, &[room.as_bytes()])
}

fn legacy_state_key(room: &str) -> Vec<u8> {
    key(LEGACY_STATE, &[room.as_bytes()])
}

/// `prefix` + room + 0 + offset, so a room's keys sort by offset.
fn offset_key(prefix: &[u8], room: &str, room_seq: u64) -> Vec<u8> {
    let mut k = key(prefix, &[room.as_bytes(), b""]);
    k.extend_from_slice(&room_seq.to_be_bytes());
    k
}

fn key_offset(k: &[u8]) -> Option<u64> {
    k.len().checked_sub(8).and_then(|at| k[at..].try_into().ok()).map(u64::from_be_bytes)
}

/// The end of a room's keys under `prefix`.
fn room_end(prefix: &[u8], room: &str) -> Vec<u8> {
    prefix_end(&key(prefix, &[room.as_bytes(), b""]))
}

fn load(kv: &impl Kv, room: &str) -> Result<Option<Cached>, StorageError> {
    if let Some(room) = kv.get::<Room>(&room_key(room))? {
        return Ok(Some(Cached { room, dirty: false, legacy: false }));
    }
    Ok(kv.get::<RoomState>(&legacy_state_key(room))?.map(|state| Cached {
        room: Room { state, ..Room::default() },
        dirty: false,
        legacy: true,
    }))
}

/// The room's state, if it was ever joined or pushed to (outside apply: the stored state).
pub fn state(kv: &impl Kv, room: &str) -> Result<Option<RoomState>, StorageError> {
    Ok(load(kv, room)?.map(|c| c.room.state))
}

/// The room in the txn, read on first use; created with epoch `seed` if new.
fn cached<'t>(txn: &'t mut Txn<'_>, room: &str, seed: u64) -> Result<&'t mut Cached, StorageError> {
    if !txn.rooms.contains_key(room) {
        let found = load(txn, room)?;
        let cached = found.unwrap_or(Cached {
            room: Room { state: RoomState::new(seed), ..Room::default() },
            dirty: true,
            legacy: false,
        });
        txn.rooms.insert(room.to_owned(), cached);
    }
    txn.rooms.get_mut(room).ok_or_else(|| StorageError::Corrupt(format!("room {room} vanished from the txn")))
}

/// The room's state, created with epoch `seed` (a clock reading carried by the command) if
/// the room is new.
pub fn open(txn: &mut Txn<'_>, room: &str, seed: u64) -> Result<RoomState, StorageError> {
    Ok(cached(txn, room, seed)?.room.state)
}

/// Allocates the next offset of `room` (opening it with `seed` if new); `index` records
/// where it went.
pub fn next_seq(txn: &mut Txn<'_>, room: &str, seed: u64) -> Result<u64, StorageError> {
    let c = cached(txn, room, seed)?;
    c.room.state.last_seq += 1;
    c.dirty = true;
    Ok(c.room.state.last_seq)
}

/// Records that `room_seq` is at push-log `seq`, and moves the room's history window to its
/// newest `keep` messages (0: no per-room limit, only the push log's).
pub fn index(txn: &mut Txn<'_>, room: &str, room_seq: u64, seq: u64, keep: u64) -> Result<(), StorageError> {
    let c = cached(txn, room, 0)?;
    c.dirty = true;
    let r = &mut c.room;
    // A tail holds consecutive offsets: one that does not follow it starts a new tail.
    let broken = if r.tail_first + r.tail.len() as u64 == room_seq { None } else { r.take_tail(room_seq) };
    r.tail.push(seq);
    if keep > 0 && room_seq >= keep {
        r.floor = r.floor.max(room_seq + 1 - keep);
    }
    let full = if r.tail.len() >= TAIL_MAX { r.take_tail(room_seq + 1) } else { None };
    let floor = r.floor;
    for chunk in broken.iter().chain(&full) {
        txn.put(offset_key(HISTORY, room, chunk.last()), chunk)?;
    }
    if full.is_some() {
        drop_below(txn, room, floor)?;
    }
    Ok(())
}

impl Room {
    /// The tail as a chunk (none if empty); the next tail starts at offset `next`.
    fn take_tail(&mut self, next: u64) -> Option<Chunk> {
        let first = std::mem::replace(&mut self.tail_first, next);
        let seqs = std::mem::take(&mut self.tail);
        (!seqs.is_empty()).then_some(Chunk { first, seqs })
    }
}

/// History no longer serves offsets up to `room_seq` (their records left the push log).
pub(crate) fn forget_through(txn: &mut Txn<'_>, room: &str, room_seq: u64) -> Result<(), StorageError> {
    if !txn.rooms.contains_key(room) {
        let Some(found) = load(txn, room)? else { return Ok(()) };
        txn.rooms.insert(room.to_owned(), found);
    }
    let c = cached(txn, room, 0)?;
    c.room.floor = c.room.floor.max(room_seq + 1);
    c.dirty = true;
    let floor = c.room.floor;
    drop_below(txn, room, floor)
}

/// Deletes the room's chunks and legacy index keys wholly below `floor` (the chunk the
/// floor falls in stays; reads skip its older entries).
fn drop_below(txn: &mut Txn<'_>, room: &str, floor: u64) -> Result<(), StorageError> {
    if floor == 0 {
        return Ok(());
    }
    let chunks =
        txn.range_raw(&offset_key(HISTORY, room, 0), &offset_key(HISTORY, room, floor), usize::MAX)?;
    let legacy = txn.range_raw(
        &offset_key(LEGACY_HISTORY, room, 0),
        &offset_key(LEGACY_HISTORY, room, floor),
        usize::MAX,
    )?;
    for (k, _) in chunks.into_iter().chain(legacy) {
        txn.delete(k);
    }
    Ok(())
}

/// Stores the rooms the txn changed.
pub(crate) fn seal(txn: &mut Txn<'_>) -> Result<(), StorageError> {
    for (name, c) in std::mem::take(&mut txn.rooms) {
        if !c.dirty {
            continue;
        }
        if c.legacy {
            txn.delete(legacy_state_key(&name));
        }
        txn.put(room_key(&name), &c.room)?;
    }
    Ok(())
}

/// Retained messages of `room` with offsets in `(after, until]`, oldest first, at most
/// `limit` and about `max_bytes` of bodies (at least one). Stops at a hole: what is
/// returned is always dense. (Outside apply: reads the stored state.)
pub fn history(
    kv: &impl Kv,
    room: &str,
    after: u64,
    until: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<PushRecord>, StorageError> {
    let Some(Cached { room: stored, .. }) = load(kv, room)? else { return Ok(Vec::new()) };
    let from = after.saturating_add(1).max(stored.floor);
    let wanted = |room_seq: u64| room_seq >= from && room_seq <= until;
    let mut entries: Vec<(u64, u64)> = Vec::new();
    let until_key = offset_key(LEGACY_HISTORY, room, until.saturating_add(1));
    for (k, v) in kv.range_raw(&offset_key(LEGACY_HISTORY, room, from), &until_key, limit)? {
        if let Some(room_seq) = key_offset(&k) {
            entries.push((room_seq, goim_types::serial::decode(&v)?));
        }
    }
    let mut next = entries.last().map_or(from, |(room_seq, _)| room_seq + 1);
    let end = room_end(HISTORY, room);
    while entries.len() < limit && next <= until {
        let Some((_, v)) = kv.range_raw(&offset_key(HISTORY, room, next), &end, 1)?.pop() else { break };
        let chunk: Chunk = goim_types::serial::decode(&v)?;
        if chunk.seqs.is_empty() || chunk.first > until {
            break;
        }
        entries.extend(chunk.entries().filter(|(o, _)| *o >= next && wanted(*o)).take(limit - entries.len()));
        next = chunk.last() + 1;
    }
    let tail = (stored.tail_first..).zip(stored.tail.iter().copied());
    entries.extend(tail.filter(|(o, _)| *o >= next && wanted(*o)).take(limit - entries.len()));

    let mut out: Vec<PushRecord> = Vec::new();
    let mut bytes = 0;
    let mut log = pushlog::Cursor::new(0);
    for (room_seq, seq) in entries {
        let Some(record) = log.get(kv, seq)?.cloned() else { break };
        let dense = match out.last() {
            Some(prev) => Some(room_seq) == prev.room_seq().map(|s| s + 1),
            None => true,
        };
        if !dense || record.room_seq() != Some(room_seq) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use goim_types::rpc::PushTarget;

    /// `n` pushes to `room` in one apply batch.
    fn push(tree: &sled::Tree, room: &str, n: usize, keep: u64) {
        let mut txn = Txn::new(tree, None);
        let mut log = pushlog::Appender::open(&txn, 0).unwrap();
        for _ in 0..n {
            let room_seq = next_seq(&mut txn, room, 7).unwrap();
            let record = PushRecord {
                partition: 0,
                seq: 0,
                ts_ms: 1,
                target: PushTarget::Room { room: room.into(), room_seq },
                op: 1000,
                body: "m".into(),
            };
            let seq = log.append(&mut txn, record).unwrap();
            index(&mut txn, room, room_seq, seq, keep).unwrap();
        }
        log.finish(&mut txn).unwrap();
        txn.commit().unwrap();
    }

    fn offsets(tree: &sled::Tree, room: &str, after: u64, limit: usize) -> Vec<u64> {
        let txn = Txn::new(tree, None);
        let records = history(&txn, room, after, u64::MAX, limit, usize::MAX).unwrap();
        records.iter().filter_map(PushRecord::room_seq).collect()
    }

    #[test]
    fn history_reads_chunks_and_the_tail_and_a_batch_writes_a_room_once() {
        let (_dir, tree) = crate::tables::test_tree();
        push(&tree, "r", 150, 0);
        push(&tree, "s", 1, 0);
        push(&tree, "r", 3, 0);
        assert_eq!(tree.scan_prefix(HISTORY).count(), 2, "two full chunks of 64");
        assert_eq!(tree.scan_prefix(ROOM).count(), 2);
        assert_eq!(offsets(&tree, "r", 0, 1000), (1..=153).collect::<Vec<_>>());
        assert_eq!(offsets(&tree, "r", 60, 10), (61..=70).collect::<Vec<_>>(), "across a chunk's end");
        assert_eq!(offsets(&tree, "r", 140, 1000), (141..=153).collect::<Vec<_>>(), "chunk then tail");
        assert_eq!(offsets(&tree, "s", 0, 10), [1]);
        assert!(offsets(&tree, "nobody", 0, 10).is_empty());
        let txn = Txn::new(&tree, None);
        let records = history(&txn, "r", 10, 12, 100, usize::MAX).unwrap();
        assert_eq!(
            records.iter().filter_map(PushRecord::room_seq).collect::<Vec<_>>(),
            [11, 12],
            "up to until"
        );
        assert_eq!(state(&txn, "r").unwrap(), Some(RoomState { last_seq: 153, epoch: 7 }));
    }

    #[test]
    fn the_window_keeps_exactly_keep_and_drops_whole_chunks_behind_it() {
        let (_dir, tree) = crate::tables::test_tree();
        for _ in 0..10 {
            push(&tree, "r", 50, 100);
        }
        assert_eq!(offsets(&tree, "r", 0, 1000), (401..=500).collect::<Vec<_>>());
        let chunks = tree.scan_prefix(HISTORY).count();
        assert!(chunks <= 3, "chunks behind the window are dropped ({chunks} left)");
    }

    #[test]
    fn rooms_and_history_of_the_legacy_layout_are_read_and_replaced() {
        let (_dir, tree) = crate::tables::test_tree();
        let old = RoomState { last_seq: 2, epoch: 9 };
        tree.insert(legacy_state_key("r"), goim_types::serial::encode(&old).unwrap()).unwrap();
        let mut txn = Txn::new(&tree, None);
        let mut log = pushlog::Appender::open(&txn, 0).unwrap();
        for room_seq in 1..=2 {
            let record = PushRecord {
                partition: 0,
                seq: 0,
                ts_ms: 1,
                target: PushTarget::Room { room: "r".into(), room_seq },
                op: 1000,
                body: "old".into(),
            };
            let seq = log.append(&mut txn, record).unwrap();
            txn.put(offset_key(LEGACY_HISTORY, "r", room_seq), &seq).unwrap();
        }
        log.finish(&mut txn).unwrap();
        txn.commit().unwrap();
        assert_eq!(state(&Txn::new(&tree, None), "r").unwrap(), Some(old));
        assert_eq!(offsets(&tree, "r", 0, 10), [1, 2]);

        push(&tree, "r", 2, 0);
        assert_eq!(offsets(&tree, "r", 0, 10), [1, 2, 3, 4], "legacy entries, then the tail");
        assert_eq!(tree.scan_prefix(LEGACY_STATE).count(), 0, "replaced by the new value");
        let mut txn = Txn::new(&tree, None);
        forget_through(&mut txn, "r", 2).unwrap();
        txn.commit().unwrap();
        assert_eq!(offsets(&tree, "r", 0, 10), [3, 4]);
        assert_eq!(tree.scan_prefix(LEGACY_HISTORY).count(), 0);
    }
}
