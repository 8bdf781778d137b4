//! Group commit for client writes: concurrent `Cluster::write` calls are gathered into one
//! `Request::Batch` entry (cut by count and bytes), a few batches in flight at once, so
//! one Raft round and one fsync serve many writes. Under light load a batch holds one
//! write and nothing waits; under heavy load batches grow while earlier ones commit. The
//! queue is bounded: past `QUEUE` writes waiting, a write fails at once with
//! `WriteError::Busy` instead of growing memory and latency without limit.
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cluster::Cluster;
use crate::command::{Push, Reply, Request};
use crate::network::WriteError;

const MAX_BATCH: usize = 4096;
const MAX_BATCH_BYTES: usize = 256 << 10;
/// Writes waiting to be proposed, at most (16 full batches).
pub(crate) const QUEUE: usize = 16 * MAX_BATCH;

pub(crate) struct Pending {
    req: Request,
    reply: oneshot::Sender<Result<Reply, WriteError>>,
}

#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// A proposer queueing at most `capacity` writes.
    pub(crate) fn new(capacity: usize) -> (Proposer, mpsc::Receiver<Pending>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Proposer { tx }, rx)
    }

    pub(crate) async fn propose(&self, req: Request) -> Result<Reply, WriteError> {
        self.enqueue(req)?.await.map_err(|_| WriteError::Fatal("proposer stopped".into()))?
    }

    /// Queues `req`, or says at once that the queue is full.
    fn enqueue(&self, req: Request) -> Result<oneshot::Receiver<Result<Reply, WriteError>>, WriteError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Pending { req, reply }) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(WriteError::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriteError::Fatal("proposer stopped".into())),
        }
    }
}

/// About the bytes `req` adds to a batch entry, for the cut by `MAX_BATCH_BYTES`.
fn size_of(req: &Request) -> usize {
    let push = |p: &Push| 64 + p.body.len();
    match req {
        Request::Push(p) => push(p),
        Request::PushBatch(b) => b.0.iter().map(push).sum(),
        _ => 128,
    }
}

/// Runs until every `Proposer` handle is gone or the cluster is dropped.
/// `in_flight` batches are committing at most at once.
pub(crate) async fn run(cluster: Weak<Cluster>, mut rx: mpsc::Receiver<Pending>, in_flight: usize) {
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut queue: Vec<Pending> = Vec::new();
    loop {
        // Wait for a free slot first: writes keep queueing meanwhile, so batches grow with load.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        if queue.is_empty() && rx.recv_many(&mut queue, MAX_BATCH).await == 0 {
            return;
        }
        while queue.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => queue.push(p),
                Err(_) => break,
            }
        }
        let mut bytes = 0;
        let cut = queue
            .iter()
            .position(|p| {
                bytes += size_of(&p.req);
                bytes > MAX_BATCH_BYTES
            })
            .unwrap_or(queue.len())
            .max(1);
        let batch: Vec<Pending> = queue.drain(..cut).collect();
        let Some(cluster) = cluster.upgrade() else { return };
        tokio::spawn(async move {
            let (requests, replies): (Vec<Request>, Vec<_>) =
                batch.into_iter().map(|p| (p.req, p.reply)).unzip();
            let n = requests.len();
            match cluster.commit(Request::Batch(requests)).await {
                Ok(Reply::Batch(results)) if results.len() == n => {
                    for (tx, r) in replies.into_iter().zip(results) {
                        let _ = tx.send(Ok(r));
                    }
                }
                Ok(other) => {
                    let e = WriteError::Fatal(format!("unexpected batch reply {other:?}"));
                    for tx in replies {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for tx in replies {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Tick;

    #[test]
    fn a_full_queue_is_busy_at_once_and_a_stopped_one_fatal() {
        let (proposer, rx) = Proposer::new(2);
        let tick = || Request::Tick(Tick { now_ms: 0 });
        assert!(proposer.enqueue(tick()).is_ok());
        assert!(proposer.enqueue(tick()).is_ok());
        assert!(matches!(proposer.enqueue(tick()), Err(WriteError::Busy)));
        drop(rx);
        assert!(matches!(proposer.enqueue(tick()), Err(WriteError::Fatal(_))));
    }
}
