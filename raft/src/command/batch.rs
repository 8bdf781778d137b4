//! `Batch`: many client writes in one Raft entry. The proposer gathers whatever writes are
//! waiting (application-level group commit: one entry, one replication round, one fsync
//! for all of them); each is applied in order and answered separately. Push ids past
//! their memory are forgotten once per batch, by the newest push's clock.
use goim_storage::tables::{requests, Txn};
use goim_storage::StorageError;

use super::{Reply, Request};

pub fn apply(batch: &[Request], txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
    let newest_push = batch
        .iter()
        .filter_map(|r| match r {
            Request::Push(p) => Some(p.ts_ms),
            _ => None,
        })
        .max();
    if let Some(now_ms) = newest_push {
        requests::expire(txn, now_ms)?;
    }
    let mut replies = Vec::with_capacity(batch.len());
    for req in batch {
        replies.push(match req {
            Request::Batch(_) => Reply::Refused("nested batch".into()),
            other => goim_storage::Command::apply(other, txn)?,
        });
    }
    Ok(Reply::Batch(replies))
}
