//! Snapshots of the state machine: the whole `sm` tree as a list of key/value pairs. The
//! newest snapshot is kept in the `snapshot` tree so it survives restarts and can be sent to
//! followers that fell behind the purged log.
use std::io::Cursor;

use bytes::Bytes;
use goim_types::serial;
use openraft::storage::{RaftSnapshotBuilder, Snapshot};
use openraft::SnapshotMeta;

use crate::error::{read_sm, snapshot_io};
use crate::state_machine::{Applied, APPLIED, MEMBERSHIP};
use crate::{GoimTypes, StorageError};

pub(crate) const META: &[u8] = b"meta";
const DATA: &[u8] = b"data";

type Pairs = Vec<(Bytes, Bytes)>;

pub(crate) fn copy_tree(tree: &sled::Tree) -> Result<Pairs, StorageError> {
    tree.iter()
        .map(|kv| {
            let (k, v) = kv?;
            Ok((Bytes::from(k.to_vec()), Bytes::from(v.to_vec())))
        })
        .collect()
}

/// Replaces the whole tree by the snapshot's pairs (one batch) and records its position.
pub(crate) fn replace_tree<N: openraft::Node>(
    tree: &sled::Tree,
    data: &[u8],
    meta: &SnapshotMeta<u64, N>,
) -> Result<(), StorageError> {
    let pairs: Pairs = serial::decode(data)?;
    let mut batch = sled::Batch::default();
    for kv in tree.iter() {
        let (k, _) = kv?;
        batch.remove(k);
    }
    for (k, v) in pairs {
        batch.insert(k.as_ref(), v.as_ref());
    }
    batch.insert(APPLIED, serial::encode(&meta.last_log_id)?);
    batch.insert(MEMBERSHIP, serial::encode(&meta.last_membership)?);
    tree.apply_batch(batch)?;
    Ok(())
}

pub(crate) fn save_current<N: openraft::Node>(
    snapshots: &sled::Tree,
    meta: &SnapshotMeta<u64, N>,
    data: &[u8],
) -> Result<(), StorageError> {
    let mut batch = sled::Batch::default();
    batch.insert(META, serial::encode(meta)?);
    batch.insert(DATA, data);
    snapshots.apply_batch(batch)?;
    Ok(())
}

pub(crate) fn load_current<C: GoimTypes>(
    snapshots: &sled::Tree,
) -> Result<Option<Snapshot<C>>, StorageError> {
    let (Some(meta), Some(data)) = (snapshots.get(META)?, snapshots.get(DATA)?) else {
        return Ok(None);
    };
    Ok(Some(Snapshot { meta: serial::decode(&meta)?, snapshot: Box::new(Cursor::new(data.to_vec())) }))
}

pub struct SnapshotBuilder<C: GoimTypes> {
    copy: Result<Pairs, StorageError>,
    applied: Applied<C::Node>,
    snapshots: sled::Tree,
    counter: u64,
}

impl<C: GoimTypes> SnapshotBuilder<C> {
    pub(crate) fn new(
        copy: Result<Pairs, StorageError>,
        applied: Applied<C::Node>,
        snapshots: sled::Tree,
        counter: u64,
    ) -> Self {
        SnapshotBuilder { copy, applied, snapshots, counter }
    }
}

impl<C: GoimTypes> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, openraft::StorageError<u64>> {
        let pairs = std::mem::replace(&mut self.copy, Ok(Vec::new())).map_err(read_sm)?;
        let (last_applied, membership) = match &self.applied {
            Ok(a) => a.clone(),
            Err(e) => return Err(read_sm(StorageError::Corrupt(e.to_string()))),
        };
        let data = serial::encode(&pairs).map_err(snapshot_io)?;
        let snapshot_id = match &last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.counter),
            None => format!("none-{}", self.counter),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        save_current(&self.snapshots, &meta, &data).map_err(snapshot_io)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
