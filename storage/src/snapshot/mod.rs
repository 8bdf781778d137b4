//! Snapshots of the state machine: the whole state tree at one `last_applied`, built while
//! apply keeps running (`before_images`), streamed into a file (`format`, `files`) and never
//! held in memory whole; installed from such a file into a fresh state tree switched to in
//! one step (`StateTrees`). The newest snapshot file survives restarts and is what is sent
//! to followers that fell behind the purged log.
mod background;
mod before_images;
mod files;
mod format;
mod paced;

pub(crate) use before_images::{BeforeImages, Recorder, Recording};
pub(crate) use files::SnapshotDir;
pub use files::SnapshotFile;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use goim_types::serial;
use openraft::storage::{RaftSnapshotBuilder, Snapshot};
use openraft::SnapshotMeta;
use tokio::sync::OwnedMutexGuard;

use crate::error::{read_sm, snapshot_io};
use crate::state_machine::{Applied, APPLIED, MEMBERSHIP};
use crate::state_tree::StateTrees;
use crate::{GoimTypes, StorageError};

/// What a build needs, handed to its thread (`background`): the tree as it is being recorded, and
/// the gate that keeps an install from replacing the tree meanwhile.
struct Build {
    tree: sled::Tree,
    recorder: Recorder,
    dir: Arc<SnapshotDir>,
    _gate: OwnedMutexGuard<()>,
}

impl Build {
    /// Writes the recorded state to a new file and makes it the current snapshot.
    fn write(self, meta: &[u8]) -> Result<SnapshotFile, StorageError> {
        let tmp = self.dir.temp("build");
        let written = self.write_to(&tmp, meta);
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        self.dir.publish(&tmp)?;
        SnapshotFile::reopen(self.dir.current())
    }

    fn write_to(&self, tmp: &Path, meta: &[u8]) -> Result<(), StorageError> {
        let io = |e| StorageError::io(tmp, e);
        let file = paced::PacedFile::new(File::create(tmp).map_err(io)?, self.dir.build_bytes_per_s());
        let mut writer = format::Writer::new(BufWriter::new(file), meta).map_err(io)?;
        self.recorder.scan(&self.tree, |k, v| writer.pair(k, v).map_err(io))?;
        let file = writer.finish().map_err(io)?.into_inner().map_err(|e| io(e.into_error()))?;
        file.into_file().sync_all().map_err(io)
    }
}

pub struct SnapshotBuilder<C: GoimTypes> {
    build: Option<Build>,
    applied: Applied<C::Node>,
    counter: u64,
}

impl<C: GoimTypes> SnapshotBuilder<C> {
    /// A build of `tree` as it is now (`applied`), recording before-images from now on.
    pub(crate) fn new(
        tree: sled::Tree,
        recorder: Recorder,
        dir: Arc<SnapshotDir>,
        gate: OwnedMutexGuard<()>,
        applied: Applied<C::Node>,
        counter: u64,
    ) -> Self {
        SnapshotBuilder { build: Some(Build { tree, recorder, dir, _gate: gate }), applied, counter }
    }
}

impl<C: GoimTypes> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, openraft::StorageError<u64>> {
        let started = std::time::Instant::now();
        let (last_applied, membership) = match &self.applied {
            Ok(a) => a.clone(),
            Err(e) => return Err(read_sm(StorageError::Corrupt(e.to_string()))),
        };
        let snapshot_id = match &last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.counter),
            None => format!("none-{}", self.counter),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let build = self
            .build
            .take()
            .ok_or_else(|| snapshot_io(StorageError::Corrupt("snapshot already built".into())))?;
        let encoded = serial::encode(&meta).map_err(snapshot_io)?;
        let file = background::run(move || build.write(&encoded)).await.map_err(snapshot_io)?;
        metrics::histogram!("goim_storage_snapshot_build_seconds").record(started.elapsed().as_secs_f64());
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

/// Installs the snapshot in `file` (received at `received`) as the whole state: checked
/// chunk by chunk into a fresh tree, switched to once complete; the received file itself
/// then becomes the current snapshot (copied only when it lies outside `dir`).
pub(crate) fn install<N: openraft::Node>(
    trees: &StateTrees,
    dir: &SnapshotDir,
    meta: &SnapshotMeta<u64, N>,
    mut file: File,
    received: &Path,
) -> Result<(), StorageError> {
    file.seek(SeekFrom::Start(0)).map_err(|e| StorageError::io(received, e))?;
    let tree = trees.fresh()?;
    if let Err(e) = fill(&tree, BufReader::new(&file), meta, received) {
        trees.discard(&tree)?;
        return Err(e);
    }
    file.sync_all().map_err(|e| StorageError::io(received, e))?;
    trees.switch(tree)?;
    if received.parent() == Some(dir.path()) {
        dir.publish(received)?;
    } else {
        // openraft's test suite hands over another store's file: keep a copy of our own.
        let copy = dir.temp("install");
        std::fs::copy(received, &copy)
            .and_then(|_| File::open(&copy)?.sync_all())
            .map_err(|e| StorageError::io(&copy, e))?;
        dir.publish(&copy)?;
    }
    dir.discard_received(received);
    Ok(())
}

/// Pairs per sled batch when installing. One batch per 1 MiB chunk (~10k pairs) left a
/// follower that installed a 23 MB snapshot at 810 MB RSS (sled holds what a batch
/// replaces until the batch ends); batches of 1,000 pairs: 175 MB (release build).
const INSTALL_BATCH: usize = 1_000;

/// Reads the snapshot from `input` into `tree`, in sled batches of `INSTALL_BATCH` pairs,
/// its position last.
fn fill<N: openraft::Node>(
    tree: &sled::Tree,
    input: impl Read,
    meta: &SnapshotMeta<u64, N>,
    received: &Path,
) -> Result<(), StorageError> {
    let (mut reader, header) = format::Reader::open(input, received)?;
    let header: SnapshotMeta<u64, N> = files::decode_meta(&header, received)?;
    if header.snapshot_id != meta.snapshot_id || header.last_log_id != meta.last_log_id {
        return Err(StorageError::damaged(
            received,
            format!("snapshot: the file holds snapshot {}, not {}", header.snapshot_id, meta.snapshot_id),
        ));
    }
    while let Some(pairs) = reader.next_chunk()? {
        for part in pairs.chunks(INSTALL_BATCH) {
            let mut batch = sled::Batch::default();
            for (k, v) in part {
                batch.insert(k.as_slice(), v.as_slice());
            }
            tree.apply_batch(batch)?;
        }
    }
    let mut batch = sled::Batch::default();
    batch.insert(APPLIED, serial::encode(&meta.last_log_id)?);
    batch.insert(MEMBERSHIP, serial::encode(&meta.last_membership)?);
    tree.apply_batch(batch)?;
    Ok(())
}

#[cfg(test)]
mod tests;
