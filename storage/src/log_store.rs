//! openraft `RaftLogStorage` over sled: tree `log` (index, big-endian → entry) and tree
//! `raft` (vote, committed, last purged, log format). The vote is flushed before `save_vote`
//! returns; appended entries are acknowledged through the group-commit `Flusher`. Each
//! stored entry carries a crc32 of its own (over key and value), checked on every read, so a
//! damaged entry is an error and never replicated or applied. The durability witness is
//! raised after flushes and lowered before a truncate (see `durable`).
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use goim_types::serial;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, Vote};

use crate::durable::Durability;
use crate::error::{read_logs, write_logs};
use crate::flusher::{self, Flusher};
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
const PURGE_STEP: u64 = 16;

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
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// Entries below this index are purged: never read again, though a purge still
    /// removing them in the background (`purge`) may not have got to all of them yet.
    purged_below: Arc<AtomicU64>,
    flusher: Flusher<C>,
    durability: Durability,
    _types: PhantomData<C>,
}

impl<C: GoimTypes> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            log: self.log.clone(),
            meta: self.meta.clone(),
            purged_below: self.purged_below.clone(),
            flusher: self.flusher.clone(),
            durability: self.durability.clone(),
            _types: PhantomData,
        }
    }
}

impl<C: GoimTypes> LogStore<C> {
    pub(crate) fn open(db: &sled::Db, durability: Durability) -> Result<LogStore<C>, StorageError> {
        let log = db.open_tree(LOG_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let purged = match meta.get(PURGED)? {
            Some(v) => Some(serial::decode::<LogId<u64>>(&v)?.index),
            None => None,
        };
        if let Some(purged) = purged {
            // What a background purge had not removed when the process stopped.
            remove_indexes(&log, 0, purged, PURGE_STEP)?;
        }
        let purged_below = purged.map_or(0, |p| p + 1);
        Ok(LogStore {
            db: db.clone(),
            log,
            meta,
            purged_below: Arc::new(AtomicU64::new(purged_below)),
            flusher: Flusher::start(db.clone(), durability.clone()),
            durability,
            _types: PhantomData,
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.meta.get(key)? {
            Some(v) => Ok(Some(serial::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError> {
        self.meta.insert(key, serial::encode(v)?)?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId<u64>>, StorageError> {
        match self.log.last()? {
            Some((k, v)) => Ok(Some(decode_entry::<C>(&k, &v)?.log_id)),
            None => Ok(None),
        }
    }

    /// The id of the entry at `index`, if stored.
    fn entry_id(&self, index: u64) -> Result<Option<LogId<u64>>, StorageError> {
        let key = index.to_be_bytes();
        match self.log.get(key)? {
            Some(v) => Ok(Some(decode_entry::<C>(&key, &v)?.log_id)),
            None => Ok(None),
        }
    }

    /// Writes `entries` and waits until they are durable (and witnessed), without openraft.
    #[cfg(test)]
    pub(crate) async fn append_durably(&self, entries: Vec<Entry<C>>) -> Result<(), StorageError> {
        self.write_entries(entries)?;
        flusher::flush(&self.db, &self.durability).await
    }

    /// Records that the log is purged through `log_id`: from now on no entry up to it is
    /// read, whether or not it is still stored.
    pub(crate) fn record_purge(&self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.write_meta(PURGED, &log_id)?;
        self.durability.purged(log_id);
        self.purged_below.fetch_max(log_id.index + 1, Ordering::Relaxed);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Writes `entries` to sled (readable at once, durable after the next flush).
    fn write_entries(&self, entries: impl IntoIterator<Item = Entry<C>>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        let mut last = None;
        for entry in entries {
            batch.insert(&entry.log_id.index.to_be_bytes(), encode_entry(&entry)?);
            last = Some(entry.log_id);
        }
        self.log.apply_batch(batch)?;
        if let Some(last) = last {
            self.durability.appended(last);
        }
        Ok(())
    }
}

/// Removes the stored entries with index `from..=to` from `log`, by key (a purge would
/// otherwise read, and page in, every entry it drops), `step` entries per sled batch: a
/// sled batch holds every other write to the db while it is written, so a purge running
/// beside the log's appends goes a few entries at a time. Ascending, so a crash part way
/// leaves the log contiguous. The log is contiguous, so only the part of the span between
/// the first and the last stored entry is walked.
fn remove_indexes(log: &sled::Tree, from: u64, to: u64, step: u64) -> Result<(), StorageError> {
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

impl<C: GoimTypes> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, openraft::StorageError<u64>> {
        let purged_below = self.purged_below.load(Ordering::Relaxed);
        let start = match range.start_bound() {
            Bound::Included(i) if *i >= purged_below => Bound::Included(i.to_be_bytes()),
            Bound::Excluded(i) if *i >= purged_below => Bound::Excluded(i.to_be_bytes()),
            _ => Bound::Included(purged_below.to_be_bytes()),
        };
        let range = (start, bound(range.end_bound()));
        let mut out = Vec::new();
        for kv in self.log.range(range) {
            let (k, v) = kv.map_err(read_logs)?;
            out.push(decode_entry::<C>(&k, &v).map_err(read_logs)?);
        }
        Ok(out)
    }
}

impl<C: GoimTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, openraft::StorageError<u64>> {
        let last_purged: Option<LogId<u64>> = self.read_meta(PURGED).map_err(read_logs)?;
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
        self.write_meta(VOTE, vote).map_err(io)?;
        self.durability.voted(*vote);
        flusher::flush(&self.db, &self.durability).await.map_err(io)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, openraft::StorageError<u64>> {
        self.read_meta(VOTE).map_err(|e| e.raft(openraft::ErrorSubject::Vote, openraft::ErrorVerb::Read))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), openraft::StorageError<u64>> {
        // Not flushed here: the next log flush carries it, and losing it only delays apply.
        self.write_meta(COMMITTED, &committed).map_err(write_logs)
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
        self.write_entries(entries).map_err(write_logs)?;
        self.flusher.after_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), openraft::StorageError<u64>> {
        // The witness must stop claiming the removed entries before they go.
        let before = match log_id.index.checked_sub(1) {
            Some(i) => self.entry_id(i).map_err(write_logs)?,
            None => None,
        };
        let purged: Option<LogId<u64>> = self.read_meta(PURGED).map_err(write_logs)?;
        self.durability.truncating(before.or(purged)).await.map_err(write_logs)?;
        remove_indexes(&self.log, log_id.index, u64::MAX, u64::MAX).map_err(write_logs)
    }

    /// Records the purge and returns; the entries go in the background. Removing a few
    /// hundred entries took 10-30 ms, and openraft waits for `purge` before it appends or
    /// replicates again: every snapshot stalled the log that long. Purged entries are never
    /// read again (`purged_below`), and the next start removes any the background left.
    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), openraft::StorageError<u64>> {
        self.record_purge(log_id).map_err(write_logs)?;
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match remove_indexes(&log, 0, log_id.index, PURGE_STEP) {
                Ok(()) => metrics::histogram!("goim_storage_log_purge_seconds")
                    .record(started.elapsed().as_secs_f64()),
                Err(e) => {
                    tracing::warn!(error = %e, "purged log entries not removed (the next start removes them)")
                }
            }
        });
        Ok(())
    }
}
