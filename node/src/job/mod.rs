//! The job role (goim's job, consuming what was Kafka): owns a push-log partition through a
//! Raft lease, tails it from the committed offset, hands each batch to every comet it
//! concerns over QUIC push streams, and commits the offset up to which every comet acked
//! (records held for a comet that does not answer stay above it). Another job takes over
//! from that offset when this one dies (delivery is at-least-once; comets drop what they
//! already delivered).
mod batcher;
mod comet_link;
mod lease;
mod tail;

use std::sync::Arc;
use std::time::{Duration, Instant};

use goim_net::rpc::logic_client::LogicClient;
use goim_net::rpc::record::Partition;
use goim_net::rpc::PushRecord;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::comet_link::Comets;
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct JobConfig {
    pub id: String,
    pub partition: Partition,
    pub batch_records: usize,
    pub batch_bytes: usize,
    /// The least time between two batches while pushes keep coming (0: none).
    pub batch_hold: Duration,
    pub lease_ttl: Duration,
    /// How long a comet that failed a batch is left alone (what concerns it is held).
    pub comet_retry: Duration,
}

impl From<&Config> for JobConfig {
    fn from(cfg: &Config) -> JobConfig {
        JobConfig {
            id: format!("job-{}", cfg.quic_addr),
            partition: 0,
            batch_records: cfg.job_batch_records,
            batch_bytes: cfg.job_batch_bytes,
            batch_hold: Duration::from_millis(cfg.job_batch_hold_ms),
            lease_ttl: Duration::from_millis(cfg.job_lease_ms),
            comet_retry: Duration::from_millis(cfg.job_comet_retry_ms),
        }
    }
}

/// Commit the offset at most this often, and this long after a delivery at the latest. A
/// commit is a Raft write: it runs beside delivery, one at a time, so no batch waits for
/// one. A job taking over resends at most what was delivered since (comets drop it by seq).
const COMMIT_EVERY: Duration = Duration::from_millis(200);
const RETRY: Duration = Duration::from_millis(300);
/// How soon to look again for comets when none is registered.
const NO_COMET_RETRY: Duration = Duration::from_millis(200);

pub fn start(
    cfg: JobConfig,
    logic: Arc<LogicClient>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Known across lease re-acquisitions: a comet the registry has dropped for a moment
        // is still pushed to while it answers.
        let mut comets = Comets::new(logic.clone(), &cfg);
        while !shutdown.is_cancelled() {
            let Some(offset) = lease::acquire(&cfg, &logic, &shutdown).await else {
                break;
            };
            info!(job = %cfg.id, partition = cfg.partition, offset, "job owns the partition");
            let lost = CancellationToken::new();
            let renew = tokio::spawn(lease::keep(cfg.clone(), logic.clone(), lost.clone(), shutdown.clone()));
            match run(&cfg, &logic, &mut comets, offset, &lost, &shutdown).await {
                Ok(()) => {}
                Err(e) => warn!(job = %cfg.id, error = %e, "job pipeline stopped"),
            }
            lost.cancel();
            let _ = renew.await;
            if shutdown.is_cancelled() {
                lease::release(&cfg, &logic).await;
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
        info!(job = %cfg.id, "job stopped");
    })
}

/// Owns the partition from `offset` until the lease is lost or the node stops.
async fn run(
    cfg: &JobConfig,
    logic: &Arc<LogicClient>,
    comets: &mut Comets,
    mut offset: u64,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    comets.restart();
    let mut committed = offset;
    let mut last_commit = Instant::now();
    let mut committing: Option<JoinHandle<anyhow::Result<u64>>> = None;
    let mut last_sent: Option<Instant> = None;
    'tail: loop {
        let (tx, mut rx) = mpsc::channel::<Vec<PushRecord>>(16);
        let reader = tokio::spawn(tail::read(logic.clone(), cfg.partition, offset + 1, tx));
        loop {
            let retry_at = comets.retry_at();
            let commit_at = next_commit(&committing, comets.committable(offset), committed, last_commit);
            let first = tokio::select! {
                _ = lost.cancelled() => break 'tail,
                _ = shutdown.cancelled() => break 'tail,
                _ = until(retry_at) => {
                    comets.retry(cfg.partition, offset).await;
                    None
                }
                _ = until(commit_at) => None,
                done = landed(&mut committing) => {
                    committing = None;
                    committed = done?;
                    None
                }
                r = rx.recv() => match r {
                    Some(first) => Some(first),
                    None => {
                        // The tail stream ended (logic node gone): re-tail from what comets acked.
                        reader.abort();
                        tokio::time::sleep(RETRY).await;
                        continue 'tail;
                    }
                },
            };
            if let Some(first) = first {
                let mut pending = batcher::Pending::new(first);
                while !pending.full(cfg) {
                    match rx.try_recv() {
                        Ok(more) => pending.extend(more),
                        Err(_) => break,
                    }
                }
                // Pushes keep coming: gather until the hold since the last batch is over.
                if let Some(hold_until) =
                    last_sent.map(|at| at + cfg.batch_hold).filter(|at| *at > Instant::now())
                {
                    tokio::select! {
                        _ = lost.cancelled() => break 'tail,
                        _ = shutdown.cancelled() => break 'tail,
                        () = pending.gather_until(&mut rx, hold_until, cfg) => {}
                    }
                }
                last_sent = Some(Instant::now());
                for batch in pending.into_batches(cfg) {
                    let last = batch.last().map(|r| r.seq).unwrap_or(offset);
                    let batch: Arc<[PushRecord]> = batch.into();
                    while !comets.deliver(cfg.partition, batch.clone(), last).await {
                        tokio::select! {
                            _ = lost.cancelled() => break 'tail,
                            _ = shutdown.cancelled() => break 'tail,
                            _ = tokio::time::sleep(NO_COMET_RETRY) => {}
                        }
                    }
                    offset = last;
                }
            }
            let due = comets.committable(offset);
            if next_commit(&committing, due, committed, last_commit).is_some_and(|at| at <= Instant::now()) {
                let (cfg, logic) = (cfg.clone(), logic.clone());
                committing = Some(tokio::spawn(async move { commit(&cfg, &logic, due).await.map(|()| due) }));
                last_commit = Instant::now();
            }
        }
    }
    if let Some(in_flight) = committing {
        committed = committed.max(in_flight.await??);
    }
    let due = comets.committable(offset);
    if due > committed {
        commit(cfg, logic, due).await?;
    }
    Ok(())
}

/// When the next offset commit may start: `COMMIT_EVERY` after the last one, and not while
/// one is in flight or when nothing new (`due`) is committable.
fn next_commit(
    committing: &Option<JoinHandle<anyhow::Result<u64>>>,
    due: u64,
    committed: u64,
    last_commit: Instant,
) -> Option<Instant> {
    (committing.is_none() && due > committed).then(|| last_commit + COMMIT_EVERY)
}

/// The offset the commit in flight committed, once it has; never when none is in flight.
async fn landed(committing: &mut Option<JoinHandle<anyhow::Result<u64>>>) -> anyhow::Result<u64> {
    match committing {
        Some(in_flight) => in_flight.await?,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or for ever when there is nothing to wait for.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn commit(cfg: &JobConfig, logic: &LogicClient, seq: u64) -> anyhow::Result<()> {
    match logic.commit_offset(cfg.partition, &cfg.id, seq).await {
        Ok(_) => Ok(()),
        Err(e) => anyhow::bail!("commit offset {seq}: {e}"),
    }
}
