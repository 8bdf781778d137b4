//! `RenewOnline`: a comet's periodic report (goim's RenewOnline): registers or refreshes it
//! in the comet registry with its per-room counts, and answers the cluster-wide counts —
//! flagged when the comet was not registered (new, or expired with its sessions: it must
//! then `Resync`).
use std::collections::BTreeMap;

use goim_net::rpc::logic::CometInfo;
use goim_storage::tables::{comets, comets::CometState, Txn};
use goim_storage::StorageError;
use serde::{Deserialize, Serialize};

use super::Reply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewOnline {
    pub comet: CometInfo,
    pub rooms: BTreeMap<String, u32>,
    pub conn_count: u32,
    pub ip_count: u32,
    /// Proposer's clock; the registration lives until `now_ms + ttl_ms`.
    pub now_ms: u64,
    pub ttl_ms: u64,
}

impl RenewOnline {
    pub fn apply(&self, txn: &mut Txn<'_>) -> Result<Reply, StorageError> {
        let known = comets::get(txn, &self.comet.id)?.is_some_and(|c| !c.expired);
        comets::put(
            txn,
            &CometState {
                info: self.comet.clone(),
                rooms: self.rooms.clone(),
                conn_count: self.conn_count,
                ip_count: self.ip_count,
                updated_ms: self.now_ms,
                expires_ms: self.now_ms.saturating_add(self.ttl_ms),
                expired: false,
            },
        )?;
        Ok(Reply::RoomCounts { counts: comets::room_totals(txn)?, known })
    }
}

typed_write!(RenewOnline => goim_net::rpc::logic::Online, super::Reply::RoomCounts { counts, known } => goim_net::rpc::logic::Online { counts, known });
