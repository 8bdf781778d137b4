//! Keeps the durability witness (`witness`) in step with sled. Invariant: the witness never
//! claims more than sled holds durably. So it is raised only after a sled flush completes, to
//! what had been written to sled before that flush began (a `Mark`), and lowered before a
//! Raft `truncate` removes entries. A mark taken before a truncate is never raised to.
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::{LogId, Vote};

use crate::blobs::BlobSync;
use crate::witness::{Record, Witness};
use crate::StorageError;

#[derive(Clone)]
pub(crate) struct Durability {
    inner: Arc<Mutex<Inner>>,
    /// sled's blob files, which its flush does not fsync (`blobs`); its own lock, so the
    /// fsyncs never hold up `appended` / `voted` on the append path.
    blobs: Arc<Mutex<BlobSync>>,
}

struct Inner {
    witness: Witness,
    /// What the witness file says.
    written: Record,
    /// What has been written to sled, flushed or not.
    pending: Record,
    next_mark: u64,
    /// The newest mark the witness was raised to.
    raised: u64,
    /// Marks below this were taken before a truncate: stale.
    floor: u64,
}

/// The state written to sled at one point; durable once a flush started after it completes.
pub(crate) struct Mark {
    id: u64,
    record: Record,
}

impl Durability {
    /// `written` is what the witness holds, `current` what sled holds now.
    pub(crate) fn new(witness: Witness, written: Record, current: Record, blobs: BlobSync) -> Durability {
        let inner = Inner { witness, written, pending: current, next_mark: 1, raised: 0, floor: 0 };
        Durability { inner: Arc::new(Mutex::new(inner)), blobs: Arc::new(Mutex::new(blobs)) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the records consistent (plain copies).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Entries up to `last` were written to sled.
    pub(crate) fn appended(&self, last: LogId<u64>) {
        self.lock().pending.last = Some(last);
    }

    pub(crate) fn voted(&self, vote: Vote<u64>) {
        self.lock().pending.vote = Some(vote);
    }

    pub(crate) fn purged(&self, purged: LogId<u64>) {
        self.lock().pending.purged = Some(purged);
    }

    /// Take this right before flushing sled.
    pub(crate) fn mark(&self) -> Mark {
        let mut inner = self.lock();
        let id = inner.next_mark;
        inner.next_mark += 1;
        Mark { id, record: inner.pending }
    }

    /// After the flush that followed `mark` completed: sled's blob files written so far are
    /// fsynced, then the witness records `mark`'s state. Blocks (fsyncs): the log writer's
    /// thread calls it.
    pub(crate) fn raise(&self, mark: Mark) -> Result<(), StorageError> {
        let synced = self.blobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).sync_new()?;
        if synced > 0 {
            metrics::counter!("goim_storage_blob_fsyncs_total").increment(synced as u64);
        }
        let inner = &mut *self.lock();
        if mark.id < inner.floor || mark.id < inner.raised {
            return Ok(());
        }
        if mark.record != inner.written {
            inner.witness.write(&mark.record)?;
            inner.written = mark.record;
        }
        inner.raised = mark.id;
        Ok(())
    }

    /// Before a truncate removes entries after `new_last`: the witness stops claiming them.
    /// Blocks (an fdatasync): the log writer's thread calls it.
    pub(crate) fn truncating(&self, new_last: Option<LogId<u64>>) -> Result<(), StorageError> {
        let inner = &mut *self.lock();
        inner.pending.last = new_last;
        inner.floor = inner.next_mark;
        let index = |l: Option<LogId<u64>>| l.map(|l| l.index);
        if index(inner.written.last) > index(new_last) {
            let lowered = Record { last: new_last, ..inner.written };
            inner.witness.write(&lowered)?;
            inner.written = lowered;
        }
        Ok(())
    }
}
