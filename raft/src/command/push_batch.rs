//! `PushBatch`: the valid lines of one `POST /goim/push/batch`, many pushes as one write.
//! It exists so a producer can fill the log with one request and one proposal per many
//! messages instead of one each: the proposer still gathers it with concurrent writes
//! into one entry, and the whole request commits (or fails) as one, so a client retries
//! it whole. Its pushes apply in order (a room's offsets follow line order), each through
//! `Push`'s own apply, so each keeps its request id: a resent batch appends nothing twice
//! and answers every push's first outcome. The log head is read and stored once per
//! batch, not per push (one `pushlog::Appender`); rooms and records are held in the txn.

use goim_storage::tables::{pushlog, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::{Push, Pushed, Reply};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushBatch(pub Vec<Push>);

impl PushBatch {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let mut log = pushlog::Appender::open(txn, 0)?;
        let pushed = self.0.iter().map(|p| p.pushed(txn, &mut log)).collect::<Result<_, _>>()?;
        log.finish(txn)?;
        Ok(Reply::PushedEach(pushed))
    }
}

typed_write!(PushBatch => Vec<Pushed>, super::Reply::PushedEach(pushed) => pushed);
