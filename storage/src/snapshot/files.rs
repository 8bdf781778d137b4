//! Where snapshots live: `<data_dir>/snapshots/`. The newest is `current.snap`; a new one is
//! written under a temporary name (`build-N.tmp` when built here, `install-N.tmp` when
//! installed from a leader, which sends it as `recv-N.tmp`), synced, and renamed over it,
//! so `current.snap` is always a complete file. A reader that opened the previous one keeps
//! reading it (the rename does not touch an open file). Temporary files are removed at
//! start.
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use goim_types::serial;
use openraft::storage::Snapshot;
use openraft::SnapshotMeta;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::format::Reader;
use crate::{GoimTypes, StorageError};

const CURRENT: &str = "current.snap";
const TEMP: &str = ".tmp";
/// The kind of temporary file a leader's snapshot is received into.
const RECEIVED: &str = "recv";

/// The snapshot directory of one node.
pub(crate) struct SnapshotDir {
    dir: PathBuf,
    next: AtomicU64,
    /// How fast a build writes its file (0: unlimited).
    build_bytes_per_s: u64,
}

impl SnapshotDir {
    /// Creates `<data_dir>/snapshots` if needed and removes temporary files left by a
    /// previous run. Builds into it write at most `build_bytes_per_s` (0: unlimited).
    pub(crate) fn open(data_dir: &Path, build_bytes_per_s: u64) -> Result<SnapshotDir, StorageError> {
        let dir = data_dir.join("snapshots");
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        for entry in std::fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))? {
            let path = entry.map_err(|e| StorageError::io(&dir, e))?.path();
            if path.to_string_lossy().ends_with(TEMP) {
                std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            }
        }
        Ok(SnapshotDir { dir, next: AtomicU64::new(1), build_bytes_per_s })
    }

    pub(crate) fn build_bytes_per_s(&self) -> u64 {
        self.build_bytes_per_s
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn current(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// A new temporary file name of `kind` (`build`, `install`, `recv`).
    pub(crate) fn temp(&self, kind: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{kind}-{n}{TEMP}"))
    }

    pub(crate) fn receiving(&self) -> PathBuf {
        self.temp(RECEIVED)
    }

    /// Makes the complete, synced file at `tmp` the current snapshot.
    pub(crate) fn publish(&self, tmp: &Path) -> Result<(), StorageError> {
        let current = self.current();
        std::fs::rename(tmp, &current).map_err(|e| StorageError::io(&current, e))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| StorageError::io(&self.dir, e))
    }

    /// Removes a received file once installed, and any received before it (streams a
    /// leader abandoned); not files of other directories (openraft's tests hand over
    /// another store's file).
    pub(crate) fn discard_received(&self, received: &Path) {
        let number = |p: &Path| {
            let name = p.file_name()?.to_str()?;
            name.strip_prefix(RECEIVED)?.strip_prefix('-')?.strip_suffix(TEMP)?.parse::<u64>().ok()
        };
        let (Some(upto), true) = (number(received), received.parent() == Some(self.dir.as_path())) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if number(&path).is_some_and(|n| n <= upto) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// The current snapshot's meta and its file (at its start), if there is one; only the
    /// header is read and checked (`verify` reads all of it).
    pub(crate) fn open_current<C: GoimTypes>(&self) -> Result<Option<Snapshot<C>>, StorageError> {
        let path = self.current();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let (_, meta) = Reader::open(BufReader::new(&mut file), &path)?;
        let meta = decode_meta(&meta, &path)?;
        file.seek(SeekFrom::Start(0)).map_err(|e| StorageError::io(&path, e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(SnapshotFile::from_std(file, path)) }))
    }

    /// Reads the current snapshot whole, checking every chunk and the file's checksum
    /// (at start, with the rest of storage: a damaged snapshot is never sent).
    pub(crate) fn verify<N: openraft::Node>(&self) -> Result<Option<SnapshotMeta<u64, N>>, StorageError> {
        let path = self.current();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let (mut reader, meta) = Reader::open(BufReader::new(file), &path)?;
        let meta = decode_meta(&meta, &path)?;
        while reader.next_chunk()?.is_some() {}
        Ok(Some(meta))
    }
}

pub(crate) fn decode_meta<N: openraft::Node>(
    meta: &[u8],
    path: &Path,
) -> Result<SnapshotMeta<u64, N>, StorageError> {
    serial::decode(meta).map_err(|e| StorageError::damaged(path, format!("snapshot meta: {e}")))
}

/// A snapshot's data as openraft reads, writes and hands it over (`SnapshotData`): the
/// file, and its name, so that a received snapshot can be found and removed once installed.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    fn from_std(file: File, path: PathBuf) -> SnapshotFile {
        SnapshotFile { file: tokio::fs::File::from_std(file), path }
    }

    /// A new empty file at `path`, to receive a snapshot into.
    pub(crate) async fn create(path: PathBuf) -> Result<SnapshotFile, StorageError> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| StorageError::io(&path, e))?;
        Ok(SnapshotFile { file, path })
    }

    /// The file for blocking reads, once every write handed to it has finished.
    pub(crate) async fn into_std(self) -> (File, PathBuf) {
        (self.file.into_std().await, self.path)
    }

    /// Opens `path` for reading (a file this node just wrote).
    pub(crate) fn reopen(path: PathBuf) -> Result<SnapshotFile, StorageError> {
        let file = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
        Ok(SnapshotFile::from_std(file, path))
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}
