//! The push log (what Kafka is in goim): per partition, dense seq → `PushRecord`, and the
//! head (first and last retained seq).
//!
//! Records are stored in chunks: the records one apply batch appended, in seq order, as one
//! value keyed by the chunk's last seq (at most `CHUNK_RECORDS` records and about
//! `CHUNK_BYTES` of bodies each). A sled write costs about as much as encoding hundreds of
//! records, so a busy log pays for a few writes per batch, not one per push, and a tail
//! reads a batch's records in one lookup. Data dirs written before chunks hold one record
//! per key (`LEGACY_RECORD`): those are read, and trimmed, beside the chunks until retention
//! has dropped them all (their seqs are all below the first chunk's).
use std::collections::BTreeMap;

use goim_types::rpc::record::Partition;
use goim_types::rpc::{PushRecord, PushTarget};
use serde::{Deserialize, Serialize};

use super::{prefix_end, rooms, Kv, Txn};
use crate::StorageError;

const CHUNK: &[u8] = b"plc/";
const LEGACY_RECORD: &[u8] = b"plog/";
const HEAD: &[u8] = b"phead/";
/// Most records in one chunk.
const CHUNK_RECORDS: usize = 1024;
/// A chunk is closed once its bodies reach this many bytes (keeps chunks well below the
/// size at which sled moves a value to a file of its own).
const CHUNK_BYTES: usize = 48 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// Oldest retained seq (`last_seq + 1` when empty).
    pub first_seq: u64,
    /// Newest seq (0 before the first push).
    pub last_seq: u64,
}

impl Default for LogHead {
    fn default() -> Self {
        LogHead { first_seq: 1, last_seq: 0 }
    }
}

/// Records appended by one apply batch, not yet stored (`Txn` holds them; `seal` stores them).
pub(crate) type Unsealed = BTreeMap<Partition, Vec<PushRecord>>;

fn partition_prefix(prefix: &[u8], p: Partition) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&p.to_be_bytes());
    k
}

fn seq_key(prefix: &[u8], p: Partition, seq: u64) -> Vec<u8> {
    let mut k = partition_prefix(prefix, p);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn chunk_key(p: Partition, last_seq: u64) -> Vec<u8> {
    seq_key(CHUNK, p, last_seq)
}

fn legacy_key(p: Partition, seq: u64) -> Vec<u8> {
    seq_key(LEGACY_RECORD, p, seq)
}

fn head_key(p: Partition) -> Vec<u8> {
    partition_prefix(HEAD, p)
}

pub fn head(kv: &impl Kv, p: Partition) -> Result<LogHead, StorageError> {
    Ok(kv.get(&head_key(p))?.unwrap_or_default())
}

/// Appends `record` at the next seq of its partition (the given `seq` is overwritten).
pub fn append(txn: &mut Txn<'_>, record: PushRecord) -> Result<u64, StorageError> {
    let mut log = Appender::open(txn, record.partition)?;
    let seq = log.append(txn, record)?;
    log.finish(txn)?;
    Ok(seq)
}

/// Appends many records to one partition with its head read once and written once
/// (`finish`), not once per record. Until `finish` the head stored in the txn is stale:
/// while an `Appender` is open, nothing else may append to its partition or read its head.
#[derive(Debug)]
pub struct Appender {
    partition: Partition,
    head: LogHead,
    /// The head as stored, so `finish` writes only a changed one.
    stored: LogHead,
}

impl Appender {
    pub fn open(kv: &impl Kv, partition: Partition) -> Result<Appender, StorageError> {
        let stored = head(kv, partition)?;
        Ok(Appender { partition, head: stored, stored })
    }

    /// The newest seq, this appender's records included.
    pub fn last_seq(&self) -> u64 {
        self.head.last_seq
    }

    /// Appends `record` at the next seq (its `partition` and `seq` are overwritten). It is
    /// stored, in a chunk, when the txn commits.
    pub fn append(&mut self, txn: &mut Txn<'_>, mut record: PushRecord) -> Result<u64, StorageError> {
        self.head.last_seq += 1;
        record.partition = self.partition;
        record.seq = self.head.last_seq;
        txn.unsealed.entry(self.partition).or_default().push(record);
        txn.pushed = true;
        Ok(self.head.last_seq)
    }

    /// Stores the head, if records were appended.
    pub fn finish(self, txn: &mut Txn<'_>) -> Result<(), StorageError> {
        if self.head == self.stored {
            return Ok(());
        }
        txn.put(head_key(self.partition), &self.head)
    }
}

/// Stores the txn's appended records as chunks (at commit, and before the log is read
/// inside apply).
pub(crate) fn seal(txn: &mut Txn<'_>) -> Result<(), StorageError> {
    for (p, records) in std::mem::take(&mut txn.unsealed) {
        let mut chunk: Vec<PushRecord> = Vec::new();
        let mut bytes = 0;
        for record in records {
            bytes += record.body.len();
            chunk.push(record);
            if chunk.len() >= CHUNK_RECORDS || bytes >= CHUNK_BYTES {
                put_chunk(txn, p, &std::mem::take(&mut chunk))?;
                bytes = 0;
            }
        }
        put_chunk(txn, p, &chunk)?;
    }
    Ok(())
}

fn put_chunk(txn: &mut Txn<'_>, p: Partition, chunk: &[PushRecord]) -> Result<(), StorageError> {
    match chunk.last() {
        Some(last) => txn.put(chunk_key(p, last.seq), &chunk),
        None => Ok(()),
    }
}

/// A stored chunk: its key and records.
struct Stored {
    key: Vec<u8>,
    records: Vec<PushRecord>,
}

/// The stored chunk holding `seq` or, if `seq` is not retained, the first one after it.
fn chunk_from(kv: &impl Kv, p: Partition, seq: u64) -> Result<Option<Stored>, StorageError> {
    let end = prefix_end(&partition_prefix(CHUNK, p));
    match kv.range_raw(&chunk_key(p, seq), &end, 1)?.pop() {
        Some((key, v)) => Ok(Some(Stored { key, records: goim_types::serial::decode(&v)? })),
        None => Ok(None),
    }
}

/// The record at `seq`, if retained.
pub fn get(kv: &impl Kv, p: Partition, seq: u64) -> Result<Option<PushRecord>, StorageError> {
    Ok(Cursor::new(p).get(kv, seq)?.cloned())
}

/// Reads records by seq, keeping the chunk it last read (`rooms::history` reads a room's
/// records, often many from one chunk).
pub(crate) struct Cursor {
    partition: Partition,
    chunk: Vec<PushRecord>,
    legacy: Option<PushRecord>,
}

impl Cursor {
    pub(crate) fn new(partition: Partition) -> Cursor {
        Cursor { partition, chunk: Vec::new(), legacy: None }
    }

    pub(crate) fn get(&mut self, kv: &impl Kv, seq: u64) -> Result<Option<&PushRecord>, StorageError> {
        let cached = match (self.chunk.first(), self.chunk.last()) {
            (Some(first), Some(last)) => (first.seq..=last.seq).contains(&seq),
            _ => false,
        };
        if !cached {
            self.chunk = chunk_from(kv, self.partition, seq)?.map(|c| c.records).unwrap_or_default();
        }
        if let Some(i) = self.chunk.iter().position(|r| r.seq == seq) {
            return Ok(self.chunk.get(i));
        }
        self.legacy = kv.get(&legacy_key(self.partition, seq))?;
        Ok(self.legacy.as_ref())
    }
}

/// Records with seq ≥ `from`, in order, at most `limit`.
pub fn range(kv: &impl Kv, p: Partition, from: u64, limit: usize) -> Result<Vec<PushRecord>, StorageError> {
    let mut out: Vec<PushRecord> = kv
        .range_raw(&legacy_key(p, from), &legacy_key(p, u64::MAX), limit)?
        .into_iter()
        .map(|(_, v)| Ok(goim_types::serial::decode(&v)?))
        .collect::<Result<_, StorageError>>()?;
    let mut next = out.last().map_or(from, |r| r.seq + 1);
    while out.len() < limit {
        let Some(Stored { records: chunk, .. }) = chunk_from(kv, p, next)? else { break };
        let Some(last) = chunk.last().map(|r| r.seq) else { break };
        out.extend(chunk.into_iter().filter(|r| r.seq >= next).take(limit - out.len()));
        next = last + 1;
    }
    Ok(out)
}

/// Drops records with seq < `before` (retention), and their room history entries.
pub fn trim(txn: &mut Txn<'_>, p: Partition, before: u64) -> Result<usize, StorageError> {
    seal(txn)?;
    let mut h = head(txn, p)?;
    let before = before.min(h.last_seq + 1);
    if before <= h.first_seq {
        return Ok(0);
    }
    let mut n = 0;
    // Each room's newest dropped offset: its history forgets through there.
    let mut rooms_cut: BTreeMap<String, u64> = BTreeMap::new();
    let mut gone = |record: PushRecord| {
        if let PushTarget::Room { room, room_seq } = record.target {
            let cut = rooms_cut.entry(room).or_default();
            *cut = (*cut).max(room_seq);
        }
        n += 1;
    };
    // One chunk (or legacy record) at a time: the bodies of a whole cut need not fit in
    // memory at once.
    for (k, v) in txn.range_raw(&legacy_key(p, 0), &legacy_key(p, before), usize::MAX)? {
        gone(goim_types::serial::decode(&v)?);
        txn.delete(k);
    }
    let mut next = 0;
    while let Some(Stored { key, records: chunk }) = chunk_from(txn, p, next)? {
        let Some(last) = chunk.last().map(|r| r.seq) else { break };
        if chunk.first().is_some_and(|r| r.seq >= before) {
            break;
        }
        let (dropped, kept): (Vec<PushRecord>, Vec<PushRecord>) =
            chunk.into_iter().partition(|r| r.seq < before);
        dropped.into_iter().for_each(&mut gone);
        if kept.is_empty() {
            txn.delete(key);
        } else {
            // The cut falls inside this chunk: it keeps its key (its last seq) and the rest.
            txn.put(key, &kept)?;
            break;
        }
        next = last + 1;
    }
    for (room, room_seq) in rooms_cut {
        rooms::forget_through(txn, &room, room_seq)?;
    }
    h.first_seq = before;
    txn.put(head_key(p), &h)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(room_seq: u64, body: &str) -> PushRecord {
        PushRecord {
            partition: 0,
            seq: 0,
            ts_ms: 1,
            target: PushTarget::Room { room: "r".into(), room_seq },
            op: 1000,
            body: body.to_owned().into(),
        }
    }

    fn append_batch(tree: &sled::Tree, bodies: &[&str]) {
        let mut txn = Txn::new(tree, None);
        let mut log = Appender::open(&txn, 0).unwrap();
        for b in bodies {
            let room_seq = log.last_seq() + 1;
            log.append(&mut txn, record(room_seq, b)).unwrap();
        }
        log.finish(&mut txn).unwrap();
        txn.commit().unwrap();
    }

    fn seqs(records: &[PushRecord]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_batch_is_one_chunk_and_reads_cross_chunks() {
        let (_dir, tree) = crate::tables::test_tree();
        append_batch(&tree, &["a", "b", "c"]);
        append_batch(&tree, &["d"]);
        append_batch(&tree, &["e", "f"]);
        assert_eq!(tree.scan_prefix(CHUNK).count(), 3, "one value per batch");
        let txn = Txn::new(&tree, None);
        assert_eq!(seqs(&range(&txn, 0, 1, 100).unwrap()), [1, 2, 3, 4, 5, 6]);
        assert_eq!(seqs(&range(&txn, 0, 2, 3).unwrap()), [2, 3, 4]);
        assert_eq!(seqs(&range(&txn, 0, 6, 10).unwrap()), [6]);
        assert!(range(&txn, 0, 7, 10).unwrap().is_empty());
        assert_eq!(get(&txn, 0, 4).unwrap().unwrap().body, "d");
        assert!(get(&txn, 0, 7).unwrap().is_none());
        assert_eq!(head(&txn, 0).unwrap(), LogHead { first_seq: 1, last_seq: 6 });
    }

    #[test]
    fn big_batches_are_cut_into_bounded_chunks() {
        let (_dir, tree) = crate::tables::test_tree();
        let body = "x".repeat(1000);
        let bodies: Vec<&str> = std::iter::repeat_n(body.as_str(), 120).collect();
        append_batch(&tree, &bodies);
        let chunks = tree.scan_prefix(CHUNK).count();
        assert_eq!(chunks, 3, "120 KB of bodies in chunks of about 48 KiB");
        let txn = Txn::new(&tree, None);
        assert_eq!(seqs(&range(&txn, 0, 1, 1000).unwrap()), (1..=120).collect::<Vec<_>>());
    }

    #[test]
    fn trim_cuts_inside_a_chunk_exactly() {
        let (_dir, tree) = crate::tables::test_tree();
        append_batch(&tree, &["a", "b", "c"]);
        append_batch(&tree, &["d", "e"]);
        let mut txn = Txn::new(&tree, None);
        assert_eq!(trim(&mut txn, 0, 5).unwrap(), 4);
        txn.commit().unwrap();
        let txn = Txn::new(&tree, None);
        assert_eq!(seqs(&range(&txn, 0, 1, 100).unwrap()), [5]);
        assert!(get(&txn, 0, 4).unwrap().is_none());
        assert_eq!(head(&txn, 0).unwrap(), LogHead { first_seq: 5, last_seq: 5 });
        assert_eq!(tree.scan_prefix(CHUNK).count(), 1);
    }

    #[test]
    fn trim_sees_records_appended_in_the_same_batch() {
        let (_dir, tree) = crate::tables::test_tree();
        let mut txn = Txn::new(&tree, None);
        let mut log = Appender::open(&txn, 0).unwrap();
        log.append(&mut txn, record(1, "a")).unwrap();
        log.append(&mut txn, record(2, "b")).unwrap();
        log.finish(&mut txn).unwrap();
        assert_eq!(trim(&mut txn, 0, 2).unwrap(), 1);
        append(&mut txn, record(3, "c")).unwrap();
        txn.commit().unwrap();
        let txn = Txn::new(&tree, None);
        assert_eq!(seqs(&range(&txn, 0, 1, 100).unwrap()), [2, 3]);
    }

    #[test]
    fn records_of_the_one_key_per_record_layout_are_read_and_trimmed_beside_chunks() {
        let (_dir, tree) = crate::tables::test_tree();
        for seq in 1..=3 {
            let mut r = record(seq, "old");
            r.seq = seq;
            tree.insert(legacy_key(0, seq), goim_types::serial::encode(&r).unwrap()).unwrap();
        }
        let old_head = LogHead { first_seq: 1, last_seq: 3 };
        tree.insert(head_key(0), goim_types::serial::encode(&old_head).unwrap()).unwrap();
        append_batch(&tree, &["new", "new"]);
        let txn = Txn::new(&tree, None);
        assert_eq!(seqs(&range(&txn, 0, 1, 100).unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(&range(&txn, 0, 3, 2).unwrap()), [3, 4]);
        assert_eq!(get(&txn, 0, 2).unwrap().unwrap().body, "old");
        let mut txn = Txn::new(&tree, None);
        assert_eq!(trim(&mut txn, 0, 5).unwrap(), 4);
        txn.commit().unwrap();
        assert_eq!(tree.scan_prefix(LEGACY_RECORD).count(), 0);
        assert_eq!(seqs(&range(&Txn::new(&tree, None), 0, 1, 100).unwrap()), [5]);
    }
}
