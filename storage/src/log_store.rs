//! openraft `RaftLogStorage` over sled: tree `log` (index, big-endian → entry) and tree
//! `raft` (vote, committed, last purged, log format). Every write goes through the log's
//! writer thread (`log_writer`), so openraft's core never waits on sled: appended entries
//! are read from its queue until they are in sled, and acknowledged after its group flush;
//! the vote is flushed before `save_vote` returns. Each stored entry carries a crc32 of its
//! own (over key and value), checked on every read, so a damaged entry is an error and never
//! replicated or applied. The durability witness is raised after flushes and lowered before
//! a truncate (see `durable`).
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use goim_types::serial;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, Vote};

use crate::durable::Durability;
use crate::error::{read_logs, write_logs};
use crate::log_writer::{LogWriter, Stored, Target, Waiter};
use crate::{GoimTypes, StorageError};

pub(crate) const LOG_TREE: &str = "log";
pub(crate) const META_TREE: &str = "raft";
pub(crate) const VOTE: &[u8] = b"vote";
pub(crate) const COMMITTED: &[u8] = b"committed";
pub(crate) const PURGED: &[u8] = b"purged";
/// Key of the log entry format; absent in data dirs written before entries had a crc.
pub(crate) const FORMAT: &[u8] = b"log_format";
/// Entries are `bincode(entry) ++ crc32(key ++ bincode(entry))`, the crc little-endian.
pub(crate) const FORMAT_CRC: u32 = 2;
const CRC_LEN: usize = 4;
/// Entries per sled batch when a purge removes them.
pub(crate) const PURGE_STEP: u64 = 16;

/// The stored value of `entry`: its encoding followed by the crc of key and encoding.
pub(crate) fn encode_entry<C: GoimTypes>(entry: &Entry<C>) -> Result<Vec<u8>, StorageError> {
    Ok(with_crc(entry.log_id.index, serial::encode(entry)?))
}

/// Appends the crc to an encoded entry stored under `index`.
pub(crate) fn with_crc(index: u64, mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = entry_crc(&index.to_be_bytes(), &bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn entry_crc(key: &[u8], bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(bytes);
    h.finalize()
}

/// The entry stored under `key`, if its crc, its encoding and its index all check out.
pub(crate) fn decode_entry<C: GoimTypes>(key: &[u8], value: &[u8]) -> Result<Entry<C>, StorageError> {
    let index = log_index(key)?;
    let Some(split) = value.len().checked_sub(CRC_LEN) else {
        return Err(StorageError::Corrupt(format!("log entry {index}: {} bytes, too short", value.len())));
    };
    let (bytes, crc) = value.split_at(split);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if entry_crc(key, bytes) != stored {
        return Err(StorageError::Corrupt(format!("log entry {index}: checksum mismatch")));
    }
    let entry: Entry<C> = serial::decode(bytes)
        .map_err(|e| StorageError::Corrupt(format!("log entry {index}: checksum ok but {e}")))?;
    if entry.log_id.index != index {
        return Err(StorageError::Corrupt(format!(
            "log entry {index}: holds the entry of index {}",
            entry.log_id.index
        )));
    }
    Ok(entry)
}

/// The index a log key stands for (big-endian u64).
pub(crate) fn log_index(key: &[u8]) -> Result<u64, StorageError> {
    let k: [u8; 8] =
        key.try_into().map_err(|_| StorageError::Corrupt(format!("log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(k))
}

pub struct LogStore<C: GoimTypes> {
    #[cfg(test)]
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// The log is purged through this: no entry up to it is read again, though a purge
    /// still removing them in the background (`purge`) may not have got to all of them
    /// yet, and the writer may not have recorded it yet.
    purged: Arc<Mutex<Option<LogId<u64>>>>,
    writer: LogWriter<C>,
    _types: PhantomData<C>,
}

impl<C: GoimTypes> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            #[cfg(test)]
            db: self.db.clone(),
            log: self.log.clone(),
            meta: self.meta.clone(),
            purged: self.purged.clone(),
            writer: self.writer.clone(),
            _types: PhantomData,
        }
    }
}

impl<C: GoimTypes> LogStore<C> {
    pub(crate) fn open(db: &sled::Db, durability: Durability) -> Result<LogStore<C>, StorageError> {
        let log = db.open_tree(LOG_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let purged = match meta.get(PURGED)? {
            Some(v) => Some(serial::decode::<LogId<u64>>(&v)?),
            None => None,
        };
        if let Some(purged) = purged {
            // What a background purge had not removed when the process stopped.
            remove_indexes(&log, 0, purged.index, PURGE_STEP)?;
        }
        let writer =
            LogWriter::start(Target { db: db.clone(), log: log.clone(), meta: meta.clone(), durability })?;
        Ok(LogStore {
            #[cfg(test)]
            db: db.clone(),
            log,
            meta,
            purged: Arc::new(Mutex::new(purged)),
            writer,
            _types: PhantomData,
        })
    }

    fn purged(&self) -> Option<LogId<u64>> {
        *self.purged.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now on no entry through `log_id` is read.
    fn mark_purged(&self, log_id: LogId<u64>) {
        let mut purged = self.purged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if purged.is_none_or(|p| p.index < log_id.index) {
            *purged = Some(log_id);
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.meta.get(key)? {
            Some(v) => Ok(Some(serial::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The id of the last entry, held by the writer or stored.
    fn last_entry_id(&self) -> Result<Option<LogId<u64>>, StorageError> {
        if let Some((index, value)) = self.writer.tail.last() {
            return Ok(Some(decode_entry::<C>(&index.to_be_bytes(), &value)?.log_id));
        }
        match self.log.last()? {
            Some((k, v)) => Ok(Some(decode_entry::<C>(&k, &v)?.log_id)),
            None => Ok(None),
        }
    }

    /// Writes `entries` and waits until they are durable (and witnessed), without openraft.
    #[cfg(test)]
    pub(crate) async fn append_durably(&self, entries: Vec<Entry<C>>) -> Result<(), StorageError> {
        let (entries, last) = encode_all(entries)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer.append(entries, last, Waiter::Caller(tx)).await;
        rx.await.map_err(|_| crate::log_writer::stopped())?
    }

    /// Records that the log is purged through `log_id`: from now on no entry up to it is
    /// read, whether or not it is still stored.
    #[cfg(test)]
    pub(crate) async fn record_purge(&self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.mark_purged(log_id);
        self.writer.record_purge(log_id).await
    }

    #[cfg(test)]
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }
}

/// The stored form of `entries`, and the last one's id.
fn encode_all<C: GoimTypes>(
    entries: impl IntoIterator<Item = Entry<C>>,
) -> Result<(Vec<Stored>, Option<LogId<u64>>), StorageError> {
    let mut out = Vec::new();
    let mut last = None;
    for entry in entries {
        out.push((entry.log_id.index, encode_entry(&entry)?.into()));
        last = Some(entry.log_id);
    }
    Ok((out, last))
}

/// The id of the entry stored in `log` at `index`, if any.
pub(crate) fn entry_id<C: GoimTypes>(
    log: &sled::Tree,
    index: u64,
) -> Result<Option<LogId<u64>>, StorageError> {
    let key = index.to_be_bytes();
    match log.get(key)? {
        Some(v) => Ok(Some(decode_entry::<C>(&key, &v)?.log_id)),
        None => Ok(None),
    }
}

/// Removes the stored entries with index `from..=to` from `log`, by key (a purge would
/// otherwise read, and page in, every entry it drops), `step` entries per sled batch: a
/// sled batch holds every other write to the db while it is written, so a purge running
/// beside the log's appends goes a few entries at a time. Ascending, so a crash part way
/// leaves the log contiguous. The log is contiguous, so only the part of the span between
/// the first and the last stored entry is walked.
pub(crate) fn remove_indexes(log: &sled::Tree, from: u64, to: u64, step: u64) -> Result<(), StorageError> {
    let (Some(first), Some(last)) = (log.iter().keys().next(), log.iter().keys().next_back()) else {
        return Ok(());
    };
    let (first, last) = (log_index(&first?)?, log_index(&last?)?);
    let (from, to) = (from.max(first), to.min(last));
    let mut at = from;
    while at <= to {
        let end = at.saturating_add(step - 1).min(to);
        let mut batch = sled::Batch::default();
        for index in at..=end {
            batch.remove(&index.to_be_bytes());
        }
        log.apply_batch(batch)?;
        at = match end.checked_add(1) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(())
}

fn bound(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether the range from `start` to `end` holds any index.
fn reaches(start: u64, end: Bound<u64>) -> bool {
    match end {
        Bound::Included(e) => start <= e,
        Bound::Excluded(e) => start < e,
        Bound::Unbounded => true,
    }
}

impl<C: GoimTypes> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, openraft::StorageError<u64>> {
        let purged_below = self.purged().map_or(0, |p| p.index + 1);
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        }
        .max(purged_below);
        let end = range.end_bound().cloned();
        if !reaches(start, end) {
            return Ok(Vec::new());
        }
        // The writer's tail first: what is below its first entry is in sled (the writer
        // puts entries in sled before it lets go of them).
        let held = self.writer.tail.range(start, end);
        let stored_end = match held.first() {
            Some((first, _)) => Bound::Excluded(*first),
            None => end,
        };
        let mut out = Vec::new();
        // Not even an empty range of sled when the tail has it all: a sled read may wait on
        // a write stuck on the disk.
        if reaches(start, stored_end) {
            for kv in self.log.range((Bound::Included(start.to_be_bytes()), bound(stored_end.as_ref()))) {
                let (k, v) = kv.map_err(read_logs)?;
                out.push(decode_entry::<C>(&k, &v).map_err(read_logs)?);
            }
        }
        for (index, value) in &held {
            out.push(decode_entry::<C>(&index.to_be_bytes(), value).map_err(read_logs)?);
        }
        Ok(out)
    }
}

impl<C: GoimTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, openraft::StorageError<u64>> {
        let last_purged = self.purged();
        // An entry a background purge has not removed yet is no later than the purge.
        let last = match (self.last_entry_id().map_err(read_logs)?, last_purged) {
            (Some(entry), Some(purged)) if entry.index <= purged.index => Some(purged),
            (entry, purged) => entry.or(purged),
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), openraft::StorageError<u64>> {
        let io = |e: StorageError| e.raft(openraft::ErrorSubject::Vote, openraft::ErrorVerb::Write);
        self.writer.save_vote(*vote).await.map_err(io)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, openraft::StorageError<u64>> {
        self.read_meta(VOTE).map_err(|e| e.raft(openraft::ErrorSubject::Vote, openraft::ErrorVerb::Read))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), openraft::StorageError<u64>> {
        self.writer.save_committed(committed).map_err(write_logs)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, openraft::StorageError<u64>> {
        Ok(self.read_meta::<Option<LogId<u64>>>(COMMITTED).map_err(read_logs)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), openraft::StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (entries, last) = encode_all(entries).map_err(write_logs)?;
        self.writer.append(entries, last, Waiter::Raft(callback)).await;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), openraft::StorageError<u64>> {
        self.writer.truncate(log_id.index, self.purged()).await.map_err(write_logs)
    }

    /// Records the purge and returns; the entries go in the background. Removing a few
    /// hundred entries took 10-30 ms, and openraft waits for `purge` before it appends or
    /// replicates again: every snapshot stalled the log that long. Purged entries are never
    /// read again (`purged`), and the next start removes any the background left.
    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), openraft::StorageError<u64>> {
        self.mark_purged(log_id);
        self.writer.purge(log_id).map_err(write_logs)
    }
}
