//! `PushBatch`: the valid lines of one `POST /goim/push/batch`, many pushes as one write.
//! It exists so a producer can fill the log with one request and one proposal per many
//! messages instead of one each: the proposer still gathers it with concurrent writes
//! into one entry, and the whole request commits (or fails) as one, so a client retries
//! it whole. Its pushes apply in order (a room's offsets follow line order), each through
//! `Push`'s own apply, so each keeps its request id: a resent batch appends nothing twice
//! and answers every push's first outcome. The log head and the rooms' offsets are read
//! and stored once per batch, not per push (`Appending`).
use goim_storage::tables::Txn;
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::push::Appending;
use super::{Push, Pushed, Reply};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushBatch(pub Vec<Push>);

impl PushBatch {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let mut to = Appending::open(txn)?;
        let pushed = self.0.iter().map(|p| p.pushed(txn, &mut to)).collect::<Result<_, _>>()?;
        to.finish(txn)?;
        Ok(Reply::PushedEach(pushed))
    }
}

typed_write!(PushBatch => Vec<Pushed>, super::Reply::PushedEach(pushed) => pushed);
