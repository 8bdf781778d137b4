//! The connection's write side, driven by its one task (`conn`): drains everything the
//! channel has queued into one coalesced write. It swaps queue buffers with the channel
//! rather than allocating one per wake-up, and lets its buffer go when the connection is
//! quiet. Write coalescing is what fan-out throughput hinges on (docs/ARCHITECTURE.md §9):
//! one write per message is twenty times slower.

use std::collections::VecDeque;
use std::time::Duration;

use super::channel::{Channel, Frame};
use super::transport::FrameSink;

/// How long a closing connection may take to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames a spare queue buffer may keep room for between wake-ups; a bigger one (after a
/// burst) is freed, so idle connections stay small.
const SPARE_KEEP: usize = 16;
/// A wake-up that took no more frames than this was a quiet one.
const IDLE_WAKE_UP: usize = 4;

pub struct Writer<W> {
    sink: W,
    frames: VecDeque<Frame>,
}

/// The write failed: the channel is closed.
#[derive(Debug)]
pub struct WriteFailed;

impl<W: FrameSink> Writer<W> {
    pub fn new(sink: W) -> Writer<W> {
        Writer { sink, frames: VecDeque::new() }
    }

    /// Writes everything queued on `ch` so far, in order, coalesced. Cancel-safe only in
    /// that a cancelled write is never resumed: cancel it only to close the connection.
    pub async fn drain(&mut self, ch: &Channel) -> Result<(), WriteFailed> {
        ch.take_into(&mut self.frames);
        if self.frames.is_empty() {
            return Ok(());
        }
        let busy = self.frames.len() > IDLE_WAKE_UP;
        if let Err(e) = self.sink.write_frames(&mut self.frames).await {
            tracing::debug!(key = %ch.key, conn = ch.conn, error = %e, "write failed");
            ch.close();
            return Err(WriteFailed);
        }
        self.frames.clear();
        if !busy || self.frames.capacity() > SPARE_KEEP {
            // A quiet connection (a reply now and then) keeps no spare buffer; a busy one
            // keeps a modest one to trade with the channel's queue.
            self.frames = VecDeque::new();
        }
        Ok(())
    }

    /// Writes `frame` alone (a refusal before any channel exists).
    pub async fn write_one(&mut self, frame: Frame) -> Result<(), WriteFailed> {
        let mut frames = [frame].into();
        self.sink.write_frames(&mut frames).await.map_err(|_| WriteFailed)
    }

    /// Ends the connection politely, within `CLOSE_TIMEOUT`.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.sink.close()).await;
    }
}
