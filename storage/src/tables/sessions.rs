//! Sessions: one per authenticated connection, keyed by the client's key, with a mid index
//! (push to mids); `in_room` lists a small room's members (the web demo's roster).
//!
//! There is no comet index: a comet's sessions are wanted only when the comet expires
//! (rare, and then most of them are written anyway), so `of_comets` reads the table.
//! A session costs two sled keys (its record and its mid index entry), which is what an
//! auth storm writes. Data dirs written before kept a third, `scom/<comet>\0<key>`; those
//! are dropped with their comet (the expiry calls `drop_legacy_comet_index`).
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{key, prefix_end, Kv, Txn};
use crate::StorageError;

const SESSION: &[u8] = b"sess/";
const BY_MID: &[u8] = b"smid/";
/// The comet index of older data dirs (read by nothing, dropped per comet).
const LEGACY_BY_COMET: &[u8] = b"scom/";
/// Sessions read at a time while looking for a comet's.
const SCAN_PAGE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub key: String,
    pub mid: i64,
    pub comet: String,
    /// The comet's id for the connection; a reconnect with the same key gets a new one.
    pub conn: u64,
    pub room: String,
    pub accepts: Vec<i32>,
    pub platform: String,
    pub ip: String,
    pub connected_ms: u64,
}

fn session_key(k: &str) -> Vec<u8> {
    key(SESSION, &[k.as_bytes()])
}

fn mid_key(mid: i64, k: &str) -> Vec<u8> {
    key(BY_MID, &[&mid.to_be_bytes(), k.as_bytes()])
}

pub fn get(kv: &impl Kv, k: &str) -> Result<Option<Session>, StorageError> {
    kv.get(&session_key(k))
}

/// Records `s`, replacing `old` (the session `get` found for `s.key`, if any): the caller
/// has just read it, so it is not read again. The mid index entry is written only when
/// the mid changes.
pub fn put(txn: &mut Txn<'_>, s: &Session, old: Option<&Session>) -> Result<(), StorageError> {
    txn.put(session_key(&s.key), s)?;
    match old {
        Some(old) if old.mid == s.mid => {}
        Some(old) => {
            txn.delete(mid_key(old.mid, &old.key));
            txn.put_raw(mid_key(s.mid, &s.key), Vec::new());
        }
        None => txn.put_raw(mid_key(s.mid, &s.key), Vec::new()),
    }
    Ok(())
}

/// Removes `old`, the session `get` found (the caller has just read it).
pub fn remove(txn: &mut Txn<'_>, old: &Session) {
    txn.delete(session_key(&old.key));
    txn.delete(mid_key(old.mid, &old.key));
}

fn suffix_after(prefix: &[u8], k: &[u8]) -> String {
    String::from_utf8_lossy(&k[prefix.len()..]).into_owned()
}

pub fn keys_of_mid(kv: &impl Kv, mid: i64) -> Result<Vec<String>, StorageError> {
    let mut prefix = key(BY_MID, &[&mid.to_be_bytes()]);
    prefix.push(0);
    Ok(kv.scan::<()>(&prefix)?.iter().map(|(k, _)| suffix_after(&prefix, k)).collect())
}

/// The sessions held by any of `comets`, read from the whole table (once, however many
/// comets) a page at a time.
pub fn of_comets(txn: &Txn<'_>, comets: &BTreeSet<String>) -> Result<Vec<Session>, StorageError> {
    let end = prefix_end(SESSION);
    let mut from = SESSION.to_vec();
    let mut found = Vec::new();
    loop {
        let rows = txn.range_raw(&from, &end, SCAN_PAGE)?;
        for (_, v) in &rows {
            let s: Session = goim_types::serial::decode(v)?;
            if comets.contains(&s.comet) {
                found.push(s);
            }
        }
        match rows.last() {
            Some((last, _)) if rows.len() == SCAN_PAGE => {
                from = last.clone();
                from.push(0);
            }
            _ => return Ok(found),
        }
    }
}

/// Deletes `comet`'s entries of the comet index older data dirs kept.
pub fn drop_legacy_comet_index(txn: &mut Txn<'_>, comet: &str) -> Result<(), StorageError> {
    let mut prefix = key(LEGACY_BY_COMET, &[comet.as_bytes()]);
    prefix.push(0);
    for k in txn.keys_with_prefix(&prefix)? {
        txn.delete(k);
    }
    Ok(())
}

/// The sessions in `room`, reading at most `max_scan` sessions of the table (there is no
/// room index: this is a roster for a demo-sized cluster); the flag says whether the whole
/// table was read.
pub fn in_room(kv: &impl Kv, room: &str, max_scan: usize) -> Result<(Vec<Session>, bool), StorageError> {
    let rows = kv.range_raw(SESSION, &prefix_end(SESSION), max_scan.saturating_add(1))?;
    let complete = rows.len() <= max_scan;
    let mut members = Vec::new();
    for (_, v) in rows.iter().take(max_scan) {
        let s: Session = goim_types::serial::decode(v)?;
        if s.room == room {
            members.push(s);
        }
    }
    Ok((members, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(key: &str, mid: i64, room: &str) -> Session {
        on_comet(key, mid, room, "c1")
    }

    fn on_comet(key: &str, mid: i64, room: &str, comet: &str) -> Session {
        Session {
            key: key.into(),
            mid,
            comet: comet.into(),
            conn: 1,
            room: room.into(),
            accepts: vec![],
            platform: "web".into(),
            ip: "127.0.0.1".into(),
            connected_ms: 0,
        }
    }

    #[test]
    fn in_room_lists_the_room_and_says_when_the_scan_stopped_short() {
        let (_dir, tree) = crate::tables::test_tree();
        let mut txn = Txn::new(&tree, None);
        put(&mut txn, &session("a", 1, "live://1"), None).unwrap();
        put(&mut txn, &session("b", 2, "live://2"), None).unwrap();
        put(&mut txn, &session("c", 3, "live://1"), None).unwrap();
        txn.commit().unwrap();
        let txn = Txn::new(&tree, None);
        let (members, complete) = in_room(&txn, "live://1", 10).unwrap();
        assert_eq!(members.iter().map(|s| s.mid).collect::<Vec<_>>(), vec![1, 3]);
        assert!(complete);
        let (members, complete) = in_room(&txn, "live://1", 2).unwrap();
        assert_eq!(members.iter().map(|s| s.mid).collect::<Vec<_>>(), vec![1]);
        assert!(!complete);
    }

    #[test]
    fn of_comets_reads_the_whole_table_page_by_page_with_the_batch_writes() {
        let (_dir, tree) = crate::tables::test_tree();
        let mut txn = Txn::new(&tree, None);
        let total = SCAN_PAGE * 2 + 7;
        for i in 0..total {
            let comet = if i % 3 == 0 { "c1" } else { "c2" };
            put(&mut txn, &on_comet(&format!("k{i:05}"), i as i64, "", comet), None).unwrap();
        }
        txn.commit().unwrap();
        let mut txn = Txn::new(&tree, None);
        let c1 = (0..total).filter(|i| i % 3 == 0).count();
        let only = |c: &str| BTreeSet::from([c.to_string()]);
        assert_eq!(of_comets(&txn, &only("c1")).unwrap().len(), c1);
        assert_eq!(
            of_comets(&txn, &BTreeSet::from(["c1".to_string(), "c2".to_string()])).unwrap().len(),
            total
        );
        // This batch's own writes count: one c1 session gone, one added.
        let gone = get(&txn, "k00000").unwrap().unwrap();
        remove(&mut txn, &gone);
        put(&mut txn, &on_comet("new", 1, "", "c1"), None).unwrap();
        let keys: Vec<String> = of_comets(&txn, &only("c1")).unwrap().into_iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), c1);
        assert!(keys.contains(&"new".to_string()) && !keys.contains(&"k00000".to_string()));
        assert_eq!(of_comets(&txn, &only("c3")).unwrap(), vec![]);
    }

    #[test]
    fn put_and_remove_keep_the_mid_index() {
        let (_dir, tree) = crate::tables::test_tree();
        let mut txn = Txn::new(&tree, None);
        let first = session("k", 7, "live://1");
        put(&mut txn, &first, None).unwrap();
        assert_eq!(keys_of_mid(&txn, 7).unwrap(), vec!["k".to_string()]);
        let moved = Session { room: "live://2".into(), conn: 2, ..first.clone() };
        put(&mut txn, &moved, Some(&first)).unwrap();
        assert_eq!(keys_of_mid(&txn, 7).unwrap(), vec!["k".to_string()]);
        let other_mid = Session { mid: 8, ..moved.clone() };
        put(&mut txn, &other_mid, Some(&moved)).unwrap();
        assert!(keys_of_mid(&txn, 7).unwrap().is_empty());
        assert_eq!(keys_of_mid(&txn, 8).unwrap(), vec!["k".to_string()]);
        txn.commit().unwrap();
        let mut txn = Txn::new(&tree, None);
        assert_eq!(get(&txn, "k").unwrap(), Some(other_mid.clone()));
        remove(&mut txn, &other_mid);
        txn.commit().unwrap();
        let txn = Txn::new(&tree, None);
        assert_eq!(get(&txn, "k").unwrap(), None);
        assert!(keys_of_mid(&txn, 8).unwrap().is_empty());
    }

    #[test]
    fn a_comets_legacy_index_entries_are_dropped_and_no_others() {
        let (_dir, tree) = crate::tables::test_tree();
        let legacy = |comet: &str, k: &str| key(LEGACY_BY_COMET, &[comet.as_bytes(), k.as_bytes()]);
        tree.insert(legacy("c1", "a"), vec![]).unwrap();
        tree.insert(legacy("c1", "b"), vec![]).unwrap();
        tree.insert(legacy("c10", "a"), vec![]).unwrap();
        let mut txn = Txn::new(&tree, None);
        drop_legacy_comet_index(&mut txn, "c1").unwrap();
        txn.commit().unwrap();
        let left: Vec<Vec<u8>> =
            tree.scan_prefix(LEGACY_BY_COMET).keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(left, vec![legacy("c10", "a")]);
    }
}
