//! TCP transport glue: serving an admitted connection, a packet source that decodes goim
//! packets from the stream (its read buffer exists only while bytes are in flight, so idle
//! connections stay small), and a sink that writes a wake-up's frames with one `write()`
//! through a per-thread scratch buffer (a lone frame straight from its shared bytes).

use std::cell::RefCell;
use std::collections::vec_deque::Drain;
use std::collections::VecDeque;
use std::io;
use std::iter::Peekable;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use goim_net::packet::{decode, op, Packet, PacketError};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::admission::{Admitted, Refused};
use super::channel::Frame;
use super::transport::{FrameSink, PacketSource, ReadError};
use super::{conn, Comet};

/// Room made for each socket read.
const READ_CHUNK: usize = 4096;
/// Packet bodies up to this size are copied out of the read buffer (see `next_packet`).
const OWN_BODY_UP_TO: usize = 1024;

/// Serves an admitted connection in its own task (`conn::serve`); its place in the
/// comet's counts is given back when it ends.
pub fn serve(comet: Arc<Comet>, stream: TcpStream, peer: SocketAddr, admitted: Admitted) {
    let deadline = Instant::now() + comet.config().handshake_timeout;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let source = TcpSource::new(read, comet.config().max_body);
    tokio::spawn(conn::serve(comet, peer, deadline, source, TcpSink(write), admitted));
}

/// What a refused TCP client reads: an op-8 reply with `{"error":"…"}` (docs/PROTOCOL.md §2,
/// shaped as a refused auth), before the connection closes.
pub fn refusal(refused: Refused) -> Bytes {
    Packet::new(op::AUTH_REPLY, 0, conn::error_body(refused.message())).to_bytes()
}

pub struct TcpSource {
    half: OwnedReadHalf,
    buf: BytesMut,
    max_body: usize,
}

impl TcpSource {
    pub fn new(half: OwnedReadHalf, max_body: usize) -> TcpSource {
        TcpSource { half, buf: BytesMut::new(), max_body }
    }
}

fn violation(err: PacketError) -> ReadError {
    match err {
        PacketError::Io(e) => ReadError::Transport(e.to_string()),
        other => ReadError::Violation(other.to_string()),
    }
}

thread_local! {
    /// Where a socket read lands first: one buffer per runtime thread, so a waiting
    /// connection holds no read buffer.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl TcpSource {
    /// Reads what the socket has into `buf` (through the thread's read buffer); the
    /// number of bytes, 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let (half, buf) = (&mut self.half, &mut self.buf);
        READ_BUF.with_borrow_mut(|scratch| {
            if scratch.len() < READ_CHUNK {
                scratch.resize(READ_CHUNK, 0);
            }
            let mut read = ReadBuf::new(scratch);
            ready!(Pin::new(half).poll_read(cx, &mut read))?;
            buf.extend_from_slice(read.filled());
            Poll::Ready(Ok(read.filled().len()))
        })
    }
}

impl PacketSource for TcpSource {
    const TRANSPORT: &'static str = "tcp";

    fn poll_packet(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Packet>, ReadError>> {
        loop {
            if let Some(mut packet) = decode(&mut self.buf, self.max_body).map_err(violation)? {
                if self.buf.is_empty() && packet.body.len() <= OWN_BODY_UP_TO {
                    // The body shares the read buffer's allocation: a small one gets its
                    // own, so the buffer goes now, not when the packet does (an auth
                    // packet is kept for the whole handshake).
                    packet.body = Bytes::copy_from_slice(&packet.body);
                    self.buf = BytesMut::new();
                }
                return Poll::Ready(Ok(Some(packet)));
            }
            if self.buf.is_empty() {
                // Nothing pending: let the buffer go while the connection idles.
                self.buf = BytesMut::new();
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if self.buf.is_empty() => return Poll::Ready(Ok(None)),
                Ok(0) => {
                    let have = self.buf.len();
                    return Poll::Ready(Err(ReadError::Violation(format!(
                        "connection closed inside a packet ({have} bytes pending)"
                    ))));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(ReadError::Transport(e.to_string()))),
            }
        }
    }
}

pub struct TcpSink(pub OwnedWriteHalf);

/// Most bytes coalesced into one `write()`.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where a wake-up's frames are coalesced: one buffer per runtime thread, not per
    /// connection, so an idle connection holds no write buffer at all.
    static SCRATCH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl TcpSink {
    /// Writes `bytes` (refcounted, never copied): straight away when the socket takes
    /// them, else the rest once it is writable.
    async fn write_shared(&mut self, bytes: &Bytes) -> io::Result<()> {
        let written = match self.0.try_write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        match bytes.get(written..) {
            Some(rest) if !rest.is_empty() => self.0.write_all(rest).await,
            _ => Ok(()),
        }
    }

    /// Copies frames from `frames` into the thread's scratch buffer (up to `SCRATCH`
    /// bytes) and writes it with one `write()`; what the socket did not take is returned
    /// (to be written once it is writable: the only allocation, and only then).
    fn write_coalesced(&self, frames: &mut Peekable<Drain<'_, Frame>>) -> io::Result<Option<Vec<u8>>> {
        SCRATCH_BUF.with_borrow_mut(|buf| {
            buf.clear();
            while let Some(frame) = frames.next_if(|f| buf.is_empty() || buf.len() + f.tcp_len() <= SCRATCH) {
                buf.extend_from_slice(frame.tcp_slice());
            }
            let written = match self.0.try_write(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            let rest = buf.get(written..).filter(|rest| !rest.is_empty()).map(<[u8]>::to_vec);
            if buf.capacity() > 2 * SCRATCH {
                *buf = Vec::new(); // one huge frame passed through: do not keep its room
            }
            Ok(rest)
        })
    }
}

impl FrameSink for TcpSink {
    async fn write_frames(&mut self, frames: &mut VecDeque<Frame>) -> io::Result<()> {
        let mut frames = frames.drain(..).peekable();
        while let Some(next) = frames.peek() {
            let alone = next.tcp_len() >= SCRATCH / 2;
            if alone || frames.len() == 1 {
                if let Some(frame) = frames.next() {
                    self.write_shared(&frame.tcp_bytes()).await?;
                }
                continue;
            }
            if let Some(rest) = self.write_coalesced(&mut frames)? {
                self.0.write_all(&rest).await?;
            }
        }
        Ok(())
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Frame, FrameSink, TcpSink};
    use crate::comet::testkit::{auth, Cluster};
    use bytes::Bytes;
    use std::collections::VecDeque;
    use tokio::io::AsyncReadExt;

    /// Frames of every size (a few bytes to past the scratch buffer), many more bytes than
    /// the socket buffers hold, arrive whole and in order while the reader lags.
    #[tokio::test]
    async fn coalesced_writes_survive_a_full_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        let mut sink = TcpSink(write);
        let mut expected = Vec::new();
        let mut batches = Vec::new();
        for round in 0..40u32 {
            let mut frames = VecDeque::new();
            for i in 0..(1 + round % 7) {
                let len = [3usize, 100, 5_000, 40_000, 70_000][((round + i) % 5) as usize];
                let fill = u8::try_from((round * 7 + i) % 251).unwrap();
                let bytes = Bytes::from(vec![fill; len]);
                expected.extend_from_slice(&bytes);
                frames.push_back(Frame::Packet(bytes));
            }
            batches.push(frames);
        }
        let total = expected.len();
        let writer = tokio::spawn(async move {
            for mut frames in batches {
                sink.write_frames(&mut frames).await.unwrap();
                assert!(frames.is_empty());
            }
        });
        let mut got = Vec::with_capacity(total);
        let mut client = client;
        let mut chunk = vec![0u8; 7_000];
        while got.len() < total {
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early at {}", got.len());
            got.extend_from_slice(&chunk[..n]);
            if got.len() % 3 == 0 {
                tokio::task::yield_now().await;
            }
        }
        writer.await.unwrap();
        assert!(got == expected, "bytes differ ({} of {total})", got.len());
    }

    use goim_net::packet::{op, Packet};
    use std::time::Duration;

    #[tokio::test]
    async fn packets_split_across_and_sharing_reads() {
        let cluster = Cluster::start().await;
        let mut client = cluster.client(false).await;
        client.auth(&auth(1, "", &[])).await.unwrap();
        let mut wire = Packet::new(op::SUB, 5, "1000").to_bytes().to_vec();
        wire.extend_from_slice(&Packet::new(op::UNSUB, 6, "1000").to_bytes());
        client.send_raw(&wire[..7]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.send_raw(&wire[7..]).await.unwrap();
        let wait = Duration::from_secs(2);
        let first = client.recv_timeout(wait).await.unwrap().unwrap();
        assert_eq!(first, Packet::new(op::SUB_REPLY, 5, "1000"));
        let second = client.recv_timeout(wait).await.unwrap().unwrap();
        assert_eq!(second, Packet::new(op::UNSUB_REPLY, 6, "1000"));
    }
}
