//! `Resync`: a comet re-registers its live connections after logic had expired it (its
//! renewals did not get through in time, e.g. during a long election). Sessions are
//! restored unless the key has meanwhile connected elsewhere; those connections are
//! reported stale so the comet closes them.
use goim_net::rpc::logic::LiveSession;
use goim_storage::tables::{sessions, sessions::Session, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resync {
    pub comet: String,
    pub sessions: Vec<LiveSession>,
    /// Proposer's clock (recorded as the sessions' connect time when restored).
    pub now_ms: u64,
}

impl Resync {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let mut stale = Vec::new();
        for live in &self.sessions {
            match sessions::get(txn, &live.key)? {
                Some(s) if s.comet != self.comet || s.conn != live.conn => {
                    stale.push((live.key.clone(), live.conn));
                }
                Some(_) => {}
                None => sessions::put(
                    txn,
                    &Session {
                        key: live.key.clone(),
                        mid: live.mid,
                        comet: self.comet.clone(),
                        conn: live.conn,
                        room: live.room.clone(),
                        accepts: live.accepts.clone(),
                        platform: String::new(),
                        ip: live.ip.clone(),
                        connected_ms: self.now_ms,
                    },
                    None,
                )?,
            }
        }
        Ok(Reply::Stale(stale))
    }
}

typed_write!(Resync => Vec<(String, u64)>, super::Reply::Stale(stale) => stale);
