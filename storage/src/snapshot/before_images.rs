//! A consistent view of the state tree while apply keeps writing to it. A snapshot must be
//! the state at exactly the `last_applied` it names, but copying the tree in line with apply
//! stalled every write for as long as the copy took. Instead, while a build scans the live
//! tree, every apply batch first records, for each key it is about to write or delete, the
//! value the key had before (its before-image; `None`: absent), unless the scan already
//! passed that key or an earlier batch recorded it. The scan takes a key's before-image over
//! the tree's value when there is one, and at the end emits the before-images of keys it
//! never met (deleted before it got there).
//!
//! Why that is exactly the state S0 at which recording started, for any key k:
//! - a batch records (under the lock) before it writes, and only while the scan has not
//!   passed k: so the first batch writing k ahead of the scan records S0[k], and later ones
//!   find it recorded;
//! - the scan reads k's tree value first, then looks for a before-image under the lock and
//!   marks k passed. Finding none means no batch had recorded k, hence none had written it
//!   before that look: the value read is S0[k]. A batch writing k after the look records
//!   nothing, and whatever it writes is not in what the scan took;
//! - a before-image the scan never took belongs to a key it did not meet: deleted (or not
//!   yet existing) when it went by; emitted at the end if it existed at S0.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sled::IVec;

use crate::StorageError;

/// The before-images of one snapshot build, shared by apply (`record`) and the build's scan.
#[derive(Default)]
pub(crate) struct BeforeImages {
    inner: Mutex<Images>,
}

#[derive(Default)]
struct Images {
    /// The last key the scan looked at: batches record nothing at or below it.
    passed: Option<IVec>,
    /// The scan is over: batches record nothing.
    done: bool,
    before: HashMap<Vec<u8>, Option<IVec>>,
}

impl BeforeImages {
    fn lock(&self) -> MutexGuard<'_, Images> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called by an apply batch about to write (or delete) `keys` in `tree`.
    pub(crate) fn record<'k>(
        &self,
        tree: &sled::Tree,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> Result<(), StorageError> {
        let mut images = self.lock();
        if images.done {
            return Ok(());
        }
        for key in keys {
            let passed = images.passed.as_ref().is_some_and(|p| key <= p.as_ref());
            if passed || images.before.contains_key(key) {
                continue;
            }
            let before = tree.get(key)?;
            images.before.insert(key.to_vec(), before);
        }
        Ok(())
    }

    /// The scan met `key` holding `read`: its value at the start, if it existed then.
    fn take(&self, key: IVec, read: IVec) -> Option<IVec> {
        let mut images = self.lock();
        let value = match images.before.remove(key.as_ref()) {
            Some(before) => before,
            None => Some(read),
        };
        images.passed = Some(key);
        value
    }

    /// Ends recording; the keys the scan never met that existed at the start.
    fn finish(&self) -> Vec<(Vec<u8>, IVec)> {
        let mut images = self.lock();
        images.done = true;
        let mut left: Vec<(Vec<u8>, IVec)> =
            images.before.drain().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        left.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        left
    }
}

/// Where apply finds the build in progress, if any (one at a time: openraft builds one
/// snapshot at a time, and `StateMachine` holds a gate across each build).
#[derive(Clone, Default)]
pub(crate) struct Recording(Arc<Mutex<Option<Arc<BeforeImages>>>>);

impl Recording {
    fn slot(&self) -> MutexGuard<'_, Option<Arc<BeforeImages>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts recording before-images; they stop when the returned guard is dropped.
    pub(crate) fn start(&self) -> Recorder {
        let images = Arc::new(BeforeImages::default());
        *self.slot() = Some(images.clone());
        metrics::gauge!("goim_storage_snapshot_building").set(1.0);
        Recorder { recording: self.clone(), images }
    }

    /// The before-images an apply batch must record into, if a build is running.
    pub(crate) fn current(&self) -> Option<Arc<BeforeImages>> {
        self.slot().clone()
    }
}

/// One build's recording: ends (and unregisters) when dropped, whether the build finished
/// or failed.
pub(crate) struct Recorder {
    recording: Recording,
    images: Arc<BeforeImages>,
}

impl Recorder {
    /// Calls `emit` with every pair of `tree` as it was when recording started: in key
    /// order, then the pairs deleted before the scan reached them.
    pub(crate) fn scan(
        &self,
        tree: &sled::Tree,
        mut emit: impl FnMut(&[u8], &[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for kv in tree.iter() {
            let (key, read) = kv?;
            if let Some(value) = self.images.take(key.clone(), read) {
                emit(&key, &value)?;
            }
        }
        for (key, value) in self.images.finish() {
            emit(&key, &value)?;
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.images.finish();
        let mut slot = self.recording.slot();
        if slot.as_ref().is_some_and(|current| Arc::ptr_eq(current, &self.images)) {
            *slot = None;
            metrics::gauge!("goim_storage_snapshot_building").set(0.0);
        }
    }
}
