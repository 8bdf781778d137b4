//! The job's side of the push streams: the comet list (refreshed from logic) and one
//! long-lived QUIC stream per comet carrying `PushBatch` frames, each answered by a
//! `PushAck`. A comet that cannot take a batch after a retry is skipped (counted): its
//! clients will find another comet. A comet that dropped out of the registry but still
//! takes batches (its renewals were late, e.g. during an election) keeps getting them:
//! the registry decides who is new, a failed stream decides who is gone.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use goim_net::quic::{read_frame, write_frame, QuicError};
use goim_net::rpc::logic::CometInfo;
use goim_net::rpc::logic_client::LogicClient;
use goim_net::rpc::push::{PushAck, PushBatch};
use goim_net::rpc::record::Partition;
use goim_net::rpc::{PushRecord, PushTarget, Service};
use quinn::{RecvStream, SendStream};
use tracing::warn;

const REFRESH_EVERY: Duration = Duration::from_secs(1);
const REFRESH_SOONEST: Duration = Duration::from_millis(100);
/// A comet that failed to take a batch is not tried again for this long (a dead comet must
/// not stall every batch with dial timeouts; its clients are reconnecting elsewhere).
const DOWN_FOR: Duration = Duration::from_secs(2);
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Comets {
    logic: Arc<LogicClient>,
    links: HashMap<String, Link>,
    refreshed: Option<Instant>,
}

struct Link {
    info: CometInfo,
    stream: Option<(SendStream, RecvStream)>,
    /// In the registry at the last refresh.
    listed: bool,
    /// Skipped until then after a failed batch.
    down_until: Option<Instant>,
}

impl Comets {
    pub fn new(logic: Arc<LogicClient>) -> Comets {
        Comets { logic, links: HashMap::new(), refreshed: None }
    }

    async fn refresh(&mut self) {
        match self.logic.comets().await {
            Ok(list) => {
                for link in self.links.values_mut() {
                    link.listed = list.iter().any(|c| c.id == link.info.id);
                }
                self.forget_unreachable();
                for info in list {
                    let link = self.links.entry(info.id.clone()).or_insert_with(|| Link {
                        info: info.clone(),
                        stream: None,
                        listed: true,
                        down_until: None,
                    });
                    if link.info.quic_addr != info.quic_addr {
                        link.stream = None;
                    }
                    link.info = info;
                }
                self.refreshed = Some(Instant::now());
            }
            Err(e) => warn!(error = %e, "listing comets"),
        }
    }

    /// Drops comets that are neither registered nor holding a working push stream.
    fn forget_unreachable(&mut self) {
        self.links.retain(|_, link| link.listed || link.stream.is_some());
    }

    fn names_unknown_comet(&self, records: &[PushRecord]) -> bool {
        records.iter().any(|r| match &r.target {
            PushTarget::Keys { comet, .. } | PushTarget::Kick { comet, .. } => {
                !self.links.contains_key(comet)
            }
            _ => false,
        })
    }

    /// Hands `records` (seqs up to `last_seq`) to every comet they concern, concurrently,
    /// and returns once each has acked or been given up on. Returns `false` without
    /// delivering when no comet is known: the registry is empty only transiently (comets
    /// re-registering after an election) or when nobody is connected, and advancing past
    /// records delivered to nobody would lose them.
    pub async fn deliver(&mut self, partition: Partition, records: &[PushRecord], last_seq: u64) -> bool {
        let since = self.refreshed.map(|t| t.elapsed());
        let stale = since.is_none_or(|d| d >= REFRESH_EVERY);
        // Not more often than REFRESH_SOONEST: keys of a comet that is gone keep naming it
        // until its sessions expire.
        let may_refresh = since.is_none_or(|d| d >= REFRESH_SOONEST);
        if stale || (may_refresh && (self.links.is_empty() || self.names_unknown_comet(records))) {
            self.refresh().await;
        }
        if self.links.is_empty() {
            metrics::counter!("goim_job_no_comet_waits_total").increment(1);
            return false;
        }
        let endpoint = self.logic.endpoint().clone();
        let now = Instant::now();
        let sends = self.links.values_mut().filter_map(|link| {
            if link.down_until.is_some_and(|t| now < t) {
                metrics::counter!("goim_job_push_skipped_total").increment(1);
                return None;
            }
            let mine: Vec<PushRecord> = records.iter().filter(|r| r.target.concerns(&link.info.id)).cloned().collect();
            if mine.is_empty() {
                return None;
            }
            let batch = PushBatch { partition, records: mine, last_seq };
            let endpoint = endpoint.clone();
            Some(async move {
                for attempt in 0..2 {
                    match link.send(&endpoint, &batch).await {
                        Ok(()) => {
                            link.down_until = None;
                            return;
                        }
                        Err(e) => {
                            link.stream = None;
                            if attempt == 1 {
                                link.down_until = Some(Instant::now() + DOWN_FOR);
                                metrics::counter!("goim_job_push_failures_total").increment(1);
                                warn!(comet = %link.info.id, error = %e, last_seq, "comet did not take a push batch; skipped");
                            }
                        }
                    }
                }
            })
        });
        join_all(sends).await;
        self.forget_unreachable();
        metrics::counter!("goim_job_records_total").increment(records.len() as u64);
        true
    }
}

impl Link {
    async fn send(
        &mut self,
        endpoint: &goim_net::quic::QuicEndpoint,
        batch: &PushBatch,
    ) -> Result<(), QuicError> {
        if self.stream.is_none() {
            self.stream = Some(endpoint.open(&self.info.quic_addr, Service::Push).await?);
        }
        let Some((send, recv)) = self.stream.as_mut() else {
            return Err(QuicError::NoReply);
        };
        let exchange = async {
            write_frame(send, batch).await?;
            match read_frame::<PushAck>(recv).await? {
                Some(ack) if ack.last_seq >= batch.last_seq => Ok(()),
                Some(ack) => Err(QuicError::Io(std::io::Error::other(format!(
                    "ack {} short of {}",
                    ack.last_seq, batch.last_seq
                )))),
                None => Err(QuicError::NoReply),
            }
        };
        tokio::time::timeout(ACK_TIMEOUT, exchange).await.map_err(|_| QuicError::Timeout)?
    }
}
