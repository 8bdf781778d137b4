//! The two halves every client transport provides to the protocol state machine: a source
//! of decoded packets and a sink for pre-encoded frames. TCP and WebSocket implement them;
//! `conn` and `writer` are written once against these traits.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::task::{Context, Poll};

use goim_net::packet::Packet;

use super::channel::Frame;
use goim_net::LogEvery;

/// Why reading stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client broke the wire protocol (bad header, packLen bounds, junk message):
    /// the connection is closed and `goim_comet_bad_frames_total` counts it.
    #[error("protocol violation: {0}")]
    Violation(String),
    /// The socket failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The client sent something faster than it may (WebSocket control frames): the
    /// connection is closed and `goim_comet_flood_closed_total` counts it.
    #[error("flood: {0}")]
    Flood(&'static str),
}

pub trait PacketSource: Send + 'static {
    /// The `transport` metrics label.
    const TRANSPORT: &'static str;

    /// Polls for the next packet; `Ok(None)` when the client closed cleanly. Input read
    /// so far is kept in `self`, so a waiting connection holds no read future: it polls
    /// this afresh on each wake-up.
    fn poll_packet(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Packet>, ReadError>>;

    /// The next packet, as a future (cancel-safe).
    fn next_packet(&mut self) -> impl Future<Output = Result<Option<Packet>, ReadError>> + Send {
        poll_fn(move |cx| self.poll_packet(cx))
    }
}

pub trait FrameSink: Send + 'static {
    /// Writes every frame, in order, coalesced into as few socket writes as possible, and
    /// leaves `frames` empty (its capacity is the caller's to reuse).
    fn write_frames(&mut self, frames: &mut VecDeque<Frame>) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends the connection politely (TCP: FIN; WebSocket: a close frame).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Floods closed are logged at most this often.
static FLOOD_LOG: LogEvery = LogEvery::new(crate::listen::LOG_INTERVAL);

/// Counts and logs a read error.
pub fn note_read_error(transport: &'static str, err: &ReadError) {
    match err {
        ReadError::Violation(why) => {
            metrics::counter!("goim_comet_bad_frames_total", "transport" => transport).increment(1);
            tracing::debug!(transport, %why, "closing on a protocol violation");
        }
        ReadError::Transport(why) => tracing::debug!(transport, %why, "read failed"),
        ReadError::Flood(why) => {
            metrics::counter!("goim_comet_flood_closed_total", "transport" => transport, "reason" => *why)
                .increment(1);
            if let Some(suppressed) = FLOOD_LOG.allow() {
                tracing::warn!(transport, %why, suppressed, "closing a flooding connection (at most one line per 5s)");
            }
        }
    }
}
