//! One subscriber socket: bound to its source address (so a run can hold more sockets
//! than one address has ports), connected, then read into the process's one scratch
//! buffer and handed to its protocol, with a heartbeat on a timer. Connects and
//! handshakes in flight are bounded per process so a 19,000-socket start does not
//! overflow the server's accept backlog or handshake timeout.
use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::protocol::Protocol;
use super::stats::Stats;
use crate::stamp;

/// Bytes one read takes at most (shared by every socket of the process).
const SCRATCH: usize = 64 * 1024;
/// Reads one socket gets per wake-up before the others get their turn.
const READS_PER_WAKE: usize = 8;
/// Connect attempts before a socket counts as failed.
const CONNECT_ATTEMPTS: u32 = 5;
/// Time from the first connect attempt to subscribed before a socket counts as failed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(60);

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

pub struct Socket {
    pub source: Ipv4Addr,
    pub target: SocketAddr,
    pub heartbeat: Duration,
    /// Delay before the first heartbeat (spreads them over the interval).
    pub first_heartbeat: Duration,
}

/// Runs one subscriber until it ends; counts it in `stats` either way.
pub async fn run(socket: Socket, mut proto: impl Protocol, stats: Rc<Stats>, handshakes: Rc<Semaphore>) {
    let permit = handshakes.acquire().await;
    let mut permit = permit.ok();
    let started = Instant::now();
    let result: Result<(), String> = async {
        let mut stream = connect(socket.source, socket.target).await?;
        let mut out = Vec::with_capacity(256);
        proto.opening(&mut out);
        stream.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        out.clear();
        let heartbeat = tokio::time::sleep(socket.first_heartbeat);
        let subscribe_by = tokio::time::sleep_until(started + SUBSCRIBE_TIMEOUT);
        tokio::pin!(heartbeat, subscribe_by);
        loop {
            let mut beat = false;
            tokio::select! {
                read = std::future::poll_fn(|cx| poll_read_some(cx, &mut stream, &mut proto, &stats, &mut out)) => read?,
                _ = &mut heartbeat => beat = true,
                _ = &mut subscribe_by, if permit.is_some() => {
                    return Err("not subscribed within 60 s".to_string());
                }
            }
            if beat {
                if proto.subscribed() {
                    proto.heartbeat(&mut out);
                }
                heartbeat.as_mut().reset(Instant::now() + socket.heartbeat);
            }
            if permit.is_some() && proto.subscribed() {
                permit = None;
            }
            if !out.is_empty() {
                stream.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
                out.clear();
            }
        }
    }
    .await;
    if let Err(reason) = result {
        stats.ended(proto.subscribed(), reason);
    }
}

/// Reads what is there (up to a few buffers) into the shared scratch buffer and hands it
/// to the protocol; pending until there is something. Through `poll_read`, a read shorter
/// than the buffer tells tokio the socket is drained, so a wake-up costs one `read()`.
fn poll_read_some(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    proto: &mut impl Protocol,
    stats: &Stats,
    out: &mut Vec<u8>,
) -> Poll<Result<(), String>> {
    SCRATCH_BUF.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        for reads in 0..READS_PER_WAKE {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Err("closed by the server".to_string()))
                }
                Poll::Ready(Ok(())) => {
                    let (n, full) = (buf.filled().len(), buf.remaining() == 0);
                    proto.on_bytes(&scratch[..n], stamp::now_ns(), stats, out)?;
                    if !full {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("read: {e}"))),
                Poll::Pending if reads == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(())),
            }
        }
        Poll::Ready(Ok(()))
    })
}

/// Connects from `source` (any port) to `target`, retrying refusals and address
/// exhaustion a few times.
async fn connect(source: Ipv4Addr, target: SocketAddr) -> Result<TcpStream, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tried = async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source.into(), 0))?;
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        }
        .await;
        match tried {
            Ok(stream) => return Ok(stream),
            Err(e) if attempt >= CONNECT_ATTEMPTS => return Err(format!("connect {source} → {target}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await,
        }
    }
}
