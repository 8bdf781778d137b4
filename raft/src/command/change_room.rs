//! `ChangeRoom`: a connection moved to another room (op 12); the session table follows
//! (goim only changed comet memory).
use goim_storage::tables::{sessions, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRoom {
    pub comet: String,
    pub key: String,
    pub conn: u64,
    pub room: String,
}

impl ChangeRoom {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        match sessions::get(txn, &self.key)? {
            Some(mut s) if s.conn == self.conn && s.comet == self.comet => {
                s.room = self.room.clone();
                sessions::put(txn, &s)?;
                Ok(Reply::Done)
            }
            _ => Ok(Reply::Refused(format!("no session for key {}", self.key))),
        }
    }
}
