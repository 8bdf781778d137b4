//! Batch formation: whatever the tail delivered while the previous batch was in flight is
//! sent together (so an idle job adds no latency and a busy one sends large batches), cut
//! at the configured record and byte caps. With a hold (`--job-batch-hold-ms`, goim's room
//! `signal`), a batch also waits out the hold since the previous one while pushes keep
//! coming: fewer, larger batches and one write per connection for several messages. A
//! batch is the unit comets aggregate room messages over (one op-9 frame per room per
//! batch).
use std::time::Instant;

use goim_net::rpc::PushRecord;
use tokio::sync::mpsc;

use super::JobConfig;

pub struct Pending {
    records: Vec<PushRecord>,
    bytes: usize,
}

impl Pending {
    pub fn new(first: Vec<PushRecord>) -> Pending {
        let mut p = Pending { records: Vec::new(), bytes: 0 };
        p.extend(first);
        p
    }

    pub fn extend(&mut self, more: Vec<PushRecord>) {
        self.bytes += more.iter().map(|r| r.body.len()).sum::<usize>();
        self.records.extend(more);
    }

    pub fn full(&self, cfg: &JobConfig) -> bool {
        self.records.len() >= cfg.batch_records || self.bytes >= cfg.batch_bytes
    }

    /// Adds what the tail delivers until `until`, the batch is full or the tail ends.
    pub async fn gather_until(
        &mut self,
        rx: &mut mpsc::Receiver<Vec<PushRecord>>,
        until: Instant,
        cfg: &JobConfig,
    ) {
        let deadline = tokio::time::sleep_until(until.into());
        tokio::pin!(deadline);
        while !self.full(cfg) {
            tokio::select! {
                () = &mut deadline => return,
                more = rx.recv() => match more {
                    Some(more) => self.extend(more),
                    None => return,
                },
            }
        }
    }

    /// Splits into batches of at most `batch_records` records and about `batch_bytes`
    /// body bytes (a single larger record still forms its own batch).
    pub fn into_batches(self, cfg: &JobConfig) -> Vec<Vec<PushRecord>> {
        split(self.records, Caps::of(cfg))
    }
}

/// The most records, and about the most body bytes, in one push batch.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub records: usize,
    pub bytes: usize,
}

impl Caps {
    /// The configured caps (`--job-batch-records`, `--job-batch-bytes`).
    pub fn of(cfg: &JobConfig) -> Caps {
        Caps { records: cfg.batch_records, bytes: cfg.batch_bytes }
    }
}

/// `records` in order, cut into batches within `caps` (a single larger record still forms
/// its own batch).
pub fn split(records: Vec<PushRecord>, caps: Caps) -> Vec<Vec<PushRecord>> {
    let mut out = Vec::new();
    let mut cur: Vec<PushRecord> = Vec::new();
    let mut bytes = 0;
    for r in records {
        if !cur.is_empty() && (cur.len() >= caps.records || bytes + r.body.len() > caps.bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += r.body.len();
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use goim_net::rpc::PushTarget;
    use std::time::Duration;

    fn rec(seq: u64, len: usize) -> PushRecord {
        PushRecord {
            partition: 0,
            seq,
            ts_ms: 0,
            target: PushTarget::All,
            op: 1000,
            body: vec![b'x'; len].into(),
        }
    }

    fn cfg(records: usize, bytes: usize) -> JobConfig {
        JobConfig {
            id: "j".into(),
            partition: 0,
            batch_records: records,
            batch_bytes: bytes,
            batch_hold: Duration::ZERO,
            lease_ttl: Duration::from_secs(1),
            comet_retry: Duration::from_secs(1),
        }
    }

    #[test]
    fn cuts_by_count_and_bytes_in_order() {
        let p = Pending::new((1..=10).map(|s| rec(s, 10)).collect());
        let batches = p.into_batches(&cfg(4, 1 << 20));
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let seqs: Vec<u64> = batches.concat().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());

        let p = Pending::new(vec![rec(1, 60), rec(2, 60), rec(3, 200), rec(4, 1)]);
        let sizes: Vec<usize> = p.into_batches(&cfg(100, 100)).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1]);
    }

    #[test]
    fn full_by_either_cap() {
        assert!(Pending::new(vec![rec(1, 1), rec(2, 1)]).full(&cfg(2, 100)));
        assert!(Pending::new(vec![rec(1, 100)]).full(&cfg(10, 100)));
        assert!(!Pending::new(vec![rec(1, 1)]).full(&cfg(10, 100)));
    }

    /// The hold gathers what arrives before its end, and stops early when the batch is
    /// full or the tail ends (virtual clock: nothing here depends on the machine's speed).
    #[tokio::test(start_paused = true)]
    async fn a_hold_gathers_until_its_end_or_a_full_batch() {
        let (tx, mut rx) = mpsc::channel(16);
        let producer = tokio::spawn(async move {
            for seq in 2..=40 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                if tx.send(vec![rec(seq, 10)]).await.is_err() {
                    return;
                }
            }
        });
        let start = tokio::time::Instant::now().into_std();
        let mut p = Pending::new(vec![rec(1, 10)]);
        p.gather_until(&mut rx, start + Duration::from_micros(10_500), &cfg(1000, 1 << 20)).await;
        let seqs: Vec<u64> = p.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "records up to the hold's end, in order");

        let mut p = Pending::new(vec![rec(0, 10)]);
        p.gather_until(&mut rx, start + Duration::from_secs(60), &cfg(5, 1 << 20)).await;
        assert_eq!(p.records.len(), 5, "a full batch does not wait the hold out");

        let mut p = Pending::new(vec![rec(0, 10)]);
        p.gather_until(&mut rx, start + Duration::from_secs(60), &cfg(1000, 1 << 20)).await;
        assert_eq!(p.records.last().map(|r| r.seq), Some(40), "an ended tail ends the hold");
        producer.await.expect("producer");
    }
}
