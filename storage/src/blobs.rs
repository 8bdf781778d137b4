//! sled 0.34 writes an item bigger than a quarter of a segment (about 512 KiB in a data dir
//! created now, 128 KiB in older ones: `recovery::NEW_SEGMENT_SIZE`; a large Raft entry, a
//! big tree node) to a file of its own under `blobs/`, and never fsyncs that file
//! or the directory: its `flush` makes only the main log durable, which then points at a
//! blob that a power cut could take away. So every log flush here also fsyncs the blob
//! files it has not yet synced at their current size, and the directory when any were,
//! before the flushed entries are reported durable. When nothing changed (the directory's
//! mtime is the one seen at the last listing and over a second old, and every known file
//! has its synced size) no file is opened: a node at its open-files limit keeps committing.
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::StorageError;

pub(crate) struct BlobSync {
    dir: PathBuf,
    /// Blob file name → the size it had when it was last fsynced. A file that was still
    /// being written then (a later write's) has grown since and is synced again.
    synced: HashMap<String, u64>,
    /// The directory's mtime when it was last listed.
    listed: Option<SystemTime>,
}

/// A directory mtime this recent may hide a later change in the same clock tick.
const SETTLED: Duration = Duration::from_secs(1);

impl BlobSync {
    pub(crate) fn new(dir: PathBuf) -> BlobSync {
        BlobSync { dir, synced: HashMap::new(), listed: None }
    }

    /// Fsyncs every blob file new or grown since the last call, then the directory if any
    /// was; forgets files sled has removed. Returns how many files were synced.
    pub(crate) fn sync_new(&mut self) -> Result<usize, StorageError> {
        self.sync_new_io().map_err(|source| StorageError::Io { path: self.dir.clone(), source })
    }

    fn sync_new_io(&mut self) -> io::Result<usize> {
        let mtime = match std::fs::metadata(&self.dir) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let settled = SystemTime::now().duration_since(mtime).is_ok_and(|age| age > SETTLED);
        if settled && self.listed == Some(mtime) && self.known_unchanged() {
            return Ok(0);
        }
        let entries = std::fs::read_dir(&self.dir)?;
        let mut seen = HashMap::with_capacity(self.synced.len());
        let mut n = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let len = match entry.metadata() {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => continue,
                // Removed by sled between the listing and now: nothing to make durable.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if self.synced.get(&name) != Some(&len) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                n += 1;
            }
            seen.insert(name, len);
        }
        if n > 0 {
            File::open(&self.dir)?.sync_all()?;
        }
        self.synced = seen;
        self.listed = Some(mtime);
        Ok(n)
    }

    /// Every file synced last time is still there at the size it was synced at (by stat:
    /// no file is opened).
    fn known_unchanged(&self) -> bool {
        self.synced
            .iter()
            .all(|(name, len)| std::fs::metadata(self.dir.join(name)).is_ok_and(|m| m.len() == *len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn new_and_grown_files_are_synced_once_and_removed_ones_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let mut sync = BlobSync::new(blobs.clone());
        assert_eq!(sync.sync_new().unwrap(), 0, "no directory yet");
        std::fs::create_dir(&blobs).unwrap();
        std::fs::write(blobs.join("100"), b"abc").unwrap();
        let mut growing = File::create(blobs.join("200")).unwrap();
        growing.write_all(b"x").unwrap();
        assert_eq!(sync.sync_new().unwrap(), 2);
        assert_eq!(sync.sync_new().unwrap(), 0, "nothing new");
        growing.write_all(b"yz").unwrap();
        assert_eq!(sync.sync_new().unwrap(), 1, "the file that grew");
        std::fs::remove_file(blobs.join("100")).unwrap();
        assert_eq!(sync.sync_new().unwrap(), 0);
        assert_eq!(sync.synced.len(), 1);
    }

    #[test]
    fn sled_puts_big_values_in_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        db.insert(b"big", vec![7u8; 300 << 10]).unwrap();
        db.flush().unwrap();
        let mut sync = BlobSync::new(dir.path().join("blobs"));
        assert!(sync.sync_new().unwrap() >= 1, "a 300 KiB value should live in a blob file");
    }
}
