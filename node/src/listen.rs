//! The listening sockets clients reach (comet TCP and WebSocket, HTTP) share one way of
//! binding (a deep listen backlog, so a connect burst is not dropped by the kernel) and one
//! accept loop: it hands each connection to its listener's admission, backs off when the
//! process is out of file descriptors (100 ms, doubling to 1 s) so existing clients keep
//! being served, and logs accept failures at most once per interval. Connections refused
//! by an admission get a short last word (an error in the listener's own protocol), are
//! drained briefly so the client can read it, and closed — in a bounded number of tasks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use goim_net::LogEvery;

/// Pending connections a listener queues by default.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// First pause after an accept failed for lack of resources; it doubles up to the max.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept failures (and refusals) are logged at most this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Refused connections being answered at once, per listener group (the comet's, HTTP's);
/// past that they are closed without a word.
const REFUSING_MAX: usize = 32;
/// How long a refused connection may take to get its last word and be drained.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes read from a refused connection (its request or auth) before closing.
const REFUSE_DRAIN: usize = 16 * 1024;

/// Binds a TCP listener with `backlog` pending connections (the kernel caps it at
/// `net.core.somaxconn`).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog.max(1))
}

/// The process's soft limit on open files (from /proc/self/limits), if known.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

fn as_usize(open_files: u64) -> usize {
    usize::try_from(open_files).unwrap_or(usize::MAX)
}

/// HTTP connections the node serves at once: `--http-max-connections`, but at most a
/// quarter of the open-file limit.
pub fn http_share(open_files: Option<u64>, http_max_connections: usize) -> usize {
    match open_files {
        Some(limit) => http_max_connections.min((as_usize(limit) / 4).max(1)),
        None => http_max_connections,
    }
}

/// Client connections a comet may hold when `--max-connections` is 0: what the open-file
/// limit leaves after HTTP's share, the refusals being answered, and a reserve for the
/// node itself (Raft, QUIC, sled, logs: an eighth, 64 to 1024 descriptors), so clients
/// alone cannot exhaust it and /health, Raft and existing clients keep working at the cap.
/// 0 (no cap of its own) when the limit is unknown.
pub fn auto_max_connections(open_files: Option<u64>, http_max_connections: usize) -> usize {
    let Some(limit) = open_files.map(as_usize) else {
        return 0;
    };
    let reserve = (limit / 8).clamp(64, 1024) + 2 * REFUSING_MAX;
    limit.saturating_sub(http_share(open_files, http_max_connections)).saturating_sub(reserve).max(1)
}

/// Accept errors that mean the process or system ran out of something (descriptors,
/// buffers): retrying at once would spin.
fn out_of_resources(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accepts on `listener` until `shutdown`, passing each connection to `admit`.
pub async fn accept_loop<F>(
    listener: TcpListener,
    name: &'static str,
    shutdown: CancellationToken,
    mut admit: F,
) where
    F: FnMut(TcpStream, SocketAddr),
{
    let log = LogEvery::new(LOG_INTERVAL);
    let mut backoff: Option<Duration> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = None;
                admit(stream, peer);
            }
            Err(e) => {
                metrics::counter!("goim_accept_errors_total", "listener" => name).increment(1);
                let pause = out_of_resources(&e)
                    .then(|| backoff.map_or(BACKOFF_MIN, |b| b.saturating_mul(2).min(BACKOFF_MAX)));
                if let Some(suppressed) = log.allow() {
                    tracing::warn!(listener = name, error = %e, suppressed, backoff_ms = pause.map_or(0, |p| p.as_millis() as u64),
                        "accept failed (at most one line per {}s; existing connections are still served)", LOG_INTERVAL.as_secs());
                }
                if let Some(pause) = pause {
                    backoff = Some(pause);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

/// Answers refused connections: writes their last word, half-closes, reads what the
/// client already sent (so closing does not reset the connection before the client read
/// the answer), then closes. At most `REFUSING_MAX` at once.
#[derive(Clone)]
pub struct Refuser {
    slots: Arc<Semaphore>,
}

impl Default for Refuser {
    fn default() -> Self {
        Refuser { slots: Arc::new(Semaphore::new(REFUSING_MAX)) }
    }
}

impl Refuser {
    pub fn refuse(&self, mut stream: TcpStream, last_word: Bytes) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return; // dropped: closed without a word
        };
        tokio::spawn(async move {
            let goodbye = async {
                stream.write_all(&last_word).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 2048];
                let mut drained = 0;
                while drained < REFUSE_DRAIN {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        n => drained += n,
                    }
                }
                io::Result::Ok(())
            };
            let _ = tokio::time::timeout(REFUSE_TIMEOUT, goodbye).await;
            drop(slot);
        });
    }
}

/// Logs a refused connection, at most once per interval per `log` (callers count it).
pub fn note_refusal(log: &LogEvery, listener: &'static str, reason: &'static str, peer: SocketAddr) {
    if let Some(suppressed) = log.allow() {
        tracing::warn!(listener, reason, %peer, suppressed,
            "connection refused (at most one line per {}s)", LOG_INTERVAL.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_cap_leaves_room_for_http_and_the_node() {
        assert_eq!(auto_max_connections(Some(20_000), 1024), 20_000 - 1024 - 1024 - 64);
        assert_eq!(auto_max_connections(Some(512), 1024), 512 - 128 - 64 - 64);
        assert_eq!(auto_max_connections(Some(100), 1024), 1);
        assert_eq!(auto_max_connections(None, 1024), 0);
        assert_eq!(http_share(Some(512), 1024), 128);
        assert_eq!(http_share(Some(20_000), 1024), 1024);
        assert_eq!(http_share(None, 1024), 1024);
        assert!(open_files_limit().is_some_and(|l| l > 0));
    }

    #[tokio::test]
    async fn refused_connections_read_their_last_word() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let refuser = Refuser::default();
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(listener, "test", shutdown.clone(), move |stream, _| {
            refuser.refuse(stream, Bytes::from_static(b"no room"));
        }));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&[7u8; 5000]).await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"no room");
        shutdown.cancel();
    }
}
