//! Reads a tail stream from a logic node into a channel, so the deliverer can gather
//! whatever arrived while it was busy. Ends (dropping the sender) when the stream fails.
use std::sync::Arc;

use goim_net::quic::{read_frame, write_frame, QuicError};
use goim_net::rpc::logic_client::LogicClient;
use goim_net::rpc::record::Partition;
use goim_net::rpc::tail::{TailBatch, TailRequest};
use goim_net::rpc::{PushRecord, Service};
use tokio::sync::mpsc;
use tracing::{debug, warn};

const MAX_BATCH: u32 = 4096;

pub async fn read(
    logic: Arc<LogicClient>,
    partition: Partition,
    from_seq: u64,
    tx: mpsc::Sender<Vec<PushRecord>>,
) {
    let Some(addr) = logic.current_addr().map(String::from) else {
        return;
    };
    match stream(&logic, &addr, partition, from_seq, &tx).await {
        Ok(()) => debug!(%addr, "tail stream finished by logic"),
        Err(e) => debug!(%addr, error = %e, "tail stream ended"),
    }
    // The next tail goes elsewhere, unless another call has moved on already.
    logic.fail_over_from(&addr);
}

async fn stream(
    logic: &LogicClient,
    addr: &str,
    partition: Partition,
    mut next: u64,
    tx: &mpsc::Sender<Vec<PushRecord>>,
) -> Result<(), QuicError> {
    let (mut send, mut recv) = logic.endpoint().open(addr, Service::Tail).await?;
    write_frame(&mut send, &TailRequest { partition, from_seq: next, max_batch: MAX_BATCH }).await?;
    while let Some(batch) = read_frame::<TailBatch>(&mut recv).await? {
        match batch {
            TailBatch::Records(records) => {
                // Guard against a misbehaving server: only the next seqs, in order.
                let records: Vec<PushRecord> = records.into_iter().filter(|r| r.seq >= next).collect();
                if let Some(last) = records.last() {
                    next = last.seq + 1;
                    if tx.send(records).await.is_err() {
                        return Ok(());
                    }
                }
            }
            TailBatch::Trimmed { first_seq } => {
                metrics::counter!("goim_job_trimmed_gap_total").increment(1);
                warn!(from = next, first_seq, "push log trimmed past the committed offset; records skipped");
                next = first_seq;
            }
        }
    }
    Ok(())
}
