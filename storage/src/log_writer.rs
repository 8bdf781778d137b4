//! The Raft log's writer: one thread that makes every sled write of the log (appended
//! entries, the vote, the committed id, truncates, purge points) in the order they were
//! asked for, and flushes them in groups: one sled flush and one witness sync for whatever
//! queued meanwhile, after which the appends' callbacks and the vote's caller are told.
//!
//! Why a thread: openraft's core calls `append` inline, and its ticks (so a leader's
//! heartbeats) wait while it runs. sled blocks a writer while all its IO buffers are being
//! written, and a disk that stalled for 0.8 s (writeback under `sync_file_range`) held the
//! leader's whole runtime that long: its followers heard nothing and elected. Now `append`
//! queues its encoded entries here and returns at once; only the vote and a truncate wait
//! for the writer.
//!
//! The newest entries also stay in memory (`Tail`) after they are written, so replication
//! and apply read them without sled: sled's batches take a process-wide lock that every
//! sled read waits for, and a batch stuck on the disk holds it.
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;
use openraft::{LogId, Vote};
use tokio::sync::{oneshot, Notify};

use crate::durable::Durability;
use crate::log_store::{entry_id, remove_indexes, COMMITTED, PURGED, PURGE_STEP, VOTE};
use crate::{GoimTypes, StorageError};

/// Bytes of entries queued and not yet in sled past which `append` waits for the writer.
const UNWRITTEN_MAX_BYTES: usize = 64 << 20;
/// Bytes of written entries kept in memory for readers (the oldest go first).
const TAIL_BYTES: usize = 1 << 20;
/// Requests handled between two flushes at most (the rest wait for the next group).
const GROUP_MAX: usize = 4096;

/// An entry as stored: its index and encoded value (crc included).
pub(crate) type Stored = (u64, Arc<[u8]>);

/// Who is told when a write is durable.
pub(crate) enum Waiter<C: GoimTypes> {
    Raft(LogFlushed<C>),
    Caller(oneshot::Sender<Result<(), StorageError>>),
}

impl<C: GoimTypes> Waiter<C> {
    fn tell(self, result: &Result<(), StorageError>) {
        match self {
            Waiter::Raft(flushed) => flushed.log_io_completed(
                result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())),
            ),
            Waiter::Caller(tx) => {
                let _ =
                    tx.send(result.as_ref().map(|_| ()).map_err(|e| StorageError::LogWrite(e.to_string())));
            }
        }
    }
}

enum Op<C: GoimTypes> {
    /// Entries (already in the `Tail`) to write; `last` is the last one's id.
    Append {
        entries: Vec<Stored>,
        last: Option<LogId<u64>>,
        waiter: Waiter<C>,
    },
    Vote {
        vote: Vote<u64>,
        waiter: Waiter<C>,
    },
    Committed(Option<LogId<u64>>),
    /// Removes the entries from `since` on (the log is purged through `purged`); answered
    /// once done (not flushed).
    Truncate {
        since: u64,
        purged: Option<LogId<u64>>,
        done: oneshot::Sender<Result<(), StorageError>>,
    },
    /// Records the purge point; then removes the entries through it in the background when
    /// `remove` is set. Answered once recorded (not flushed).
    Purge {
        log_id: LogId<u64>,
        remove: bool,
        done: Option<oneshot::Sender<Result<(), StorageError>>>,
    },
}

/// The newest entries, for readers: those not yet written to sled, and written ones up to
/// `TAIL_BYTES`.
#[derive(Default)]
pub(crate) struct Tail {
    held: Mutex<Held>,
    drained: Notify,
}

#[derive(Default)]
struct Held {
    entries: BTreeMap<u64, Kept>,
    bytes: usize,
    unwritten: usize,
}

struct Kept {
    value: Arc<[u8]>,
    written: bool,
}

impl Held {
    fn forget(&mut self, kept: &Kept) {
        self.bytes -= kept.value.len();
        if !kept.written {
            self.unwritten -= kept.value.len();
        }
    }
}

impl Tail {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // A panic while holding the lock leaves the map consistent.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The entries held with index `from` on, up to `to`, in index order. They are the
    /// log's newest: any entry below the first one returned is in sled.
    pub(crate) fn range(&self, from: u64, to: Bound<u64>) -> Vec<Stored> {
        self.lock().entries.range((Bound::Included(from), to)).map(|(i, k)| (*i, k.value.clone())).collect()
    }

    /// The last entry appended, if still held.
    pub(crate) fn last(&self) -> Option<Stored> {
        self.lock().entries.last_key_value().map(|(i, k)| (*i, k.value.clone()))
    }

    fn insert(&self, entries: &[Stored]) {
        let mut h = self.lock();
        for (index, value) in entries {
            h.bytes += value.len();
            h.unwritten += value.len();
            if let Some(old) = h.entries.insert(*index, Kept { value: value.clone(), written: false }) {
                h.forget(&old);
            }
        }
    }

    /// Drops the entries from `since` on (a truncate).
    fn remove_from(&self, since: u64) {
        let mut h = self.lock();
        for kept in h.entries.split_off(&since).into_values() {
            h.forget(&kept);
        }
    }

    /// Drops the written entries through `through` (a purge).
    fn purge(&self, through: u64) {
        let mut h = self.lock();
        while let Some(entry) = h.entries.first_entry() {
            if *entry.key() > through || !entry.get().written {
                break;
            }
            let kept = entry.remove();
            h.forget(&kept);
        }
    }

    /// `written` is in sled now: marks each entry still held as that very value (a
    /// truncate and a new append may have replaced it meanwhile), then lets the oldest
    /// written ones go past `TAIL_BYTES`.
    fn written(&self, written: &[Stored]) {
        let mut h = self.lock();
        for (index, value) in written {
            if let Some(kept) = h.entries.get_mut(index) {
                if !kept.written && Arc::ptr_eq(&kept.value, value) {
                    kept.written = true;
                    h.unwritten -= value.len();
                }
            }
        }
        while h.bytes > TAIL_BYTES {
            let Some(entry) = h.entries.first_entry() else { break };
            if !entry.get().written {
                break;
            }
            let kept = entry.remove();
            h.forget(&kept);
        }
        drop(h);
        self.drained.notify_waiters();
    }

    /// Waits while more than `UNWRITTEN_MAX_BYTES` wait for the writer (a disk stalled).
    async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.lock().unwritten < UNWRITTEN_MAX_BYTES {
                return;
            }
            drained.await;
        }
    }
}

/// The handle the log store holds; the thread stops when the last handle is dropped.
pub(crate) struct LogWriter<C: GoimTypes> {
    tx: mpsc::Sender<Op<C>>,
    pub(crate) tail: Arc<Tail>,
}

impl<C: GoimTypes> Clone for LogWriter<C> {
    fn clone(&self) -> Self {
        LogWriter { tx: self.tx.clone(), tail: self.tail.clone() }
    }
}

/// What the writer thread writes to.
pub(crate) struct Target {
    pub(crate) db: sled::Db,
    pub(crate) log: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) durability: Durability,
}

pub(crate) fn stopped() -> StorageError {
    StorageError::LogWrite("the log writer stopped".into())
}

impl<C: GoimTypes> LogWriter<C> {
    pub(crate) fn start(target: Target) -> Result<LogWriter<C>, StorageError> {
        let (tx, rx) = mpsc::channel();
        let tail = Arc::new(Tail::default());
        let held = tail.clone();
        std::thread::Builder::new()
            .name("goim-log-writer".into())
            .spawn(move || run(target, &held, rx))
            .map_err(|e| StorageError::LogWrite(format!("starting the log writer: {e}")))?;
        Ok(LogWriter { tx, tail })
    }

    fn send(&self, op: Op<C>) -> Result<(), StorageError> {
        self.tx.send(op).map_err(|_| stopped())
    }

    async fn ask(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), StorageError>>) -> Op<C>,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(op(tx))?;
        rx.await.map_err(|_| stopped())?
    }

    /// Queues `entries` (readable at once); `waiter` is told once they are durable.
    pub(crate) async fn append(&self, entries: Vec<Stored>, last: Option<LogId<u64>>, waiter: Waiter<C>) {
        self.tail.room().await;
        self.tail.insert(&entries);
        if let Err(Op::Append { waiter, .. }) =
            self.tx.send(Op::Append { entries, last, waiter }).map_err(|e| e.0)
        {
            waiter.tell(&Err(stopped()));
        }
    }

    /// Writes the vote and waits until it is durable.
    pub(crate) async fn save_vote(&self, vote: Vote<u64>) -> Result<(), StorageError> {
        self.ask(|tx| Op::Vote { vote, waiter: Waiter::Caller(tx) }).await
    }

    /// Writes the committed id (made durable by the next flush).
    pub(crate) fn save_committed(&self, committed: Option<LogId<u64>>) -> Result<(), StorageError> {
        self.send(Op::Committed(committed))
    }

    /// Removes the entries from `since` on, and waits until they are gone.
    pub(crate) async fn truncate(&self, since: u64, purged: Option<LogId<u64>>) -> Result<(), StorageError> {
        self.tail.remove_from(since);
        self.ask(|done| Op::Truncate { since, purged, done }).await
    }

    /// Records the purge point and waits until it is written.
    #[cfg(test)]
    pub(crate) async fn record_purge(&self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.ask(|done| Op::Purge { log_id, remove: false, done: Some(done) }).await
    }

    /// Records the purge point and then removes the entries through it, in the background.
    pub(crate) fn purge(&self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.tail.purge(log_id.index);
        self.send(Op::Purge { log_id, remove: true, done: None })
    }
}

fn run<C: GoimTypes>(target: Target, tail: &Tail, rx: mpsc::Receiver<Op<C>>) {
    let mut waiters = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(op) = next.take() {
            handle(&target, tail, op, &mut waiters);
            handled += 1;
            if handled < GROUP_MAX {
                next = rx.try_recv().ok();
            }
        }
        if waiters.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let result = flush(&target);
        metrics::histogram!("goim_storage_log_flush_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("goim_storage_log_flush_appends").record(waiters.len() as f64);
        for waiter in waiters.drain(..) {
            waiter.tell(&result);
        }
    }
}

/// Makes one request's writes; what waits for the flush goes to `waiters`.
fn handle<C: GoimTypes>(t: &Target, tail: &Tail, op: Op<C>, waiters: &mut Vec<Waiter<C>>) {
    match op {
        Op::Append { entries, last, waiter } => {
            let mut batch = sled::Batch::default();
            for (index, value) in &entries {
                batch.insert(&index.to_be_bytes(), &**value);
            }
            match t.log.apply_batch(batch) {
                Ok(()) => {
                    if let Some(last) = last {
                        t.durability.appended(last);
                    }
                    tail.written(&entries);
                    waiters.push(waiter);
                }
                Err(e) => waiter.tell(&Err(e.into())),
            }
        }
        Op::Vote { vote, waiter } => match write_meta(&t.meta, VOTE, &vote) {
            Ok(()) => {
                t.durability.voted(vote);
                waiters.push(waiter);
            }
            Err(e) => waiter.tell(&Err(e)),
        },
        Op::Committed(committed) => {
            // Not flushed for itself: the next flush carries it, and losing it only delays apply.
            if let Err(e) = write_meta(&t.meta, COMMITTED, &committed) {
                tracing::warn!(error = %e, "committed log id not written");
            }
        }
        Op::Truncate { since, purged, done } => {
            let _ = done.send(truncate::<C>(t, since, purged));
        }
        Op::Purge { log_id, remove, done } => {
            let recorded = write_meta(&t.meta, PURGED, &log_id);
            if recorded.is_ok() {
                t.durability.purged(log_id);
                if remove {
                    remove_in_background(t.log.clone(), log_id.index);
                }
            }
            match done {
                Some(done) => {
                    let _ = done.send(recorded);
                }
                None => {
                    if let Err(e) = recorded {
                        tracing::warn!(error = %e, "purge point not written");
                    }
                }
            }
        }
    }
}

fn write_meta<T: serde::Serialize>(meta: &sled::Tree, key: &[u8], v: &T) -> Result<(), StorageError> {
    meta.insert(key, goim_types::serial::encode(v)?)?;
    Ok(())
}

/// The witness stops claiming the entries from `since` on, then they go. Every entry
/// below `since` was appended before the truncate was asked for, so is in sled by now.
fn truncate<C: GoimTypes>(t: &Target, since: u64, purged: Option<LogId<u64>>) -> Result<(), StorageError> {
    let before = match since.checked_sub(1) {
        Some(i) => entry_id::<C>(&t.log, i)?,
        None => None,
    };
    t.durability.truncating(before.or(purged))?;
    remove_indexes(&t.log, since, u64::MAX, u64::MAX)
}

/// Removes the entries through `through` a few at a time, beside the appends (purged
/// entries are never read again, and the next start removes any this left).
fn remove_in_background(log: sled::Tree, through: u64) {
    let spawned = std::thread::Builder::new().name("goim-log-purge".into()).spawn(move || {
        let started = std::time::Instant::now();
        match remove_indexes(&log, 0, through, PURGE_STEP) {
            Ok(()) => {
                metrics::histogram!("goim_storage_log_purge_seconds").record(started.elapsed().as_secs_f64())
            }
            Err(e) => {
                tracing::warn!(error = %e, "purged log entries not removed (the next start removes them)")
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "purged log entries not removed (the next start removes them)");
    }
}

/// Flushes sled, then raises the witness to what was written before the flush began.
pub(crate) fn flush(t: &Target) -> Result<(), StorageError> {
    let mark = t.durability.mark();
    t.db.flush()?;
    t.durability.raise(mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(tag: u8) -> Arc<[u8]> {
        vec![tag; 8].into()
    }

    /// Bytes held, and of those not yet written.
    fn sizes(t: &Tail) -> (usize, usize) {
        let h = t.lock();
        (h.bytes, h.unwritten)
    }

    fn indexes(entries: &[Stored]) -> Vec<(u64, u8)> {
        entries.iter().map(|(i, v)| (*i, v[0])).collect()
    }

    #[test]
    fn entries_are_held_for_readers_and_a_replaced_one_is_not_taken_for_written() {
        let t = Tail::default();
        let first: Vec<Stored> = (1..=4).map(|i| (i, value(i as u8))).collect();
        t.insert(&first);
        assert_eq!(indexes(&t.range(2, Bound::Excluded(4))), vec![(2, 2), (3, 3)]);
        // A truncate from 3 and a new append of 3 before the writer got to the old 3.
        t.remove_from(3);
        let again = vec![(3, value(30))];
        t.insert(&again);
        assert_eq!(indexes(&t.range(0, Bound::Unbounded)), vec![(1, 1), (2, 2), (3, 30)]);
        // The writer writes the first append: the new 3 is not what it wrote.
        t.written(&first);
        assert_eq!(sizes(&t), (24, 8));
        t.written(&again);
        assert_eq!(sizes(&t), (24, 0));
        // A purge lets go of the written entries through it.
        t.purge(2);
        assert_eq!(indexes(&t.range(0, Bound::Unbounded)), vec![(3, 30)]);
    }

    #[test]
    fn written_entries_go_oldest_first_past_the_bound_and_unwritten_ones_stay() {
        let t = Tail::default();
        let chunk = TAIL_BYTES / 4;
        let entries: Vec<Stored> = (1..=6).map(|i| (i, vec![i as u8; chunk].into())).collect();
        t.insert(&entries);
        assert_eq!(t.range(0, Bound::Unbounded).len(), 6, "nothing written: all held");
        t.written(&entries[..5]);
        let held: Vec<u64> = t.range(0, Bound::Unbounded).iter().map(|(i, _)| *i).collect();
        assert_eq!(held, vec![3, 4, 5, 6], "the oldest written went, down to the bound");
        assert_eq!(t.last().map(|(i, _)| i), Some(6));
    }

    #[tokio::test]
    async fn append_waits_for_room_only_past_the_bound() {
        let p = Arc::new(Tail::default());
        let big: Vec<Stored> = vec![(1, vec![0u8; UNWRITTEN_MAX_BYTES].into())];
        p.insert(&big);
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.room().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "past the bound, append waits");
        p.written(&big);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room once the writer drained")
            .unwrap();
    }
}
