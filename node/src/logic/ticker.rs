//! While this node leads, propose `Tick { now }` whenever a comet's registration has
//! expired, so its sessions and online counts leave the tables. Nothing is proposed when
//! nothing is due: an idle cluster writes no log entries.
use std::sync::Arc;
use std::time::Duration;

use goim_raft::command::Tick;
use goim_raft::Request;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Logic;
use crate::clock::now_ms;

const PERIOD: Duration = Duration::from_millis(500);

pub async fn run(logic: Arc<Logic>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if logic.cluster.leader() != Some(logic.cluster.node_id) {
            continue;
        }
        let now = now_ms();
        let expired: Vec<String> = match goim_storage::tables::comets::list(&logic.cluster.view) {
            Ok(list) => list
                .into_iter()
                .filter(|c| c.expires_ms < now)
                .map(|c| c.info.id)
                .collect(),
            Err(e) => {
                warn!(error = %e, "reading comet registry");
                continue;
            }
        };
        if expired.is_empty() {
            continue;
        }
        info!(?expired, "comet registrations expired");
        if let Err(e) = logic
            .cluster
            .write(Request::Tick(Tick { now_ms: now }))
            .await
        {
            warn!(error = %e, "proposing tick");
        }
    }
}
