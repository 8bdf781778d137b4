//! openraft `RaftLogStorage` over sled: tree `log` (index, big-endian → entry) and tree
//! `raft` (vote, committed, last purged). The vote is flushed before `save_vote` returns;
//! appended entries are acknowledged through the group-commit `Flusher`.
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use goim_net::serial;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, Vote};

use crate::error::{read_logs, write_logs};
use crate::flusher::Flusher;
use crate::{GoimTypes, StorageError};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

pub struct LogStore<C: GoimTypes> {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: Flusher<C>,
    _types: PhantomData<C>,
}

impl<C: GoimTypes> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            log: self.log.clone(),
            meta: self.meta.clone(),
            flusher: self.flusher.clone(),
            _types: PhantomData,
        }
    }
}

impl<C: GoimTypes> LogStore<C> {
    pub(crate) fn open(db: &sled::Db) -> Result<LogStore<C>, StorageError> {
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("log")?,
            meta: db.open_tree("raft")?,
            flusher: Flusher::start(db.clone()),
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
            Some((_, v)) => Ok(Some(serial::decode::<Entry<C>>(&v)?.log_id)),
            None => Ok(None),
        }
    }

    /// Deletes every log key in `range` (one atomic batch).
    fn remove_range(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(range) {
            let (k, _) = kv?;
            batch.remove(k);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }
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
        let range = (bound(range.start_bound()), bound(range.end_bound()));
        let mut out = Vec::new();
        for kv in self.log.range(range) {
            let (_, v) = kv.map_err(read_logs)?;
            out.push(serial::decode::<Entry<C>>(&v).map_err(read_logs)?);
        }
        Ok(out)
    }
}

impl<C: GoimTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, openraft::StorageError<u64>> {
        let last_purged: Option<LogId<u64>> = self.read_meta(PURGED).map_err(read_logs)?;
        let last = self.last_entry_id().map_err(read_logs)?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), openraft::StorageError<u64>> {
        let io = |e: StorageError| e.raft(openraft::ErrorSubject::Vote, openraft::ErrorVerb::Write);
        self.write_meta(VOTE, vote).map_err(io)?;
        self.db.flush_async().await.map_err(|e| io(e.into()))?;
        Ok(())
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serial::encode(&entry).map_err(write_logs)?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.log.apply_batch(batch).map_err(write_logs)?;
        self.flusher.after_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), openraft::StorageError<u64>> {
        self.remove_range(log_id.index.to_be_bytes()..).map_err(write_logs)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), openraft::StorageError<u64>> {
        self.write_meta(PURGED, &log_id).map_err(write_logs)?;
        self.remove_range(..=log_id.index.to_be_bytes()).map_err(write_logs)
    }
}
