//! One apply batch: reads fall through an in-memory overlay of this batch's writes to the
//! tree; `commit` writes the overlay as one atomic sled batch, after recording the keys'
//! previous values for a snapshot build in progress (`snapshot::before_images`). Push
//! records, generated request ids and rooms are held typed until `commit` stores each kind
//! as a few grouped values (`pushlog::seal`, `requests::seal`, `rooms::seal`).
use std::collections::BTreeMap;
use std::sync::Arc;

use super::{prefix_end, pushlog, requests, rooms, Kv, RawPairs};
use crate::snapshot::BeforeImages;
use crate::StorageError;

pub struct Txn<'a> {
    tree: &'a sled::Tree,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The running snapshot build's before-images, if one is running.
    images: Option<Arc<BeforeImages>>,
    /// Index of the log entry being applied.
    pub log_index: u64,
    /// Set when a push record was appended (tails are woken after commit).
    pub pushed: bool,
    /// Push records appended, stored as chunks at commit.
    pub(super) unsealed: pushlog::Unsealed,
    /// Generated request ids remembered, stored grouped at commit.
    pub(super) ids: requests::Unsealed,
    /// Rooms read or changed, stored at commit.
    pub(super) rooms: rooms::Unsealed,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(tree: &'a sled::Tree, images: Option<Arc<BeforeImages>>) -> Txn<'a> {
        Txn {
            tree,
            overlay: BTreeMap::new(),
            images,
            log_index: 0,
            pushed: false,
            unsealed: Default::default(),
            ids: Default::default(),
            rooms: Default::default(),
        }
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, Some(value));
    }

    pub fn put<T: serde::Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), StorageError> {
        self.put_raw(key, super::encode(value)?);
        Ok(())
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, None);
    }

    pub(crate) fn commit(mut self) -> Result<(), StorageError> {
        pushlog::seal(&mut self)?;
        requests::seal(&mut self)?;
        rooms::seal(&mut self)?;
        if let Some(images) = &self.images {
            images.record(self.tree, self.overlay.keys().map(Vec::as_slice))?;
        }
        let mut batch = sled::Batch::default();
        for (k, v) in self.overlay {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}

impl Kv for Txn<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    fn range_raw(&self, start: &[u8], end: &[u8], limit: usize) -> Result<RawPairs, StorageError> {
        let mut merged = BTreeMap::new();
        for kv in self.tree.range(start..end) {
            let (k, v) = kv?;
            merged.insert(k.to_vec(), Some(v.to_vec()));
            // Overlay deletions may remove some: read a little past the limit.
            if merged.len() >= limit.saturating_add(self.overlay.len()) {
                break;
            }
        }
        for (k, v) in self.overlay.range(start.to_vec()..end.to_vec()) {
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).take(limit).collect())
    }
}

impl<'a> Txn<'a> {
    /// Keys with `prefix`, including this batch's writes.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        Ok(self.range_raw(prefix, &prefix_end(prefix), usize::MAX)?.into_iter().map(|(k, _)| k).collect())
    }
}
