//! `CommitOffset`: a job records that every comet acked the push log up to `seq`. Only the
//! lease holder may move the offset (a job that lost its lease is fenced off).
use goim_storage::tables::{offsets, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffset {
    pub partition: u32,
    pub job: String,
    pub seq: u64,
}

impl CommitOffset {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        match offsets::lease(txn, self.partition)? {
            Some(l) if l.holder == self.job => {
                Ok(Reply::Offset(offsets::commit(txn, self.partition, self.seq)?))
            }
            _ => Ok(Reply::Refused(format!("{} does not hold the lease", self.job))),
        }
    }
}

typed_write!(CommitOffset => u64, super::Reply::Offset(offset) => offset);
