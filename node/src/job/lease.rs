//! The job's partition lease: acquire (waiting while another job holds it), keep it renewed
//! at a third of its TTL, release it on a graceful stop so a successor need not wait.
use std::sync::Arc;
use std::time::{Duration, Instant};

use goim_net::rpc::logic::{LogicReply, LogicRequest};
use goim_net::rpc::logic_client::LogicClient;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::JobConfig;

fn acquire_req(cfg: &JobConfig) -> LogicRequest {
    LogicRequest::AcquireLease {
        partition: cfg.partition,
        job: cfg.id.clone(),
        ttl_ms: cfg.lease_ttl.as_millis() as u64,
    }
}

/// Waits until the lease is ours; returns the committed offset. `None` on shutdown.
pub async fn acquire(cfg: &JobConfig, logic: &LogicClient, shutdown: &CancellationToken) -> Option<u64> {
    loop {
        match logic.call(&acquire_req(cfg)).await {
            Ok(LogicReply::Lease { granted: true, offset, .. }) => return Some(offset),
            Ok(LogicReply::Lease { holder, .. }) => {
                debug!(job = %cfg.id, %holder, "partition held by another job")
            }
            Ok(other) => warn!(?other, "unexpected lease reply"),
            Err(e) => debug!(error = %e, "lease request failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(cfg.lease_ttl / 3) => {}
        }
    }
}

/// Renews until `lost` or `shutdown`; cancels `lost` when the lease cannot be kept (refused,
/// or not renewed within its TTL), which stops the pipeline before a successor can start.
pub async fn keep(
    cfg: JobConfig,
    logic: Arc<LogicClient>,
    lost: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.lease_ttl / 3) => {}
        }
        // Each attempt gets a slice of the TTL, so a dead logic node is skipped in time.
        match logic.call_within(&acquire_req(&cfg), cfg.lease_ttl / 4).await {
            Ok(LogicReply::Lease { granted: true, .. }) => renewed = Instant::now(),
            Ok(reply) => {
                warn!(job = %cfg.id, ?reply, "lease lost");
                lost.cancel();
                return;
            }
            Err(e) => warn!(job = %cfg.id, error = %e, "lease renewal failed"),
        }
        // Stop a little before the TTL runs out by our clock, so two jobs never overlap long.
        if renewed.elapsed() + Duration::from_millis(100) >= cfg.lease_ttl {
            warn!(job = %cfg.id, "lease not renewed in time");
            lost.cancel();
            return;
        }
    }
}

pub async fn release(cfg: &JobConfig, logic: &LogicClient) {
    let req = LogicRequest::ReleaseLease { partition: cfg.partition, job: cfg.id.clone() };
    if let Err(e) = logic.call(&req).await {
        warn!(job = %cfg.id, error = %e, "releasing lease");
    }
}
