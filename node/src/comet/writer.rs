//! The per-connection writer task: waits for the channel's queue, then drains everything
//! queued into one coalesced write. Write coalescing is what fanout throughput hinges on
//! (docs/ARCHITECTURE.md §9): one write per message is twenty times slower. A `finish`ed channel is
//! closed once its last words are written.

use std::sync::Arc;
use std::time::Duration;

use super::channel::Channel;
use super::transport::FrameSink;

/// How long a closing connection may take to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs until the channel closes or a write fails (which closes the channel).
pub async fn run<W: FrameSink>(ch: Arc<Channel>, mut sink: W) {
    loop {
        tokio::select! {
            biased;
            _ = ch.closed() => break,
            _ = ch.ready() => {}
        }
        let frames = ch.take_all();
        if !frames.is_empty() {
            tokio::select! {
                biased;
                _ = ch.closed() => break,
                written = sink.write_frames(frames) => if let Err(e) = written {
                    tracing::debug!(key = %ch.key, conn = ch.conn, error = %e, "write failed");
                    ch.close();
                    break;
                }
            }
        }
        if ch.finished() {
            ch.close();
            break;
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}
