//! Sessions: one per authenticated connection, keyed by the client's key, with a mid index
//! (push to mids) and a comet index (evict a dead comet's sessions); `in_room` lists a small
//! room's members (the web demo's roster).
use serde::{Deserialize, Serialize};

use super::{key, prefix_end, Kv, Txn};
use crate::StorageError;

const SESSION: &[u8] = b"sess/";
const BY_MID: &[u8] = b"smid/";
const BY_COMET: &[u8] = b"scom/";

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

fn comet_key(comet: &str, k: &str) -> Vec<u8> {
    key(BY_COMET, &[comet.as_bytes(), k.as_bytes()])
}

pub fn get(kv: &impl Kv, k: &str) -> Result<Option<Session>, StorageError> {
    kv.get(&session_key(k))
}

/// Inserts or replaces the session of `s.key`, keeping the indexes in step.
pub fn put(txn: &mut Txn<'_>, s: &Session) -> Result<(), StorageError> {
    remove(txn, &s.key)?;
    txn.put(session_key(&s.key), s)?;
    txn.put_raw(mid_key(s.mid, &s.key), Vec::new());
    txn.put_raw(comet_key(&s.comet, &s.key), Vec::new());
    Ok(())
}

pub fn remove(txn: &mut Txn<'_>, k: &str) -> Result<Option<Session>, StorageError> {
    let old = get(txn, k)?;
    if let Some(old) = &old {
        txn.delete(session_key(k));
        txn.delete(mid_key(old.mid, k));
        txn.delete(comet_key(&old.comet, k));
    }
    Ok(old)
}

fn suffix_after(prefix: &[u8], k: &[u8]) -> String {
    String::from_utf8_lossy(&k[prefix.len()..]).into_owned()
}

pub fn keys_of_mid(kv: &impl Kv, mid: i64) -> Result<Vec<String>, StorageError> {
    let mut prefix = key(BY_MID, &[&mid.to_be_bytes()]);
    prefix.push(0);
    Ok(kv.scan::<()>(&prefix)?.iter().map(|(k, _)| suffix_after(&prefix, k)).collect())
}

pub fn keys_of_comet(txn: &Txn<'_>, comet: &str) -> Result<Vec<String>, StorageError> {
    let mut prefix = key(BY_COMET, &[comet.as_bytes()]);
    prefix.push(0);
    Ok(txn.keys_with_prefix(&prefix)?.iter().map(|k| suffix_after(&prefix, k)).collect())
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
        Session {
            key: key.into(),
            mid,
            comet: "c1".into(),
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
        put(&mut txn, &session("a", 1, "live://1")).unwrap();
        put(&mut txn, &session("b", 2, "live://2")).unwrap();
        put(&mut txn, &session("c", 3, "live://1")).unwrap();
        txn.commit().unwrap();
        let txn = Txn::new(&tree, None);
        let (members, complete) = in_room(&txn, "live://1", 10).unwrap();
        assert_eq!(members.iter().map(|s| s.mid).collect::<Vec<_>>(), vec![1, 3]);
        assert!(complete);
        let (members, complete) = in_room(&txn, "live://1", 2).unwrap();
        assert_eq!(members.iter().map(|s| s.mid).collect::<Vec<_>>(), vec![1]);
        assert!(!complete);
    }
}
