//! `AcquireLease` / `ReleaseLease`: the job consumer group. A partition is owned by one job
//! until its lease expires; the holder renews by acquiring again. A granted lease returns
//! the committed offset to resume from.
use goim_storage::tables::{offsets, offsets::Lease, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireLease {
    pub partition: u32,
    pub job: String,
    pub now_ms: u64,
    pub ttl_ms: u64,
}

impl AcquireLease {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let current = offsets::lease(txn, self.partition)?;
        let free = match &current {
            None => true,
            Some(l) => l.holder == self.job || l.expires_ms < self.now_ms,
        };
        if !free {
            let holder = current.map(|l| l.holder).unwrap_or_default();
            return Ok(Reply::Lease { granted: false, holder, offset: 0 });
        }
        let lease = Lease { holder: self.job.clone(), expires_ms: self.now_ms.saturating_add(self.ttl_ms) };
        offsets::set_lease(txn, self.partition, &lease)?;
        let offset = offsets::offset(txn, self.partition)?;
        Ok(Reply::Lease { granted: true, holder: self.job.clone(), offset })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseLease {
    pub partition: u32,
    pub job: String,
}

impl ReleaseLease {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        if let Some(mut l) = offsets::lease(txn, self.partition)? {
            if l.holder == self.job {
                l.expires_ms = 0;
                offsets::set_lease(txn, self.partition, &l)?;
            }
        }
        Ok(Reply::Done)
    }
}

typed_write!(AcquireLease => goim_net::rpc::logic::Lease,
    super::Reply::Lease { granted, holder, offset } => goim_net::rpc::logic::Lease { granted, holder, offset });
typed_write!(ReleaseLease => (), super::Reply::Done => ());
