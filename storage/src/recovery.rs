//! Opening the node's storage without trusting the disk. sled may panic while recovering a
//! damaged file, or report damage only when a reader reaches the bad page, or silently treat a
//! damaged tail as the end of its log (a rollback). So opening here: catches sled panics,
//! reads every key and value of every tree once (sled checks its page checksums on the way,
//! we check our own on log entries and decode the Raft state), and compares the Raft state
//! with the durability witness. Any damage is `StorageError::Damaged` naming the file: the
//! node refuses to start rather than serve or replicate wrong data.
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use goim_types::serial;
use openraft::{LogId, StoredMembership, Vote};
use tracing::{info, warn};

use crate::blobs::BlobSync;
use crate::durable::Durability;
use crate::log_store::{
    decode_entry, log_index, with_crc, COMMITTED, FORMAT, FORMAT_CRC, LOG_TREE, META_TREE, PURGED, VOTE,
};
use crate::snapshot::SnapshotDir;
use crate::state_machine::{APPLIED, MEMBERSHIP};
use crate::state_tree::{self, is_state_tree};
use crate::witness::{Record, Witness};
use crate::{GoimTypes, StorageConfig, StorageError};

/// Where the node's files are, under its data dir.
pub(crate) struct Paths {
    /// sled's directory (`conf`, `db`, `snap.*`, `blobs/`).
    pub sled_dir: PathBuf,
    /// sled's log file, where its records live.
    pub sled_log: PathBuf,
    pub witness: PathBuf,
}

impl Paths {
    pub(crate) fn new(data_dir: &Path) -> Paths {
        let sled_dir = data_dir.join("db");
        Paths { sled_log: sled_dir.join("db"), sled_dir, witness: data_dir.join("raft-witness") }
    }
}

/// The Raft state found in sled, and how much there was.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub last_entry: Option<LogId<u64>>,
    pub purged: Option<LogId<u64>>,
    pub vote: Option<Vote<u64>>,
    /// Records in our trees (sled's default tree not counted).
    pub records: u64,
    pub log_entries: u64,
}

impl Found {
    /// As the witness would put it: the last log id is the last entry's, or the purged one.
    pub(crate) fn record(&self) -> Record {
        Record { last: self.last_entry.or(self.purged), purged: self.purged, vote: self.vote }
    }

    /// Whether there is Raft state to witness. A new db holds only the log format's key.
    pub(crate) fn holds_raft_state(&self) -> bool {
        self.record() != Record::default()
    }
}

/// Opens sled under `data_dir`, verifies all of it and checks it against the witness
/// (creating the witness on first start or for a data dir of an older version).
pub(crate) fn open_checked<C: GoimTypes>(
    data_dir: &Path,
    config: StorageConfig,
) -> Result<(sled::Db, Durability, SnapshotDir), StorageError> {
    let started = std::time::Instant::now();
    let paths = Paths::new(data_dir);
    let witness = Witness::load(&paths.witness)?;
    if witness.is_some() && !paths.sled_log.exists() {
        return Err(StorageError::damaged(
            &paths.sled_log,
            format!(
                "missing, but the durability witness {} says this node held Raft state",
                paths.witness.display()
            ),
        ));
    }
    let segment_size = check_sled_files(&paths)?;
    let db = guarded(&paths, "recovering", || open_sled(&paths, config, segment_size))?;
    guarded(&paths, "upgrading the log format", || upgrade_format::<C>(&db, &paths))?;
    let found = guarded(&paths, "verifying", || verify::<C>(&db, &paths))?;
    let snapshots = SnapshotDir::open(data_dir, config.snapshot_bytes_per_s)?;
    let snapshot = snapshots.verify::<C::Node>()?;
    let (witness, written) = match witness {
        Some((witness, written)) => {
            guarded(&paths, "checking the durability witness", || {
                check_witness::<C>(&db, &found, &written, &paths)
            })?;
            (witness, written)
        }
        None => {
            let record = found.record();
            if found.holds_raft_state() {
                warn!(
                    witness = %paths.witness.display(),
                    "no durability witness beside a db holding Raft state (a data dir of an older version): creating it"
                );
            }
            (Witness::create(&paths.witness, &record)?, record)
        }
    };
    info!(
        dir = %paths.sled_dir.display(),
        records = found.records,
        log_entries = found.log_entries,
        snapshot = ?snapshot.and_then(|s| s.last_log_id).map(|l| l.index),
        ms = started.elapsed().as_millis() as u64,
        "storage verified"
    );
    let current = found.record();
    let blobs = BlobSync::new(paths.sled_dir.join("blobs"));
    Ok((db, Durability::new(witness, written, current, blobs), snapshots))
}

/// sled's segment size for a new data dir. An item over a quarter of a segment is not kept
/// in sled's log but written to a blob file of its own, created and fsynced apart
/// (`blobs`): at sled's default 512 KiB that was every full Raft entry (the proposer cuts
/// them at 256 KiB); at 2 MiB they stay inline.
const NEW_SEGMENT_SIZE: usize = 2 << 20;

/// `segment_size: N` from sled's config file (text lines, then a crc32).
fn recorded_segment_size(conf: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(conf.get(..conf.len().checked_sub(4)?)?).into_owned();
    text.lines().find_map(|line| line.strip_prefix("segment_size:")?.trim().parse().ok())
}

/// sled checks the crc of its config file only to log a warning, and reports a damaged
/// snapshot file without naming it: both are checked here first, the same way sled writes
/// them (a crc32 at the end; a snapshot also has its length before the crc). Answers the
/// segment size to open sled with: the one its config records (sled opens a db only with
/// the size it was created with), or `NEW_SEGMENT_SIZE` for a new data dir.
pub(crate) fn check_sled_files(paths: &Paths) -> Result<usize, StorageError> {
    let conf = paths.sled_dir.join("conf");
    let segment_size = match std::fs::read(&conf) {
        Ok(bytes) => {
            if bytes.len() > 8 {
                check_trailing_crc(&conf, "sled's config", &bytes, 4)?;
            }
            recorded_segment_size(&bytes).unwrap_or(NEW_SEGMENT_SIZE)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NEW_SEGMENT_SIZE,
        Err(e) => return Err(StorageError::io(&conf, e)),
    };
    let entries = match std::fs::read_dir(&paths.sled_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(segment_size),
        Err(e) => return Err(StorageError::io(&paths.sled_dir, e)),
    };
    // sled reads the newest snapshot (by name) and ignores those still being written.
    let mut snaps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with("snap.") && !name.ends_with(".in___motion")
        })
        .collect();
    snaps.sort();
    if let Some(snap) = snaps.pop() {
        let bytes = std::fs::read(&snap).map_err(|e| StorageError::io(&snap, e))?;
        if bytes.len() <= 12 {
            return Err(StorageError::damaged(&snap, format!("sled's snapshot: {} bytes", bytes.len())));
        }
        check_trailing_crc(&snap, "sled's snapshot", &bytes, 12)?;
    }
    Ok(segment_size)
}

/// The crc32 in the last 4 bytes covers everything but the last `tail` bytes.
fn check_trailing_crc(path: &Path, what: &str, bytes: &[u8], tail: usize) -> Result<(), StorageError> {
    let n = bytes.len();
    let stored = u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
    if crc32fast::hash(&bytes[..n - tail]) != stored {
        return Err(StorageError::damaged(path, format!("{what}: checksum mismatch")));
    }
    Ok(())
}

fn open_sled(paths: &Paths, config: StorageConfig, segment_size: usize) -> Result<sled::Db, StorageError> {
    sled::Config::new()
        .path(&paths.sled_dir)
        .cache_capacity(config.cache_bytes)
        .segment_size(segment_size)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| sled_error(paths, "cannot recover", e))
}

/// A sled error met while opening or reading: damage, or an operational error (the db is
/// locked by another process, permissions, a full disk) that says nothing about the data.
fn sled_error(paths: &Paths, doing: &str, e: sled::Error) -> StorageError {
    match e {
        sled::Error::Corruption { at, .. } => match at {
            Some(sled::DiskPtr::Blob(_, blob)) => StorageError::damaged(
                &paths.sled_dir.join("blobs").join(blob.to_string()),
                format!("sled {doing}: corrupted blob"),
            ),
            Some(sled::DiskPtr::Inline(offset)) => StorageError::damaged(
                &paths.sled_log,
                format!("sled {doing}: corrupted data at file offset {offset}"),
            ),
            // Its config and snapshot files were checked before: the log is damaged.
            None => StorageError::damaged(&paths.sled_log, format!("sled {doing}: corrupted data")),
        },
        sled::Error::ReportableBug(what) => {
            StorageError::damaged(&paths.sled_log, format!("sled {doing}: inconsistent data: {what}"))
        }
        sled::Error::Unsupported(what) => {
            StorageError::damaged(&paths.sled_dir, format!("sled {doing}: unreadable files: {what}"))
        }
        sled::Error::Io(io)
            if matches!(io.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData) =>
        {
            StorageError::damaged(&paths.sled_log, format!("sled {doing}: {io}"))
        }
        other => StorageError::Sled(other),
    }
}

/// Data dirs written before log entries carried a crc are rewritten once, in place.
/// Entries already carrying one (an upgrade interrupted half-way) are left as they are.
fn upgrade_format<C: GoimTypes>(db: &sled::Db, paths: &Paths) -> Result<(), StorageError> {
    let meta = db.open_tree(META_TREE)?;
    let read = |e| sled_error(paths, "reading the log format", e);
    if let Some(v) = meta.get(FORMAT).map_err(read)? {
        return match serial::decode::<u32>(&v) {
            Ok(FORMAT_CRC) => Ok(()),
            Ok(other) => Err(StorageError::damaged(
                &paths.sled_log,
                format!("log format {other} is unknown (written by a newer goim?)"),
            )),
            Err(e) => Err(StorageError::damaged(&paths.sled_log, format!("tree raft, key log_format: {e}"))),
        };
    }
    let log = db.open_tree(LOG_TREE)?;
    let mut batch = sled::Batch::default();
    let mut upgraded = 0u64;
    for kv in log.iter() {
        let (k, v) = kv.map_err(|e| sled_error(paths, "reading tree log", e))?;
        if decode_entry::<C>(&k, &v).is_ok() {
            continue;
        }
        let index = log_index(&k).map_err(|e| damaged_value(paths, LOG_TREE, &k, e))?;
        let entry: openraft::Entry<C> =
            serial::decode(&v).map_err(|e| damaged_value(paths, LOG_TREE, &k, e))?;
        if entry.log_id.index != index {
            return Err(damaged_value(paths, LOG_TREE, &k, "holds another index's entry"));
        }
        batch.insert(k, with_crc(index, v.to_vec()));
        upgraded += 1;
    }
    log.apply_batch(batch)?;
    meta.insert(FORMAT, serial::encode(&FORMAT_CRC)?)?;
    db.flush()?;
    if upgraded > 0 {
        info!(entries = upgraded, "log entries upgraded to carry checksums");
    }
    Ok(())
}

/// Reads every key and value of every tree; decodes every log entry (checking its crc and
/// that the log has no hole) and the Raft state the node starts from. State trees other
/// than the current one (left by a crash mid-install) are skipped: opening drops them.
pub(crate) fn verify<C: GoimTypes>(db: &sled::Db, paths: &Paths) -> Result<Found, StorageError> {
    let mut found = Found::default();
    let names = db.tree_names();
    let state = state_tree::current_name(db)?;
    if !names.iter().any(|n| **n == *state) && state != state_tree::FIRST.as_bytes() {
        return Err(StorageError::damaged(
            &paths.sled_log,
            format!("the current state tree {} is missing", String::from_utf8_lossy(&state)),
        ));
    }
    // Entries up to the purge are gone as far as Raft knows; a purge removing them in the
    // background may have left some (the log store removes them when it opens). They are
    // decoded (their crc checked) but are no part of the log's contiguity or its end.
    if names.iter().any(|n| **n == *META_TREE.as_bytes()) {
        if let Some(v) = db.open_tree(META_TREE)?.get(PURGED)? {
            found.purged = Some(serial::decode(&v).map_err(|e| damaged_value(paths, META_TREE, PURGED, e))?);
        }
    }
    let purged_index = found.purged.map(|p| p.index);
    for name in names {
        if is_state_tree(&name) && *name != *state {
            continue;
        }
        let tree_name = String::from_utf8_lossy(&name).into_owned();
        let tree = db.open_tree(&name)?;
        let ours = tree_name != "__sled__default";
        for kv in tree.iter() {
            let (k, v) = kv.map_err(|e| sled_error(paths, &format!("reading tree {tree_name}"), e))?;
            let bad = |e: &dyn std::fmt::Display| damaged_value(paths, &tree_name, &k, e);
            if ours {
                found.records += 1;
            }
            match tree_name.as_str() {
                LOG_TREE => {
                    let entry = decode_entry::<C>(&k, &v).map_err(|e| bad(&plain(e)))?;
                    if purged_index.is_some_and(|p| entry.log_id.index <= p) {
                        continue;
                    }
                    if let Some(prev) = found.last_entry {
                        if entry.log_id.index != prev.index + 1 {
                            return Err(bad(&format!("the log has a hole after index {}", prev.index)));
                        }
                    }
                    found.last_entry = Some(entry.log_id);
                    found.log_entries += 1;
                }
                META_TREE => match k.as_ref() {
                    VOTE => found.vote = Some(serial::decode(&v).map_err(|e| bad(&e))?),
                    PURGED => {} // read before the scan, above
                    COMMITTED => {
                        serial::decode::<Option<LogId<u64>>>(&v).map_err(|e| bad(&e))?;
                    }
                    _ => {}
                },
                _ if is_state_tree(&name) => match k.as_ref() {
                    APPLIED => {
                        serial::decode::<Option<LogId<u64>>>(&v).map_err(|e| bad(&e))?;
                    }
                    MEMBERSHIP => {
                        serial::decode::<StoredMembership<u64, C::Node>>(&v).map_err(|e| bad(&e))?;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(found)
}

/// A decoding error's message without the variant's prefix.
fn plain(e: StorageError) -> String {
    match e {
        StorageError::Corrupt(what) => what,
        other => other.to_string(),
    }
}

fn damaged_value(paths: &Paths, tree: &str, key: &[u8], e: impl std::fmt::Display) -> StorageError {
    let key = match (tree, <[u8; 8]>::try_from(key)) {
        (LOG_TREE, Ok(k)) => u64::from_be_bytes(k).to_string(),
        _ => format!("{:?}", String::from_utf8_lossy(key)),
    };
    StorageError::damaged(&paths.sled_log, format!("tree {tree}, key {key}: {e}"))
}

/// sled must hold at least what the witness says it durably held: else it rolled back.
fn check_witness<C: GoimTypes>(
    db: &sled::Db,
    found: &Found,
    witness: &Record,
    paths: &Paths,
) -> Result<(), StorageError> {
    let rolled_back = |what: String| {
        StorageError::damaged(
            &paths.sled_log,
            format!("sled rolled back: {what} (per the durability witness {})", paths.witness.display()),
        )
    };
    if let Some(cast) = witness.vote {
        if !found.vote.is_some_and(|v| v >= cast) {
            return Err(rolled_back(format!("the vote is {} but {cast} was cast", show(found.vote))));
        }
    }
    let purged_index = found.purged.map(|p| p.index);
    if let Some(purged) = witness.purged {
        if purged_index < Some(purged.index) {
            return Err(rolled_back(format!(
                "the log was purged up to {} but up to {} before",
                show_log(found.purged),
                show_log(Some(purged))
            )));
        }
    }
    if let Some(acked) = witness.last {
        if purged_index >= Some(acked.index) {
            return Ok(());
        }
        let key = acked.index.to_be_bytes();
        let stored =
            db.open_tree(LOG_TREE)?.get(key).map_err(|e| sled_error(paths, "reading tree log", e))?;
        let held = match stored {
            Some(v) => {
                let entry = decode_entry::<C>(&key, &v)
                    .map_err(|e| damaged_value(paths, LOG_TREE, &key, plain(e)))?;
                Some(entry.log_id)
            }
            None => None,
        };
        if held != Some(acked) {
            return Err(rolled_back(format!(
                "the log ends at {} but {} was acknowledged",
                show_log(found.last_entry.or(found.purged)),
                show_log(Some(acked))
            )));
        }
    }
    Ok(())
}

fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "nothing".to_string(), |v| v.to_string())
}

fn show_log(l: Option<LogId<u64>>) -> String {
    l.map_or_else(|| "nothing".to_string(), |l| format!("index {} ({})", l.index, l.leader_id))
}

thread_local! {
    /// Set while this thread runs sled recovery: its panics are caught, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` (sled work on possibly damaged files); a panic inside becomes `Damaged`, and its
/// message goes into the error instead of onto stderr. A sled error `f` passed up as it came
/// (by `?`) is told apart here as damage or an operational error, like those mapped inside.
fn guarded<T>(
    paths: &Paths,
    doing: &str,
    f: impl FnOnce() -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                return previous(info);
            }
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            let at = info.location().map(|l| {
                let file: Vec<&str> = l.file().rsplit('/').take(4).collect();
                let file: Vec<&str> = file.into_iter().rev().collect();
                format!(" ({}:{})", file.join("/"), l.line())
            });
            let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
            CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{msg}{}", at.unwrap_or_default())));
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    match result {
        Ok(Err(StorageError::Sled(e))) => Err(sled_error(paths, doing, e)),
        Ok(r) => r,
        Err(_) => {
            let what = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| "panic".into());
            Err(StorageError::damaged(&paths.sled_log, format!("sled panicked while {doing}: {what}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled reports damage found by a reader as an error passed up by `?` anywhere in the
    /// opening steps (seen: opening a tree of a truncated log); it must come out as damage.
    #[test]
    fn a_sled_error_passed_up_is_told_apart_as_damage_or_not() {
        let paths = Paths::new(Path::new("/data/node1"));
        let corrupt = guarded(&paths, "verifying", || -> Result<(), StorageError> {
            Err(sled::Error::Corruption { at: Some(sled::DiskPtr::Inline(42)), bt: () }.into())
        });
        match corrupt {
            Err(StorageError::Damaged { path, what }) => {
                assert_eq!(path, paths.sled_log);
                assert_eq!(what, "sled verifying: corrupted data at file offset 42");
            }
            other => panic!("expected Damaged, got {other:?}"),
        }
        let locked = guarded(&paths, "recovering", || -> Result<(), StorageError> {
            Err(sled::Error::Io(std::io::Error::new(std::io::ErrorKind::WouldBlock, "locked")).into())
        });
        assert!(matches!(locked, Err(StorageError::Sled(sled::Error::Io(_)))), "{locked:?}");
    }
}
