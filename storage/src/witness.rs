//! The durability witness: a small file beside the sled dir that records the highest Raft
//! state sled has durably (last flushed log id, vote, last purged log id). sled's recovery
//! treats a damaged message in its log tail as the end of the log, i.e. silently rolls back;
//! comparing sled with the witness at start-up catches that, since a Raft node that forgets
//! entries it acknowledged or a vote it cast breaks Raft safety.
//!
//! Format: two fixed-size slots, written alternately (pwrite + fdatasync), each holding a
//! counter, the record and a crc32. A crash in the middle of writing one slot leaves the
//! other valid; the valid slot with the higher counter is the witness.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use goim_types::serial;
use openraft::{LogId, Vote};
use serde::{Deserialize, Serialize};

use crate::StorageError;

const MAGIC: &[u8; 8] = b"goimwit1";
pub(crate) const SLOT: usize = 256;
/// magic, counter, payload length; the crc takes the last 4 bytes.
const HEADER: usize = 8 + 8 + 2;
const MAX_PAYLOAD: usize = SLOT - HEADER - 4;

/// What sled holds durably, at least.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub last: Option<LogId<u64>>,
    pub purged: Option<LogId<u64>>,
    pub vote: Option<Vote<u64>>,
}

pub(crate) struct Witness {
    path: PathBuf,
    file: File,
    /// Counter of the newest valid slot.
    counter: u64,
}

impl Witness {
    /// Opens the witness at `path`: `Ok(None)` if there is none, `Damaged` if the file
    /// exists but neither slot is valid.
    pub(crate) fn load(path: &Path) -> Result<Option<(Witness, Record)>, StorageError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        let len = file.metadata().map_err(|e| StorageError::io(path, e))?.len();
        if len != 2 * SLOT as u64 {
            return Err(StorageError::damaged(
                path,
                format!("durability witness has {len} bytes, expected {}", 2 * SLOT),
            ));
        }
        let mut buf = [0u8; 2 * SLOT];
        file.read_exact_at(&mut buf, 0).map_err(|e| StorageError::io(path, e))?;
        let newest = buf.chunks_exact(SLOT).filter_map(parse_slot).max_by_key(|(counter, _)| *counter);
        match newest {
            Some((counter, record)) => {
                Ok(Some((Witness { path: path.to_path_buf(), file, counter }, record)))
            }
            None => Err(StorageError::damaged(path, "durability witness: both slots fail their checksum")),
        }
    }

    /// Creates the witness holding `record` (atomically: a temp file renamed into place).
    pub(crate) fn create(path: &Path, record: &Record) -> Result<Witness, StorageError> {
        let io = |e| StorageError::io(path, e);
        let tmp = path.with_extension("tmp");
        let mut buf = vec![0u8; 2 * SLOT];
        buf[..SLOT].copy_from_slice(&encode_slot(0, record)?);
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&buf).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        Ok(Witness { path: path.to_path_buf(), file, counter: 0 })
    }

    /// Durably replaces the record: writes the slot not holding the newest one, then syncs.
    pub(crate) fn write(&mut self, record: &Record) -> Result<(), StorageError> {
        let counter = self.counter + 1;
        let slot = encode_slot(counter, record)?;
        let offset = (counter % 2) * SLOT as u64;
        let io = |e| StorageError::io(&self.path, e);
        self.file.write_all_at(&slot, offset).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.counter = counter;
        Ok(())
    }
}

fn encode_slot(counter: u64, record: &Record) -> Result<[u8; SLOT], StorageError> {
    let payload = serial::encode(record)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(StorageError::Corrupt(format!("witness record of {} bytes", payload.len())));
    }
    let mut slot = [0u8; SLOT];
    slot[..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&counter.to_le_bytes());
    slot[16..18].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    slot[HEADER..HEADER + payload.len()].copy_from_slice(&payload);
    let crc = crc32fast::hash(&slot[..SLOT - 4]);
    slot[SLOT - 4..].copy_from_slice(&crc.to_le_bytes());
    Ok(slot)
}

/// The slot's counter and record, if it is intact.
fn parse_slot(slot: &[u8]) -> Option<(u64, Record)> {
    let crc = u32::from_le_bytes(slot.get(SLOT - 4..SLOT)?.try_into().ok()?);
    if &slot[..8] != MAGIC || crc32fast::hash(&slot[..SLOT - 4]) != crc {
        return None;
    }
    let counter = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let len = u16::from_le_bytes(slot[16..18].try_into().ok()?) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    Some((counter, serial::decode(&slot[HEADER..HEADER + len]).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn record(i: u64) -> Record {
        Record {
            last: Some(LogId::new(CommittedLeaderId::new(2, 1), i)),
            purged: Some(LogId::new(CommittedLeaderId::new(1, 1), i / 2)),
            vote: Some(Vote::new_committed(2, 1)),
        }
    }

    #[test]
    fn newest_slot_wins_and_survives_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-witness");
        assert!(Witness::load(&path).unwrap().is_none());
        let mut w = Witness::create(&path, &record(1)).unwrap();
        for i in 2..=5 {
            w.write(&record(i)).unwrap();
        }
        drop(w);
        let (_, r) = Witness::load(&path).unwrap().unwrap();
        assert_eq!(r, record(5));

        // Record 5 went in with counter 4, into slot 0. A crash while writing the next one
        // (counter 5, slot 1) half-way: slot 0 still holds the last complete record.
        let next = encode_slot(5, &record(6)).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&next[..SLOT / 2], SLOT as u64).unwrap();
        drop(f);
        let (_, r) = Witness::load(&path).unwrap().unwrap();
        assert_eq!(r, record(5), "the other slot still holds the last complete record");

        // The newest slot damaged instead (slot 1 intact again, with counter 3): the record
        // before it, claiming less, is used.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&encode_slot(3, &record(4)).unwrap(), SLOT as u64).unwrap();
        f.write_all_at(&[0xAA; 8], 30).unwrap();
        drop(f);
        let (_, r) = Witness::load(&path).unwrap().unwrap();
        assert_eq!(r, record(4));

        // Both slots bad: damaged, naming the file.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xAA; 8], SLOT as u64 + 30).unwrap();
        drop(f);
        match Witness::load(&path) {
            Err(StorageError::Damaged { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected Damaged, got {:?}", other.map(|o| o.map(|(_, r)| r))),
        }
    }

    #[test]
    fn short_file_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-witness");
        Witness::create(&path, &record(1)).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(100).unwrap();
        assert!(matches!(Witness::load(&path), Err(StorageError::Damaged { .. })));
    }
}
