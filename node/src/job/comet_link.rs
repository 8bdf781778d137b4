//! The job's side of the push streams: the comet list (refreshed from logic) and one
//! long-lived QUIC stream per comet carrying `PushBatch` frames, each answered by a
//! `PushAck`. Nothing a comet should have is skipped while it may still take it:
//! - a comet that cannot take a batch after a retry is left alone for a while (a dead comet
//!   must not stall every batch with timeouts). What concerns it meanwhile is held and sent
//!   first when it is tried again; a comet that was there all along drops, by seq, what it
//!   had, and a restarted one hands its clients what they lack (their channels drop the room
//!   offsets they have).
//! - a comet seen for the first time (started, or back after its registration lapsed) is
//!   sent the room records of the last seconds first: clients may have joined it between its
//!   registration and the job's next look at the registry.
//!
//! A comet that dropped out of the registry but still takes batches keeps getting them: the
//! registry decides who is new, a failed stream decides who is gone.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use goim_net::quic::{read_frame, write_frame, QuicEndpoint, QuicError};
use goim_net::rpc::logic::CometInfo;
use goim_net::rpc::logic_client::LogicClient;
use goim_net::rpc::push::{PushAck, PushBatch};
use goim_net::rpc::record::Partition;
use goim_net::rpc::{PushRecord, PushTarget, Service};
use quinn::{RecvStream, SendStream};
use tracing::warn;

use super::batcher::{split, Caps};
use super::JobConfig;

const REFRESH_EVERY: Duration = Duration::from_secs(1);
const REFRESH_SOONEST: Duration = Duration::from_millis(100);
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Most records, and body bytes, held for one comet. Past either, what is held is dropped
/// (counted): the comet's clients then see a gap in their room offsets and recover it
/// from history on reconnecting.
const HELD_RECORDS: usize = 256 * 1024;
const HELD_BYTES: usize = 64 << 20;
/// Batches kept for comets seen for the first time: at most this old, this many records,
/// this many body bytes. The registry is read every `REFRESH_EVERY`.
const RECENT_FOR: Duration = Duration::from_secs(5);
const RECENT_RECORDS: usize = 64 * 1024;
const RECENT_BYTES: usize = 16 << 20;

pub struct Comets {
    logic: Arc<LogicClient>,
    links: HashMap<String, Link>,
    refreshed: Option<Instant>,
    caps: Caps,
    /// How long a comet that failed a batch is left alone.
    retry_after: Duration,
    recent: Recent,
}

struct Link {
    info: CometInfo,
    stream: Option<(SendStream, RecvStream)>,
    /// In the registry at the last refresh.
    listed: bool,
    /// Not tried until then after a failed batch.
    down_until: Option<Instant>,
    /// Records for this comet it has not acked yet, in seq order.
    held: Held,
}

impl Comets {
    pub fn new(logic: Arc<LogicClient>, cfg: &JobConfig) -> Comets {
        Comets {
            logic,
            links: HashMap::new(),
            refreshed: None,
            caps: Caps::of(cfg),
            retry_after: cfg.comet_retry,
            recent: Recent::default(),
        }
    }

    /// Forgets what is held and recent: the job (re)starts tailing from its committed
    /// offset, which is below everything held, so it all comes again.
    pub fn restart(&mut self) {
        for link in self.links.values_mut() {
            link.held = Held::default();
        }
        self.recent = Recent::default();
    }

    async fn refresh(&mut self) {
        match self.logic.comets().await {
            Ok(list) => {
                for link in self.links.values_mut() {
                    link.listed = list.iter().any(|c| c.id == link.info.id);
                }
                self.forget_unreachable();
                for info in list {
                    let recent = &self.recent;
                    let link = self.links.entry(info.id.clone()).or_insert_with(|| {
                        let mut held = Held::default();
                        let rooms: Vec<&PushRecord> = recent.room_records().collect();
                        metrics::counter!("goim_job_recent_resent_records_total")
                            .increment(rooms.len() as u64);
                        held.add(&info.id, rooms);
                        Link { info: info.clone(), stream: None, listed: true, down_until: None, held }
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
        self.links.retain(|id, link| {
            let keep = link.listed || link.stream.is_some();
            if !keep && !link.held.records.is_empty() {
                metrics::counter!("goim_job_held_dropped_records_total").increment(link.held.records.len() as u64);
                warn!(comet = %id, held = link.held.records.len(), "comet gone from the registry: records held for it dropped");
            }
            keep
        });
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
    /// with what is held for it, and returns once each has acked or failed (then they are
    /// held for it). Returns `false` without delivering when no comet is known: the registry
    /// is empty only transiently (comets re-registering after an election) or when nobody is
    /// connected, and advancing past records delivered to nobody would lose them.
    pub async fn deliver(&mut self, partition: Partition, records: Arc<[PushRecord]>, last_seq: u64) -> bool {
        let since = self.refreshed.map(|t| t.elapsed());
        let stale = since.is_none_or(|d| d >= REFRESH_EVERY);
        // Not more often than REFRESH_SOONEST: keys of a comet that is gone keep naming it
        // until its sessions expire.
        let may_refresh = since.is_none_or(|d| d >= REFRESH_SOONEST);
        if stale || (may_refresh && (self.links.is_empty() || self.names_unknown_comet(&records))) {
            self.refresh().await;
        }
        if self.links.is_empty() {
            metrics::counter!("goim_job_no_comet_waits_total").increment(1);
            return false;
        }
        if let Some(first) = records.first() {
            let age = crate::clock::now_ms().saturating_sub(first.ts_ms);
            metrics::histogram!("goim_job_record_age_seconds").record(age as f64 / 1000.0);
        }
        for (id, link) in &mut self.links {
            link.held.add(id, records.iter());
        }
        metrics::counter!("goim_job_records_total").increment(records.len() as u64);
        self.recent.add(records);
        self.send_held(partition, last_seq).await;
        true
    }

    /// Sends what is held to the comets due to be tried again (`last_seq`: the job's
    /// offset).
    pub async fn retry(&mut self, partition: Partition, last_seq: u64) {
        self.send_held(partition, last_seq).await;
    }

    /// When a comet with held records is due to be tried again.
    pub fn retry_at(&self) -> Option<Instant> {
        self.links.values().filter(|l| !l.held.records.is_empty()).filter_map(|l| l.down_until).min()
    }

    /// The offset that may be committed with the job at `offset`: below every held record
    /// (a job taking over from it delivers them).
    pub fn committable(&self, offset: u64) -> u64 {
        let oldest = self.links.values().filter_map(|l| l.held.records.first()).map(|r| r.seq).min();
        oldest.map_or(offset, |seq| offset.min(seq.saturating_sub(1)))
    }

    async fn send_held(&mut self, partition: Partition, last_seq: u64) {
        let endpoint = self.logic.endpoint().clone();
        let now = Instant::now();
        let (caps, retry_after) = (self.caps, self.retry_after);
        let sends = self.links.values_mut().filter_map(|link| {
            if link.held.records.is_empty() {
                return None;
            }
            if link.down_until.is_some_and(|t| now < t) {
                metrics::counter!("goim_job_push_held_total").increment(1);
                return None;
            }
            Some(link.send_held(&endpoint, partition, last_seq, caps, retry_after))
        });
        join_all(sends).await;
        self.forget_unreachable();
    }
}

impl Link {
    /// Sends everything held, in batches of at most `caps`; what a failed batch did not
    /// deliver stays held and the comet is left alone for `retry_after`.
    async fn send_held(
        &mut self,
        endpoint: &QuicEndpoint,
        partition: Partition,
        last_seq: u64,
        caps: Caps,
        retry_after: Duration,
    ) {
        let mut batches = split(self.held.take(), caps).into_iter().peekable();
        while let Some(records) = batches.next() {
            let end = match batches.peek() {
                Some(_) => records.last().map_or(last_seq, |r| r.seq),
                None => last_seq,
            };
            let batch = PushBatch { partition, records, last_seq: end };
            if let Err(e) = self.send_twice(endpoint, &batch).await {
                self.held.restore(batch.records.into_iter().chain(batches.flatten()).collect());
                self.down_until = Some(Instant::now() + retry_after);
                metrics::counter!("goim_job_push_failures_total").increment(1);
                warn!(comet = %self.info.id, error = %e, held = self.held.records.len(), "comet did not take a push batch; held for it");
                return;
            }
        }
        self.down_until = None;
    }

    async fn send_twice(&mut self, endpoint: &QuicEndpoint, batch: &PushBatch) -> Result<(), QuicError> {
        match self.send(endpoint, batch).await {
            Ok(()) => Ok(()),
            Err(_) => {
                self.stream = None;
                let second = self.send(endpoint, batch).await;
                if second.is_err() {
                    self.stream = None;
                }
                second
            }
        }
    }

    async fn send(&mut self, endpoint: &QuicEndpoint, batch: &PushBatch) -> Result<(), QuicError> {
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

/// Records one comet has not acked, in seq order, within `HELD_RECORDS` / `HELD_BYTES`.
#[derive(Default)]
struct Held {
    records: Vec<PushRecord>,
    bytes: usize,
}

impl Held {
    /// Adds the records among `records` that concern `comet` and come after what is held.
    fn add<'a>(&mut self, comet: &str, records: impl IntoIterator<Item = &'a PushRecord>) {
        let after = self.records.last().map(|r| r.seq);
        for r in records {
            if after.is_none_or(|s| r.seq > s) && r.target.concerns(comet) {
                self.bytes += r.body.len();
                self.records.push(r.clone());
            }
        }
        if self.records.len() > HELD_RECORDS || self.bytes > HELD_BYTES {
            metrics::counter!("goim_job_held_dropped_records_total").increment(self.records.len() as u64);
            warn!(
                comet,
                held = self.records.len(),
                bytes = self.bytes,
                "too much held for a comet that does not answer: dropped"
            );
            *self = Held::default();
        }
    }

    fn take(&mut self) -> Vec<PushRecord> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }

    fn restore(&mut self, records: Vec<PushRecord>) {
        self.bytes = records.iter().map(|r| r.body.len()).sum();
        self.records = records;
    }
}

/// The batches delivered in the last `RECENT_FOR`, within `RECENT_RECORDS` / `RECENT_BYTES`.
#[derive(Default)]
struct Recent {
    batches: VecDeque<(Instant, Arc<[PushRecord]>, usize)>,
    records: usize,
    bytes: usize,
}

impl Recent {
    fn add(&mut self, batch: Arc<[PushRecord]>) {
        let bytes = batch.iter().map(|r| r.body.len()).sum();
        self.records += batch.len();
        self.bytes += bytes;
        self.batches.push_back((Instant::now(), batch, bytes));
        while let Some((at, batch, bytes)) = self.batches.front() {
            if at.elapsed() < RECENT_FOR && self.records <= RECENT_RECORDS && self.bytes <= RECENT_BYTES {
                break;
            }
            self.records -= batch.len();
            self.bytes -= *bytes;
            self.batches.pop_front();
        }
    }

    fn room_records(&self) -> impl Iterator<Item = &PushRecord> {
        let fresh = self.batches.iter().filter(|(at, _, _)| at.elapsed() < RECENT_FOR);
        fresh.flat_map(|(_, batch, _)| batch.iter()).filter(|r| r.room_seq().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(seq: u64, target: PushTarget) -> PushRecord {
        PushRecord { partition: 0, seq, ts_ms: 0, target, op: 1000, body: Bytes::from_static(b"0123456789") }
    }

    fn room(seq: u64) -> PushRecord {
        rec(seq, PushTarget::Room { room: "live://1".into(), room_seq: seq })
    }

    fn keys(seq: u64, comet: &str) -> PushRecord {
        rec(seq, PushTarget::Keys { comet: comet.into(), keys: vec!["k".into()] })
    }

    fn seqs(records: &[PushRecord]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn held_keeps_what_concerns_the_comet_in_order_once() {
        let mut held = Held::default();
        let first = [room(1), keys(2, "c1"), keys(3, "c2"), room(4)];
        held.add("c1", first.iter());
        assert_eq!(seqs(&held.records), [1, 2, 4]);
        assert_eq!(held.bytes, 30);
        // A batch overlapping what is held adds only what comes after it.
        held.add("c1", [room(3), room(4), room(5)].iter());
        assert_eq!(seqs(&held.records), [1, 2, 4, 5]);
        let taken = held.take();
        assert_eq!((held.records.len(), held.bytes), (0, 0));
        held.restore(taken[2..].to_vec());
        assert_eq!((seqs(&held.records), held.bytes), (vec![4, 5], 20));
    }

    #[test]
    fn held_past_its_bound_is_dropped_whole() {
        let mut held = Held::default();
        let many: Vec<PushRecord> = (1..=HELD_RECORDS as u64 + 1).map(room).collect();
        held.add("c1", many.iter());
        assert!(held.records.is_empty());
        held.add("c1", [room(HELD_RECORDS as u64 + 2)].iter());
        assert_eq!(held.records.len(), 1, "holding starts again after a drop");
    }

    #[test]
    fn recent_hands_room_records_within_its_bounds() {
        let mut recent = Recent::default();
        recent.add(vec![room(1), keys(2, "c1"), room(3)].into());
        assert_eq!(recent.room_records().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
        let big: Vec<PushRecord> = (4..4 + RECENT_RECORDS as u64).map(room).collect();
        recent.add(big.into());
        assert_eq!(recent.records, RECENT_RECORDS, "the oldest batch went");
        assert_eq!(recent.room_records().next().map(|r| r.seq), Some(4));
    }
}
