//! `Trim`: push-log retention, like Kafka's. The leader decides from the configured count
//! and age which seqs fall out of the window and proposes the cut, so every replica drops
//! exactly the same records.
use goim_storage::tables::{pushlog, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

/// Most records one `Trim` drops (keeps each apply bounded; the leader proposes again).
pub const MAX_PER_TRIM: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trim {
    pub partition: u32,
    /// Records with seq < `before_seq` are dropped.
    pub before_seq: u64,
}

impl Trim {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let first = pushlog::head(txn, self.partition)?.first_seq;
        let before = self.before_seq.min(first.saturating_add(MAX_PER_TRIM));
        pushlog::trim(txn, self.partition, before)?;
        Ok(Reply::Done)
    }
}

typed_write!(Trim => (), super::Reply::Done => ());
