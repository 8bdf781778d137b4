//! Group commit for client writes: concurrent `Cluster::write` calls are gathered into one
//! `Request::Batch` entry (cut by count and bytes), a few batches in flight at once, so
//! one Raft round and one fsync serve many writes. Under light load a batch holds one
//! write and nothing waits; under heavy load batches grow while earlier ones commit.
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cluster::Cluster;
use crate::command::{Reply, Request};
use crate::network::WriteError;

const MAX_BATCH: usize = 4096;
const MAX_BATCH_BYTES: usize = 256 << 10;

pub(crate) struct Pending {
    req: Request,
    reply: oneshot::Sender<Result<Reply, WriteError>>,
}

#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Proposer {
    pub(crate) fn new() -> (Proposer, mpsc::UnboundedReceiver<Pending>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Proposer { tx }, rx)
    }

    pub(crate) async fn propose(&self, req: Request) -> Result<Reply, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Pending { req, reply }).map_err(|_| WriteError::Fatal("proposer stopped".into()))?;
        rx.await.map_err(|_| WriteError::Fatal("proposer stopped".into()))?
    }
}

fn size_of(req: &Request) -> usize {
    match req {
        Request::Push(p) => 64 + p.body.len(),
        _ => 128,
    }
}

/// Runs until every `Proposer` handle is gone or the cluster is dropped.
/// `in_flight` batches are committing at most at once.
pub(crate) async fn run(cluster: Weak<Cluster>, mut rx: mpsc::UnboundedReceiver<Pending>, in_flight: usize) {
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
