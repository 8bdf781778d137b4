//! `ChangeRoom`: a connection moved to another room (op 12); the session table follows
//! (goim only changed comet memory). Like `Connect`, the reply names the new room's offset
//! and epoch at this log position, where the comet's replay ends and live delivery begins.
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
    /// Proposer's clock (seeds the epoch of a room seen for the first time).
    pub ts_ms: u64,
}

impl ChangeRoom {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        match sessions::get(txn, &self.key)? {
            Some(old) if old.conn == self.conn && old.comet == self.comet => {
                let s = sessions::Session { room: self.room.clone(), ..old.clone() };
                sessions::put(txn, &s, Some(&old))?;
                super::connect::joined(txn, &self.room, self.ts_ms)
            }
            _ => Ok(Reply::Refused(format!("no session for key {}", self.key))),
        }
    }
}

typed_write!(ChangeRoom => goim_net::rpc::logic::Joined, super::Reply::Joined { room_seq, epoch } => goim_net::rpc::logic::Joined { room_seq, epoch });
