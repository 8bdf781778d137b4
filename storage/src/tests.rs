//! Damage tests on real sled files: flipped bytes, torn and truncated files, a sled dir
//! rolled back behind the durability witness, a torn witness slot, log entries whose crc
//! does not match. Opening damaged files must either give back exactly what was written or
//! fail with `Damaged`: never different data, never a panic.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use serde::{Deserialize, Serialize};

use crate::recovery::{open_checked, Paths};
use crate::tables::Txn;
use crate::{Command, StorageError};

openraft::declare_raft_types!(
    pub T:
        D = Put,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<T>,
        SnapshotData = crate::SnapshotFile,
);

/// A test command: one key/value into the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

impl Command for Put {
    type Reply = ();

    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), StorageError> {
        txn.put_raw(self.key.clone(), self.value.clone());
        Ok(())
    }
}

type Dump = BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>;

/// Every key and value of every tree.
fn dump(db: &sled::Db) -> Result<Dump, sled::Error> {
    let mut out = Dump::new();
    for name in db.tree_names() {
        for kv in db.open_tree(&name)?.iter() {
            let (k, v) = kv?;
            out.insert((name.to_vec(), k.to_vec()), v.to_vec());
        }
    }
    Ok(out)
}

/// Deterministic pseudo-random numbers (xorshift64*).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub(crate) fn entry(index: u64, term: u64, value: Vec<u8>) -> Entry<T> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Put { key: format!("k{index:08}").into_bytes(), value }),
    }
}

/// Waits until nothing holds sled's lock on `dir` (the flusher task ends after its store).
pub(crate) fn wait_closed(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let paths = Paths::new(dir);
        let segment_size = crate::recovery::check_sled_files(&paths).expect("sled's files");
        match sled::Config::new().path(paths.sled_dir).segment_size(segment_size).open() {
            Ok(db) => return drop(db),
            Err(e) => assert!(Instant::now() < deadline, "sled still locked: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `entries` log entries (from `first`, term `term`) of `value_len` random bytes
/// each, applies them, then bumps the vote to `final_vote` (so the last durable write is the
/// witnessed vote) and closes. Returns every record as written.
async fn write(dir: &Path, first: u64, entries: u64, term: u64, value_len: usize, final_vote: u64) -> Dump {
    let (mut log, mut sm) = crate::open::<T>(dir, Default::default()).await.expect("open");
    log.save_vote(&Vote::new_committed(term, 1)).await.expect("vote");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ first);
    let mut next = first;
    while next < first + entries {
        let end = (next + 500).min(first + entries);
        let batch: Vec<Entry<T>> = (next..end).map(|i| entry(i, term, rng.bytes(value_len))).collect();
        log.append_durably(batch.clone()).await.expect("append");
        sm.apply(batch).await.expect("apply");
        next = end;
    }
    log.save_vote(&Vote::new_committed(final_vote, 1)).await.expect("final vote");
    let written = dump(log.db()).expect("dump");
    drop((log, sm));
    wait_closed(dir);
    written
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

enum Outcome {
    Intact,
    Damaged(PathBuf, String),
}

/// Opens `dir` as the node would; panics (failing the test) on anything but identical data
/// or `Damaged`.
fn reopen(dir: &Path, written: &Dump) -> Outcome {
    match open_checked::<T>(dir, Default::default()) {
        Ok((db, _, _)) => {
            let now = dump(&db).expect("a verified db reads back");
            // Records beyond what was written (the witness's bookkeeping aside) may not
            // appear, and every written record must read back identical.
            for (k, v) in written {
                match now.get(k) {
                    Some(got) => assert_eq!(got, v, "open succeeded but served different data for {k:?}"),
                    None => panic!("open succeeded but lost {k:?}"),
                }
            }
            assert_eq!(now.len(), written.len(), "open succeeded with records never written");
            Outcome::Intact
        }
        Err(StorageError::Damaged { path, what }) => Outcome::Damaged(path, what),
        Err(other) => panic!("expected Damaged or intact data, got {other}"),
    }
}

/// About 8 MB of data: several sled segments (2 MiB each in a new data dir).
const ENTRIES: u64 = 2_000;
const VALUE: usize = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_are_refused_or_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let written = write(&pristine, 1, ENTRIES, 1, VALUE, 2).await;
    assert!(matches!(reopen(&pristine, &written), Outcome::Intact));
    let log_len = std::fs::metadata(Paths::new(&pristine).sled_log).unwrap().len();
    eprintln!("sled log file: {log_len} bytes");

    let mut damaged = 0;
    for seed in 1..=24u64 {
        let copy = tmp.path().join(format!("flip{seed}"));
        copy_dir(&pristine, &copy);
        let file = Paths::new(&copy).sled_log;
        let mut bytes = std::fs::read(&file).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0xA24B_AED4_963E_E407));
        // Odd seeds: one flipped byte; even seeds: a burst of 16.
        let at = (rng.next() % bytes.len() as u64) as usize;
        let n = if seed % 2 == 1 { 1 } else { 16 };
        for b in bytes.iter_mut().skip(at).take(n) {
            *b ^= (rng.next() as u8) | 1;
        }
        std::fs::write(&file, &bytes).unwrap();
        match reopen(&copy, &written) {
            Outcome::Intact => eprintln!("seed {seed}: flip at {at} (+{n}) harmless"),
            Outcome::Damaged(path, what) => {
                eprintln!("seed {seed}: flip at {at} (+{n}): {}: {what}", path.display());
                assert!(path.starts_with(&copy), "names a file of the damaged dir: {}", path.display());
                damaged += 1;
            }
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    assert!(damaged > 0, "no flip landed in live data: the test proves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_log_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let written = write(&pristine, 1, ENTRIES, 1, VALUE, 2).await;
    let len = std::fs::metadata(Paths::new(&pristine).sled_log).unwrap().len();
    assert!(len > 2 << 20, "enough data for big truncations: {len}");
    for cut in [1u64, 4 << 10, 64 << 10, 512 << 10, 600 << 10, 1 << 20, len / 2, len - 1, len] {
        let copy = tmp.path().join(format!("cut{cut}"));
        copy_dir(&pristine, &copy);
        let file = std::fs::OpenOptions::new().write(true).open(Paths::new(&copy).sled_log).unwrap();
        file.set_len(len - cut).unwrap();
        drop(file);
        match reopen(&copy, &written) {
            Outcome::Intact => {
                // A cut may remove only unused or recycled segments (then the data is
                // identical, checked above); half the file or more cannot be spared.
                assert!(cut < len / 2, "cutting {cut} of {len} bytes cannot leave the data intact");
                eprintln!("cut {cut}: harmless (unused tail)");
            }
            Outcome::Damaged(path, what) => eprintln!("cut {cut}: {}: {what}", path.display()),
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_behind_the_witness_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write(&dir, 1, 100, 1, 100, 1).await;
    let old = tmp.path().join("old-db");
    copy_dir(&Paths::new(&dir).sled_dir, &old);
    let written = write(&dir, 101, 100, 1, 100, 1).await;
    assert!(matches!(reopen(&dir, &written), Outcome::Intact));

    // An older sled dir with the newer witness: entries 101..=200 were acknowledged.
    std::fs::remove_dir_all(Paths::new(&dir).sled_dir).unwrap();
    copy_dir(&old, &Paths::new(&dir).sled_dir);
    match reopen(&dir, &written) {
        Outcome::Damaged(path, what) => {
            assert_eq!(path, Paths::new(&dir).sled_log);
            assert!(what.contains("rolled back") && what.contains("index 200"), "{what}");
        }
        Outcome::Intact => panic!("a rolled-back db was accepted"),
    }

    // A vote rolled back: same log, older vote.
    let dir2 = tmp.path().join("node2");
    write(&dir2, 1, 10, 1, 100, 1).await;
    let old2 = tmp.path().join("old-db2");
    copy_dir(&Paths::new(&dir2).sled_dir, &old2);
    let (mut log, sm) = crate::open::<T>(&dir2, Default::default()).await.unwrap();
    log.save_vote(&Vote::new(5, 2)).await.unwrap();
    drop((log, sm));
    wait_closed(&dir2);
    std::fs::remove_dir_all(Paths::new(&dir2).sled_dir).unwrap();
    copy_dir(&old2, &Paths::new(&dir2).sled_dir);
    match open_checked::<T>(&dir2, Default::default()) {
        Err(StorageError::Damaged { what, .. }) => assert!(what.contains("vote"), "{what}"),
        other => panic!("expected a vote rollback, got {:?}", other.map(|_| ())),
    }

    // The db gone altogether while the witness remains.
    std::fs::remove_dir_all(Paths::new(&dir2).sled_dir).unwrap();
    match open_checked::<T>(&dir2, Default::default()) {
        Err(StorageError::Damaged { path, .. }) => assert_eq!(path, Paths::new(&dir2).sled_log),
        other => panic!("expected Damaged for a missing db, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_torn_or_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let written = write(&dir, 1, 50, 1, 100, 2).await;
    let witness = Paths::new(&dir).witness;

    // A crash in the middle of a slot write: the other slot (claiming less) still opens.
    let mut bytes = std::fs::read(&witness).unwrap();
    let slot = crate::witness::SLOT;
    let newest =
        (0..2).max_by_key(|i| u64::from_le_bytes(bytes[i * slot + 8..i * slot + 16].try_into().unwrap()));
    let start = newest.unwrap() * slot;
    for b in &mut bytes[start + 20..start + slot / 2] {
        *b = 0x5A;
    }
    std::fs::write(&witness, &bytes).unwrap();
    assert!(matches!(reopen(&dir, &written), Outcome::Intact));

    // Both slots destroyed: damaged, naming the witness.
    let mut bytes = std::fs::read(&witness).unwrap();
    for b in &mut bytes[10..2 * slot - 10] {
        *b ^= 0xFF;
    }
    std::fs::write(&witness, &bytes).unwrap();
    match reopen(&dir, &written) {
        Outcome::Damaged(path, _) => assert_eq!(path, witness),
        Outcome::Intact => panic!("a destroyed witness was accepted"),
    }

    // No witness at all (a data dir from before it existed): accepted, and one is written.
    // Opening warns about it: the db holds Raft state.
    std::fs::remove_file(&witness).unwrap();
    assert!(matches!(reopen(&dir, &written), Outcome::Intact));
    assert!(witness.exists());
    assert!(matches!(reopen(&dir, &written), Outcome::Intact));
    assert!(found_in(&dir).holds_raft_state());
}

/// A new data dir gets its witness without the warning meant for data dirs of an older
/// version: it holds no Raft state to witness (the log format's key is all there is).
#[test]
fn a_new_data_dir_holds_no_raft_state_to_witness() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    drop(open_checked::<T>(&dir, Default::default()).expect("a new data dir opens"));
    wait_closed(&dir);
    assert!(Paths::new(&dir).witness.exists());
    let found = found_in(&dir);
    assert_eq!(found.records, 1, "{found:?}");
    assert!(!found.holds_raft_state(), "{found:?}");
}

/// What opening finds in the data dir under `dir`.
fn found_in(dir: &Path) -> crate::recovery::Found {
    wait_closed(dir);
    let paths = Paths::new(dir);
    let segment_size = crate::recovery::check_sled_files(&paths).expect("sled's files");
    let db = sled::Config::new().path(&paths.sled_dir).segment_size(segment_size).open().expect("sled opens");
    let found = crate::recovery::verify::<T>(&db, &paths).expect("verifies");
    drop(db);
    wait_closed(dir);
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_entry_crc_mismatch_is_an_error_never_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write(&dir, 1, 20, 1, 100, 1).await;
    let (mut log, sm) = crate::open::<T>(&dir, Default::default()).await.unwrap();
    let tree = log.db().open_tree("log").unwrap();
    for index in [7u64, 20] {
        let key = index.to_be_bytes();
        let mut v = tree.get(key).unwrap().unwrap().to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0x01;
        tree.insert(key, v).unwrap();
    }
    drop(tree);
    let err = log.try_get_log_entries(5..10).await.expect_err("entry 7 is damaged");
    assert!(err.to_string().contains("log entry 7: checksum mismatch"), "{err}");
    assert_eq!(log.try_get_log_entries(1..7).await.unwrap().len(), 6, "undamaged entries still read");
    assert!(log.get_log_state().await.is_err(), "the last entry (20) is damaged");
    log.db().flush().unwrap();
    drop((log, sm));
    wait_closed(&dir);
    match open_checked::<T>(&dir, Default::default()) {
        Err(StorageError::Damaged { path, what }) => {
            assert_eq!(path, Paths::new(&dir).sled_log);
            assert!(what.contains("tree log, key 7: log entry 7: checksum mismatch"), "{what}");
        }
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
}

/// A state tree left by a crash mid-install is not the state: start-up neither reads nor
/// judges it (here its `meta/applied` would not decode), and drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_state_tree_is_skipped_and_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write(&dir, 1, 20, 1, 100, 1).await;
    let (log, sm) = crate::open::<T>(&dir, Default::default()).await.unwrap();
    let stale = log.db().open_tree("sm.9").unwrap();
    stale.insert(crate::state_machine::APPLIED, &b"not a log id"[..]).unwrap();
    log.db().flush().unwrap();
    drop((stale, log, sm));
    wait_closed(&dir);
    let (log, sm) = crate::open::<T>(&dir, Default::default()).await.expect("opens");
    assert!(!log.db().tree_names().iter().any(|n| n.as_ref() == b"sm.9"), "dropped");
    assert!(sm.view().last_applied().unwrap().is_some(), "the current state is served");
}

/// A purge returns before its entries are removed (they go in the background). Entries it
/// left are never read nor taken for the log's end; start-up sees no hole in the log even
/// when it went on past a gap (as after a snapshot install), and opening removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_purge_left_are_never_read_and_go_when_the_log_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let (mut log, sm) = crate::open::<T>(&dir, Default::default()).await.unwrap();
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    log.append_durably((1..=10).map(|i| entry(i, 1, vec![i as u8])).collect()).await.unwrap();
    let purged = LogId::new(CommittedLeaderId::new(1, 1), 20);
    log.record_purge(purged).await.unwrap();
    assert!(log.try_get_log_entries(0..100).await.unwrap().is_empty());
    let state = log.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(purged), Some(purged)));
    log.append_durably((21..=25).map(|i| entry(i, 1, vec![i as u8])).collect()).await.unwrap();
    let read: Vec<u64> = log.try_get_log_entries(5..).await.unwrap().iter().map(|e| e.log_id.index).collect();
    assert_eq!(read, vec![21, 22, 23, 24, 25]);
    let stored = |log: &crate::LogStore<T>| -> Vec<u64> {
        let tree = log.db().open_tree(crate::log_store::LOG_TREE).unwrap();
        tree.iter().keys().map(|k| crate::log_store::log_index(&k.unwrap()).unwrap()).collect()
    };
    assert_eq!(stored(&log).len(), 15, "1..=10 still stored");
    drop((log, sm));
    wait_closed(&dir);

    let (mut log, _sm) = crate::open::<T>(&dir, Default::default()).await.expect("no hole seen");
    assert_eq!(stored(&log), vec![21, 22, 23, 24, 25], "opening removed what the purge left");
    assert_eq!(log.get_log_state().await.unwrap().last_log_id.map(|l| l.index), Some(25));
}

/// With no purge recorded, opening removes nothing: the log may start at index 0 (openraft's
/// first membership entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpurged_log_keeps_its_first_entry_across_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let (log, sm) = crate::open::<T>(&dir, Default::default()).await.unwrap();
    log.append_durably((0..=3).map(|i| entry(i, 1, vec![i as u8])).collect()).await.unwrap();
    drop((log, sm));
    wait_closed(&dir);
    let (mut log, _sm) = crate::open::<T>(&dir, Default::default()).await.unwrap();
    let read: Vec<u64> = log.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id.index).collect();
    assert_eq!(read, vec![0, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_without_crc_are_upgraded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let paths = Paths::new(&dir);
    // A data dir as the previous version wrote it: bare entries, no format key, no witness.
    {
        let db = sled::Config::new().path(&paths.sled_dir).open().unwrap();
        let log = db.open_tree("log").unwrap();
        for i in 1..=5u64 {
            let e = entry(i, 1, vec![i as u8; 10]);
            log.insert(i.to_be_bytes(), goim_types::serial::encode(&e).unwrap()).unwrap();
        }
        db.flush().unwrap();
    }
    let (mut log, sm) = crate::open::<T>(&dir, Default::default()).await.unwrap();
    let entries = log.try_get_log_entries(1..=5).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(paths.witness.exists());
    drop((log, sm));
    wait_closed(&dir);
    let (db, _, _) = open_checked::<T>(&dir, Default::default()).unwrap();
    assert_eq!(db.open_tree("log").unwrap().len(), 5);
}

/// Start-up verification time for 100k log entries and 100k state-machine records (debug
/// builds are slow; this prints the time and bounds it loosely).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_time_for_100k_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write(&dir, 1, 100_000, 1, 100, 2).await;
    let started = Instant::now();
    let (db, _, _) = open_checked::<T>(&dir, Default::default()).unwrap();
    let took = started.elapsed();
    let records: usize = db.tree_names().iter().map(|n| db.open_tree(n).unwrap().len()).sum();
    eprintln!("verified {records} records (100k log entries + 100k state-machine records) in {took:?}");
    assert!(took < Duration::from_secs(60), "verification took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_sled_config_or_snapshot_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let written = write(&pristine, 1, ENTRIES, 1, VALUE, 2).await;
    let snap = std::fs::read_dir(Paths::new(&pristine).sled_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("snap."))
        .expect("sled wrote a snapshot file");
    for (i, name) in ["conf", snap.as_str()].into_iter().enumerate() {
        let copy = tmp.path().join(format!("copy{i}"));
        copy_dir(&pristine, &copy);
        let file = Paths::new(&copy).sled_dir.join(name);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[5] ^= 0x10;
        std::fs::write(&file, &bytes).unwrap();
        match reopen(&copy, &written) {
            Outcome::Damaged(path, what) => {
                eprintln!("{name}: {}: {what}", path.display());
                assert_eq!(path, file);
            }
            Outcome::Intact => panic!("a damaged {name} was accepted"),
        }
    }
    // Without its snapshot file sled rebuilds the state from its log: intact, or refused.
    let copy = tmp.path().join("nosnap");
    copy_dir(&pristine, &copy);
    std::fs::remove_file(Paths::new(&copy).sled_dir.join(&snap)).unwrap();
    if let Outcome::Damaged(path, what) = reopen(&copy, &written) {
        eprintln!("without snapshot: {}: {what}", path.display());
    }
}
