//! The state machine's tables, all in one sled tree under distinct key prefixes so that one
//! apply batch (every table it touched, plus `last_applied`) is written atomically.
//!
//! Reads go through `Kv`, implemented by `Txn` (inside apply: sees its own writes) and by
//! `StateView` (outside apply: the applied state). Each table module owns its prefix.
pub mod comets;
#[cfg(test)]
mod layout_tests;
pub mod offsets;
pub mod pushlog;
pub mod requests;
pub mod rooms;
pub mod sessions;
mod txn;

pub use txn::Txn;

use goim_types::serial;
use serde::{de::DeserializeOwned, Serialize};

use crate::StorageError;

/// Raw key/value pairs in key order.
pub type RawPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Key/value reads shared by the transaction and the read-only view.
pub trait Kv {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Entries with keys in `[start, end)`, in key order, at most `limit`.
    fn range_raw(&self, start: &[u8], end: &[u8], limit: usize) -> Result<RawPairs, StorageError>;

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.get_raw(key)? {
            Some(v) => Ok(Some(serial::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every entry whose key starts with `prefix`.
    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, StorageError> {
        let end = prefix_end(prefix);
        self.range_raw(prefix, &end, usize::MAX)?
            .into_iter()
            .map(|(k, v)| Ok((k, serial::decode(&v)?)))
            .collect()
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    Ok(serial::encode(v)?)
}

/// The smallest key greater than every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// A state tree in a fresh sled db under a temporary dir, for the tables' tests.
#[cfg(test)]
pub(crate) fn test_tree() -> (tempfile::TempDir, sled::Tree) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::open(dir.path()).expect("sled");
    let tree = db.open_tree("t").expect("tree");
    (dir, tree)
}

/// `prefix` + `parts` joined by 0 bytes (strings never contain NUL in our keys).
pub(crate) fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}
