//! The per-connection writer task: waits for the channel's queue, then drains everything
//! queued into one coalesced write. It swaps queue buffers with the channel rather than
//! allocating one per wake-up, and lets its buffer go when the connection is quiet. Write
//! coalescing is what fan-out throughput hinges on (docs/ARCHITECTURE.md §9): one write
//! per message is twenty times slower. A `finish`ed channel is closed once its last words
//! are written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::channel::Channel;
use super::transport::FrameSink;

/// How long a closing connection may take to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames a spare queue buffer may keep room for between wake-ups; a bigger one (after a
/// burst) is freed, so idle connections stay small.
const SPARE_KEEP: usize = 16;
/// A wake-up that took no more frames than this was a quiet one.
const IDLE_WAKE_UP: usize = 4;

/// Runs until the channel closes or a write fails (which closes the channel).
pub async fn run<W: FrameSink>(ch: Arc<Channel>, mut sink: W) {
    let mut frames = VecDeque::new();
    loop {
        tokio::select! {
            biased;
            _ = ch.closed() => break,
            _ = ch.ready() => {}
        }
        ch.take_into(&mut frames);
        if !frames.is_empty() {
            let busy = frames.len() > IDLE_WAKE_UP;
            tokio::select! {
                biased;
                _ = ch.closed() => break,
                written = sink.write_frames(&mut frames) => if let Err(e) = written {
                    tracing::debug!(key = %ch.key, conn = ch.conn, error = %e, "write failed");
                    ch.close();
                    break;
                }
            }
            frames.clear();
            if !busy || frames.capacity() > SPARE_KEEP {
                // A quiet connection (a reply now and then) keeps no spare buffer; a busy
                // one keeps a modest one to trade with the channel's queue.
                frames = VecDeque::new();
            }
        }
        if ch.finished() {
            ch.close();
            break;
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}
