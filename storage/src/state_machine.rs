//! openraft `RaftStateMachine`: applies committed entries to the tables. Each `apply` call is
//! one atomic sled batch that also records `last_applied`, so a crash never leaves an entry
//! half applied and a restart re-applies exactly the entries after `last_applied`.
//! Snapshots (`snapshot`) are built beside apply, not in line with it, and installed into
//! a fresh state tree (`state_tree`).
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, LogId, OptionalSend, SnapshotMeta, StoredMembership};
use tokio::sync::{watch, Mutex};

use crate::error::{read_sm, snapshot_io, write_sm};
use crate::snapshot::{self, Recording, SnapshotBuilder, SnapshotDir, SnapshotFile};
use crate::state_tree::StateTrees;
use crate::tables::{Kv, RawPairs, Txn};
use crate::{Command, GoimTypes, StorageError};

/// Where the state machine stands: last applied log id and the membership at that point.
pub(crate) type Applied<N> = Result<(Option<LogId<u64>>, StoredMembership<u64, N>), StorageError>;

/// The tree that held the newest snapshot before snapshots were files; dropped at open.
const LEGACY_SNAPSHOT_TREE: &str = "snapshot";
pub(crate) const APPLIED: &[u8] = b"meta/applied";
pub(crate) const MEMBERSHIP: &[u8] = b"meta/membership";

pub struct StateMachine<C: GoimTypes> {
    trees: StateTrees,
    snapshots: Arc<SnapshotDir>,
    /// Before-images for the snapshot build in progress (`snapshot::before_images`).
    recording: Recording,
    /// Held by a snapshot build from start to end; an install waits for it.
    building: Arc<Mutex<()>>,
    /// Bumped after every apply batch that appended to the push log (wakes tails).
    pushes: watch::Sender<u64>,
    snapshot_counter: Arc<AtomicU64>,
    _types: PhantomData<C>,
}

/// A read-only handle on the applied state, for the logic role (HTTP reads, tails).
#[derive(Clone)]
pub struct StateView {
    trees: StateTrees,
    pushes: watch::Receiver<u64>,
}

impl StateView {
    /// Changes whenever new push records were applied.
    pub fn push_changes(&self) -> watch::Receiver<u64> {
        self.pushes.clone()
    }

    pub fn last_applied(&self) -> Result<Option<LogId<u64>>, StorageError> {
        Ok(self.get::<Option<LogId<u64>>>(APPLIED)?.flatten())
    }
}

impl Kv for StateView {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.trees.read(|tree| tree.get(key))?.map(|v| v.to_vec()))
    }

    fn range_raw(&self, start: &[u8], end: &[u8], limit: usize) -> Result<RawPairs, StorageError> {
        self.trees.read(|tree| {
            tree.range(start..end)
                .take(limit)
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect()
        })
    }
}

impl<C: GoimTypes> StateMachine<C> {
    /// `snapshots` is the directory recovery opened and checked.
    pub(crate) fn open(db: &sled::Db, snapshots: SnapshotDir) -> Result<StateMachine<C>, StorageError> {
        let (pushes, _) = watch::channel(0);
        db.drop_tree(LEGACY_SNAPSHOT_TREE)?;
        Ok(StateMachine {
            trees: StateTrees::open(db)?,
            snapshots: Arc::new(snapshots),
            recording: Recording::default(),
            building: Arc::new(Mutex::new(())),
            pushes,
            snapshot_counter: Arc::new(AtomicU64::new(0)),
            _types: PhantomData,
        })
    }

    pub fn view(&self) -> StateView {
        StateView { trees: self.trees.clone(), pushes: self.pushes.subscribe() }
    }

    fn read_applied(&self) -> Applied<C::Node> {
        let view = self.view();
        let applied = view.last_applied()?;
        let membership = view.get(MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    fn wake_tails(&self) {
        self.pushes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl<C> RaftStateMachine<C> for StateMachine<C>
where
    C: GoimTypes,
    C::D: Command<Reply = C::R>,
    C::R: Default,
{
    type SnapshotBuilder = SnapshotBuilder<C>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, C::Node>), openraft::StorageError<u64>> {
        self.read_applied().map_err(read_sm)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, openraft::StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let tree = self.trees.current();
        let building = self.recording.current();
        let snapshotting = building.is_some();
        // `pushed` is `None` when nothing was applied (no entries).
        let (replies, pushed) = off_the_async_threads(|| {
            let mut txn = Txn::new(&tree, building);
            let mut replies = Vec::new();
            let mut last = None;
            for entry in entries {
                txn.log_index = entry.log_id.index;
                let reply = match entry.payload {
                    EntryPayload::Blank => C::R::default(),
                    EntryPayload::Normal(cmd) => cmd.apply(&mut txn)?,
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembership::new(Some(entry.log_id), m);
                        txn.put(MEMBERSHIP.to_vec(), &stored)?;
                        C::R::default()
                    }
                };
                replies.push(reply);
                last = Some(entry.log_id);
            }
            if last.is_none() {
                return Ok((replies, None));
            }
            txn.put(APPLIED.to_vec(), &last)?;
            let pushed = txn.pushed;
            txn.commit()?;
            Ok::<_, StorageError>((replies, Some(pushed)))
        })
        .map_err(write_sm)?;
        let Some(pushed) = pushed else { return Ok(replies) };
        metrics::histogram!("goim_storage_apply_seconds").record(started.elapsed().as_secs_f64());
        if snapshotting {
            metrics::counter!("goim_storage_applied_while_snapshotting_total")
                .increment(replies.len() as u64);
        }
        if pushed {
            self.wake_tails();
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Nothing is copied here: from now on apply records before-images for the build,
        // which reads the tree beside apply (`snapshot::before_images`).
        let gate = self.building.clone().lock_owned().await;
        let recorder = self.recording.start();
        let n = self.snapshot_counter.fetch_add(1, Ordering::Relaxed);
        let (tree, dir) = (self.trees.current(), self.snapshots.clone());
        SnapshotBuilder::new(tree, recorder, dir, gate, self.read_applied(), n)
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, openraft::StorageError<u64>> {
        let file = SnapshotFile::create(self.snapshots.receiving()).await.map_err(snapshot_io)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, C::Node>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), openraft::StorageError<u64>> {
        let _no_build = self.building.lock().await;
        let started = std::time::Instant::now();
        let (file, received) = snapshot.into_std().await;
        let (trees, dir, meta) = (self.trees.clone(), self.snapshots.clone(), meta.clone());
        tokio::task::spawn_blocking(move || snapshot::install(&trees, &dir, &meta, file, &received))
            .await
            .map_err(|e| write_sm(StorageError::Corrupt(format!("installing a snapshot: {e}"))))?
            .map_err(write_sm)?;
        metrics::histogram!("goim_storage_snapshot_install_seconds").record(started.elapsed().as_secs_f64());
        self.wake_tails();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, openraft::StorageError<u64>> {
        self.snapshots.open_current().map_err(read_sm)
    }
}

/// Runs `f`, which calls sled, without holding up the runtime's other tasks: in a disk stall
/// sled blocks a write while its IO buffers are all being written, and every other sled call
/// of the process behind it (one process-wide lock), while the Raft core, its network and
/// timers share these threads. On a multi-thread runtime the worker's other
/// tasks move to another thread meanwhile.
pub fn off_the_async_threads<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
