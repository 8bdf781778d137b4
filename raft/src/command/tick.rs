//! `Tick`: the leader's clock, proposed when something is due. Comets whose registration
//! expired are dropped with every session they held, so online counts fall when a comet
//! dies. Time enters the state machine only through this command.
use goim_storage::tables::{comets, sessions, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub now_ms: u64,
}

impl Tick {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        for comet in comets::list(txn)? {
            if comet.expires_ms < self.now_ms {
                for key in sessions::keys_of_comet(txn, &comet.info.id)? {
                    sessions::remove(txn, &key)?;
                }
                comets::remove(txn, &comet.info.id);
            }
        }
        Ok(Reply::Done)
    }
}
