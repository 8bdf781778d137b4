//! `Service::Tail`: streams the push log to a job from any logic node (followers too): the
//! records already applied from `from_seq` on, then new ones as they are applied. The job
//! ends the stream by closing its side. A node that has known no leader for a while (cut
//! off, or removed from the cluster) ends its streams: its log stopped growing, and the job
//! must tail another node rather than wait on it.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use goim_net::quic::{read_frame, write_frame, BiStream, QuicError, StreamHandler};
use goim_net::rpc::tail::{TailBatch, TailRequest};
use goim_storage::tables::pushlog;
use goim_storage::{off_the_async_threads, StorageError};
use tracing::debug;

use super::Logic;

/// Most records per frame regardless of what the job asks (bounds frame size).
const MAX_BATCH: u32 = 4096;
/// How long a node may know no leader and still serve tails (an election takes well under).
const LEADERLESS_GRACE: Duration = Duration::from_secs(2);
/// How often an idle stream checks for that.
const IDLE_CHECK: Duration = Duration::from_millis(500);

pub struct TailService(pub Arc<Logic>);

impl StreamHandler for TailService {
    fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let peer = stream.peer;
            if let Err(e) = self.0.tail(stream).await {
                debug!(%peer, error = %e, "tail stream ended");
            }
        })
    }
}

impl Logic {
    async fn tail(&self, mut stream: BiStream) -> Result<(), QuicError> {
        let req: TailRequest = match read_frame(&mut stream.recv).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                metrics::counter!("goim_quic_bad_frames_total", "service" => "tail").increment(1);
                return Err(e);
            }
        };
        let view = &self.cluster.view;
        let mut changes = view.push_changes();
        let mut from = req.from_seq.max(1);
        let max = req.max_batch.clamp(1, MAX_BATCH) as usize;
        let mut closed = [0u8; 1];
        let mut leaderless_since: Option<Instant> = None;
        loop {
            match self.cluster.leader() {
                Some(_) => leaderless_since = None,
                None if leaderless_since.get_or_insert_with(Instant::now).elapsed() > LEADERLESS_GRACE => {
                    debug!(peer = %stream.peer, "no leader known: ending the tail stream");
                    let _ = stream.send.finish();
                    return Ok(());
                }
                None => {}
            }
            changes.borrow_and_update();
            // Off the runtime's threads: a sled read can wait out a disk stall (ARCHITECTURE.md
            // §8), and the Raft core shares these threads.
            let (first_seq, records) = off_the_async_threads(|| {
                let first_seq = pushlog::head(view, req.partition)?.first_seq;
                Ok::<_, StorageError>((
                    first_seq,
                    pushlog::range(view, req.partition, from.max(first_seq), max)?,
                ))
            })
            .map_err(|e| QuicError::Io(std::io::Error::other(e)))?;
            if from < first_seq {
                write_frame(&mut stream.send, &TailBatch::Trimmed { first_seq }).await?;
                from = first_seq;
            }
            if let Some(last) = records.last() {
                from = last.seq + 1;
                write_frame(&mut stream.send, &TailBatch::Records(records)).await?;
                continue;
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return Ok(()) },
                // The job never writes after its request: any read result means it is gone.
                _ = stream.recv.read(&mut closed) => return Ok(()),
                _ = tokio::time::sleep(IDLE_CHECK) => {}
            }
        }
    }
}
