//! `Batch`: many client writes in one Raft entry. The proposer gathers whatever writes are
//! waiting (application-level group commit: one entry, one replication round, one fsync
//! for all of them); each is applied in order and answered separately. Push ids past
//! their memory are forgotten once per batch, by the newest push's clock, at least as many
//! as the batch's pushes remember.
use goim_storage::tables::{requests, Txn};
use goim_storage::StorageError;

use super::{Reply, Request};

pub fn apply(batch: &[Request], txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
    let pushes = batch.iter().flat_map(|r| match r {
        Request::Push(p) => std::slice::from_ref(p),
        Request::PushBatch(b) => &b.0,
        _ => &[],
    });
    let (count, newest) = pushes.fold((0, None), |(n, newest), p| (n + 1, newest.max(Some(p.ts_ms))));
    if let Some(now_ms) = newest {
        requests::expire(txn, now_ms, count)?;
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
