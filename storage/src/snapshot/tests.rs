//! Snapshot tests: the build's view is the state when it started while apply keeps
//! writing; the file format round-trips and refuses damage; a snapshot built beside apply
//! installs on another store as exactly that state, and survives a restart.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};

use super::format::{Reader, Writer, CHUNK_BYTES};
use super::Recording;
use crate::tables::{Kv, RawPairs, Txn};
use crate::tests::{wait_closed, Put, Rng, T};
use crate::StorageError;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn state_of(tree: &sled::Tree) -> State {
    tree.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<Result<_, _>>().unwrap()
}

fn key(n: u64) -> Vec<u8> {
    format!("k{n:06}").into_bytes()
}

/// One apply batch of random writes and deletes over keys 0..2*keys (so some are new).
fn random_batch(tree: &sled::Tree, recording: &Recording, rng: &mut Rng, keys: u64) {
    let mut txn = Txn::new(tree, recording.current());
    for _ in 0..(1 + rng.next() % 8) {
        let k = key(rng.next() % (2 * keys));
        if rng.next().is_multiple_of(3) {
            txn.delete(k);
        } else {
            let len = 1 + (rng.next() % 40) as usize;
            txn.put_raw(k, rng.bytes(len));
        }
    }
    txn.commit().unwrap();
}

/// Scans while another thread applies random batches; the scan must be the state at the
/// start, every key once.
#[test]
fn scan_is_the_state_when_recording_started_while_apply_writes() {
    const KEYS: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("sm").unwrap();
    let mut rng = Rng(0x5EED);
    for round in 0..3u64 {
        for _ in 0..2_000 {
            random_batch(&tree, &Recording::default(), &mut rng, KEYS);
        }
        for n in (round..KEYS).step_by(3) {
            tree.insert(key(n), rng.bytes(20)).unwrap();
        }
        let recording = Recording::default();
        let recorder = recording.start();
        let start = state_of(&tree);
        let scanning = Arc::new(AtomicBool::new(true));
        let during = Arc::new(AtomicU64::new(0));
        let writer = {
            let (tree, recording, scanning, during) =
                (tree.clone(), recording.clone(), scanning.clone(), during.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0xA11CE + round);
                while scanning.load(Ordering::Acquire) {
                    random_batch(&tree, &recording, &mut rng, KEYS);
                    during.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Let the writer run ahead of the scan for a while (deletes before it gets there).
        while during.load(Ordering::Relaxed) < 200 {
            std::thread::yield_now();
        }
        let mut scanned = State::new();
        let mut emitted = 0usize;
        recorder
            .scan(&tree, |k, v| {
                emitted += 1;
                scanned.insert(k.to_vec(), v.to_vec());
                Ok(())
            })
            .unwrap();
        scanning.store(false, Ordering::Release);
        writer.join().unwrap();
        drop(recorder);
        assert!(recording.current().is_none(), "recording stops with the build");
        let during = during.load(Ordering::Relaxed);
        assert!(during > 200, "apply kept writing during the scan ({during} batches)");
        assert_eq!(emitted, scanned.len(), "round {round}: a key was emitted twice");
        assert_eq!(scanned.len(), start.len(), "round {round}: as many pairs as at the start");
        assert!(scanned == start, "round {round}: the scan is the state at the start");
        assert!(state_of(&tree) != start, "round {round}: the tree moved on meanwhile");
        eprintln!("round {round}: {} pairs scanned while {during} batches applied", start.len());
    }
}

/// Writes before the scan started cover every case the end of the scan handles: a key
/// deleted, one changed, one created, one created then deleted.
#[test]
fn keys_changed_before_the_scan_reaches_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("sm").unwrap();
    for k in ["a", "b", "c", "d"] {
        tree.insert(k, k).unwrap();
    }
    let start = state_of(&tree);
    let recording = Recording::default();
    let recorder = recording.start();
    let mut txn = Txn::new(&tree, recording.current());
    txn.delete(b"b".to_vec());
    txn.put_raw(b"c".to_vec(), b"C".to_vec());
    txn.put_raw(b"bb".to_vec(), b"new".to_vec());
    txn.put_raw(b"e".to_vec(), b"new".to_vec());
    txn.commit().unwrap();
    let mut txn = Txn::new(&tree, recording.current());
    txn.delete(b"e".to_vec());
    txn.delete(b"d".to_vec());
    txn.commit().unwrap();
    let mut scanned = Vec::new();
    recorder
        .scan(&tree, |k, v| {
            scanned.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
    scanned.sort();
    assert_eq!(scanned, start.into_iter().collect::<Vec<_>>());
}

fn write_file(pairs: &RawPairs, meta: &[u8]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), meta).unwrap();
    for (k, v) in pairs {
        w.pair(k, v).unwrap();
    }
    w.finish().unwrap()
}

fn read_file(bytes: &[u8]) -> Result<(Vec<u8>, RawPairs), StorageError> {
    let (mut reader, meta) = Reader::open(bytes, Path::new("x.snap"))?;
    let mut pairs = Vec::new();
    while let Some(chunk) = reader.next_chunk()? {
        pairs.extend(chunk);
    }
    Ok((meta, pairs))
}

fn sample_pairs() -> RawPairs {
    let mut rng = Rng(7);
    // About three chunks, a value larger than a chunk, an empty key and value.
    let mut pairs: RawPairs = (0..3_000u64).map(|n| (key(n), rng.bytes(1_000))).collect();
    pairs.push((b"big".to_vec(), rng.bytes(CHUNK_BYTES + 10)));
    pairs.push((Vec::new(), Vec::new()));
    pairs
}

#[test]
fn file_round_trip() {
    let pairs = sample_pairs();
    let bytes = write_file(&pairs, b"meta!");
    let (meta, read) = read_file(&bytes).unwrap();
    assert_eq!(meta, b"meta!");
    assert_eq!(read, pairs);
    let (_, empty) = read_file(&write_file(&RawPairs::new(), b"")).unwrap();
    assert!(empty.is_empty());
}

/// Any flipped byte, a short file or bytes after the end: `Damaged`, never pairs.
#[test]
fn damaged_files_are_refused() {
    let bytes = write_file(&sample_pairs(), b"meta!");
    let damaged = |bytes: &[u8], what: &str| match read_file(bytes) {
        Err(StorageError::Damaged { path, what: why }) => {
            assert_eq!(path, Path::new("x.snap"));
            assert!(why.starts_with("snapshot: "), "{what}: {why}");
        }
        other => panic!("{what}: accepted: {:?}", other.map(|(m, p)| (m, p.len()))),
    };
    let mut rng = Rng(11);
    let mut positions: Vec<usize> = (0..40).map(|_| (rng.next() % bytes.len() as u64) as usize).collect();
    positions.extend([0, 9, 14, 20, bytes.len() - 1, bytes.len() - 5, bytes.len() - 13, bytes.len() - 24]);
    for at in positions {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x40;
        damaged(&flipped, &format!("byte {at} flipped"));
    }
    for len in [0, 5, 12, 100, bytes.len() / 2, bytes.len() - 1] {
        damaged(&bytes[..len], &format!("cut to {len} bytes"));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    damaged(&longer, "a byte after the end");
}

fn put(index: u64, key: Vec<u8>, value: Vec<u8>) -> Entry<T> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Put { key, value }),
    }
}

/// `count` entries from `first`, writing keys 0..keys (so most overwrite).
fn entries(first: u64, count: u64, keys: u64, rng: &mut Rng) -> Vec<Entry<T>> {
    (first..first + count).map(|i| put(i, key(rng.next() % keys), rng.bytes(100))).collect()
}

fn view_state(sm: &crate::StateMachine<T>) -> State {
    let view = sm.view();
    view.range_raw(b"", &[0xff; 8], usize::MAX).unwrap().into_iter().collect()
}

/// A snapshot built while apply goes on is the state at the builder's `last_applied`; it
/// installs on another store as exactly that state, is that store's current snapshot, and
/// both survive a restart; a damaged snapshot file is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_beside_apply_installed_elsewhere_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut rng = Rng(3);
    let (_a_log, mut a) = crate::open::<T>(&a_dir, Default::default()).await.unwrap();
    let nodes = BTreeMap::from([(1, BasicNode::new("a:1"))]);
    let membership = Membership::new(vec![BTreeSet::from([1])], nodes);
    let first = LogId::new(CommittedLeaderId::new(1, 1), 1);
    a.apply([Entry { log_id: first, payload: EntryPayload::Membership(membership) }]).await.unwrap();
    a.apply(entries(2, 19_999, 5_000, &mut rng)).await.unwrap();
    let at_build = view_state(&a);
    let mut builder = a.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    let mut next = 20_001;
    while !build.is_finished() {
        a.apply(entries(next, 50, 10_000, &mut rng)).await.unwrap();
        next += 50;
        tokio::task::yield_now().await;
    }
    let built = build.await.unwrap().unwrap();
    eprintln!("built a snapshot of {} pairs while {} entries were applied", at_build.len(), next - 20_001);
    assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(20_000));
    assert!(view_state(&a) != at_build, "apply went on during the build");

    let (_b_log, mut b) = crate::open::<T>(&b_dir, Default::default()).await.unwrap();
    b.apply(entries(1, 10, 10, &mut rng)).await.unwrap();
    let sent = a.get_current_snapshot().await.unwrap().expect("a's snapshot");
    assert_eq!(sent.meta, built.meta);
    let mut receiving = b.begin_receiving_snapshot().await.unwrap();
    let mut source = sent.snapshot;
    tokio::io::copy(&mut source, &mut receiving).await.unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut receiving).await.unwrap();
    b.install_snapshot(&sent.meta, receiving).await.unwrap();
    assert!(view_state(&b) == at_build, "b holds the state at the snapshot");
    assert_eq!(b.applied_state().await.unwrap().0.map(|l| l.index), Some(20_000));
    assert_eq!(b.get_current_snapshot().await.unwrap().expect("b's snapshot").meta, sent.meta);
    let left: Vec<_> =
        std::fs::read_dir(b_dir.join("snapshots")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["current.snap"], "nothing left but the current snapshot");

    drop((_b_log, b));
    wait_closed(&b_dir);
    let (_b_log, mut b) = crate::open::<T>(&b_dir, Default::default()).await.unwrap();
    assert!(view_state(&b) == at_build, "b's state after a restart");
    assert_eq!(b.get_current_snapshot().await.unwrap().expect("kept").meta, sent.meta);
    drop((_b_log, b));
    wait_closed(&b_dir);

    let file = b_dir.join("snapshots").join("current.snap");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    match crate::open::<T>(&b_dir, Default::default()).await {
        Err(StorageError::Damaged { path, what }) => {
            assert_eq!(path, file);
            eprintln!("refused: {what}");
        }
        Err(other) => panic!("expected Damaged, got {other}"),
        Ok(_) => panic!("a damaged snapshot file was accepted"),
    }
}
