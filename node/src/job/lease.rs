//! The job's partition lease: acquire (waiting while another job holds it), keep it renewed
//! at a third of its TTL, release it on a graceful stop so a successor need not wait.
use std::sync::Arc;
use std::time::{Duration, Instant};

use goim_net::rpc::logic::Lease;
use goim_net::rpc::logic_client::LogicClient;
use goim_net::rpc::RpcError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::JobConfig;

/// One lease request, each attempt bounded by `within`.
async fn request(cfg: &JobConfig, logic: &LogicClient, within: Duration) -> Result<Lease, RpcError> {
    let ttl_ms = u64::try_from(cfg.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    logic.acquire_lease(cfg.partition, &cfg.id, ttl_ms, within).await
}

/// Waits until the lease is ours; returns the committed offset. `None` on shutdown.
pub async fn acquire(cfg: &JobConfig, logic: &LogicClient, shutdown: &CancellationToken) -> Option<u64> {
    loop {
        match request(cfg, logic, logic.timeout()).await {
            Ok(Lease { granted: true, offset, .. }) => return Some(offset),
            Ok(Lease { holder, .. }) => debug!(job = %cfg.id, %holder, "partition held by another job"),
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
        match request(&cfg, &logic, cfg.lease_ttl / 4).await {
            Ok(Lease { granted: true, .. }) => renewed = Instant::now(),
            Ok(Lease { holder, .. }) => {
                warn!(job = %cfg.id, %holder, "lease lost");
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
    if let Err(e) = logic.release_lease(cfg.partition, &cfg.id).await {
        warn!(job = %cfg.id, error = %e, "releasing lease");
    }
}
