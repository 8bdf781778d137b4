//! TCP transport glue: serving an admitted connection, a packet source that decodes goim
//! packets from the stream (its read buffer exists only while bytes are in flight, so idle
//! connections stay small), and a sink that writes every queued frame with one `write_all`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use goim_net::packet::{decode, op, Packet, PacketError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::admission::{Admitted, Refused};
use super::channel::Frame;
use super::transport::{FrameSink, PacketSource, ReadError};
use super::{conn, Comet};

/// Room made for each socket read.
const READ_CHUNK: usize = 4096;

/// Serves an admitted connection in its own task (`conn::serve`); its place in the
/// comet's counts is given back when it ends.
pub fn serve(comet: Arc<Comet>, stream: TcpStream, peer: SocketAddr, admitted: Admitted) {
    let deadline = Instant::now() + comet.config().handshake_timeout;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let source = TcpSource::new(read, comet.config().max_body);
    tokio::spawn(async move {
        conn::serve(comet, peer, deadline, source, TcpSink(write)).await;
        drop(admitted);
    });
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

impl PacketSource for TcpSource {
    const TRANSPORT: &'static str = "tcp";

    async fn next_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        loop {
            if let Some(packet) = decode(&mut self.buf, self.max_body).map_err(violation)? {
                return Ok(Some(packet));
            }
            if self.buf.is_empty() {
                // Nothing pending: let the buffer go while the connection idles.
                self.buf = BytesMut::new();
            }
            self.half.readable().await.map_err(|e| ReadError::Transport(e.to_string()))?;
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            match self.half.try_read_buf(&mut self.buf) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    let have = self.buf.len();
                    return Err(ReadError::Violation(format!(
                        "connection closed inside a packet ({have} bytes pending)"
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ReadError::Transport(e.to_string())),
            }
        }
    }
}

pub struct TcpSink(pub OwnedWriteHalf);

impl FrameSink for TcpSink {
    async fn write_frames(&mut self, frames: VecDeque<Frame>) -> io::Result<()> {
        let parts: Vec<_> = frames.iter().map(Frame::tcp_bytes).collect();
        if let [only] = parts.as_slice() {
            return self.0.write_all(only).await;
        }
        let mut buf = Vec::with_capacity(parts.iter().map(|b| b.len()).sum());
        for part in &parts {
            buf.extend_from_slice(part);
        }
        self.0.write_all(&buf).await
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use crate::comet::testkit::{auth, Cluster};
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
