//! `Disconnect`: a connection closed; its session goes, unless the key has already been
//! taken over by a newer connection (then the newer session stays).
use goim_storage::tables::{sessions, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    pub comet: String,
    pub key: String,
    pub conn: u64,
}

impl Disconnect {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        if let Some(s) = sessions::get(txn, &self.key)? {
            if s.conn == self.conn && s.comet == self.comet {
                sessions::remove(txn, &s);
            }
        }
        Ok(Reply::Done)
    }
}

typed_write!(Disconnect => (), super::Reply::Done => ());
