//! `Batch`: many client writes in one Raft entry. The proposer gathers whatever writes are
//! waiting (application-level group commit: one entry, one replication round, one fsync
//! for all of them); each is applied in order and answered separately.
use goim_storage::tables::Txn;
use goim_storage::StorageError;

use super::{Reply, Request};

pub fn apply(requests: &[Request], txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
    let mut replies = Vec::with_capacity(requests.len());
    for req in requests {
        replies.push(match req {
            Request::Batch(_) => Reply::Refused("nested batch".into()),
            other => goim_storage::Command::apply(other, txn)?,
        });
    }
    Ok(Reply::Batch(replies))
}
