//! The push log (what Kafka is in goim): per partition, dense seq → `PushRecord`, and the
//! head (first and last retained seq).
use goim_types::rpc::record::Partition;
use goim_types::rpc::PushRecord;
use serde::{Deserialize, Serialize};

use super::{rooms, Kv, Txn};
use crate::StorageError;

const RECORD: &[u8] = b"plog/";
const HEAD: &[u8] = b"phead/";

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

fn record_key(p: Partition, seq: u64) -> Vec<u8> {
    let mut k = RECORD.to_vec();
    k.extend_from_slice(&p.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn head_key(p: Partition) -> Vec<u8> {
    let mut k = HEAD.to_vec();
    k.extend_from_slice(&p.to_be_bytes());
    k
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

    /// Appends `record` at the next seq (its `partition` and `seq` are overwritten).
    pub fn append(&mut self, txn: &mut Txn<'_>, mut record: PushRecord) -> Result<u64, StorageError> {
        self.head.last_seq += 1;
        record.partition = self.partition;
        record.seq = self.head.last_seq;
        txn.put(record_key(record.partition, record.seq), &record)?;
        txn.pushed = true;
        Ok(record.seq)
    }

    /// Stores the head, if records were appended.
    pub fn finish(self, txn: &mut Txn<'_>) -> Result<(), StorageError> {
        if self.head == self.stored {
            return Ok(());
        }
        txn.put(head_key(self.partition), &self.head)
    }
}

/// The record at `seq`, if retained.
pub fn get(kv: &impl Kv, p: Partition, seq: u64) -> Result<Option<PushRecord>, StorageError> {
    kv.get(&record_key(p, seq))
}

/// Records with seq ≥ `from`, in order, at most `limit`.
pub fn range(kv: &impl Kv, p: Partition, from: u64, limit: usize) -> Result<Vec<PushRecord>, StorageError> {
    kv.range_raw(&record_key(p, from), &record_key(p, u64::MAX), limit)?
        .into_iter()
        .map(|(_, v)| Ok(goim_types::serial::decode(&v)?))
        .collect()
}

/// Drops records with seq < `before` (retention), and their room history entries.
pub fn trim(txn: &mut Txn<'_>, p: Partition, before: u64) -> Result<usize, StorageError> {
    let mut h = head(txn, p)?;
    let before = before.min(h.last_seq + 1);
    let mut n = 0;
    // One record at a time: the bodies of a whole cut need not fit in memory at once.
    for seq in h.first_seq..before {
        let key = record_key(p, seq);
        if let Some(record) = get(txn, p, seq)? {
            if let goim_types::rpc::PushTarget::Room { room, room_seq } = &record.target {
                rooms::unindex(txn, room, *room_seq);
            }
            n += 1;
        }
        txn.delete(key);
    }
    if before > h.first_seq {
        h.first_seq = before;
        txn.put(head_key(p), &h)?;
    }
    Ok(n)
}
