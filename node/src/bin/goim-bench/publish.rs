//! The publisher side of a run, in the parent process: goim gets room pushes through its
//! HTTP API from a few keep-alive workers (each push acknowledged once committed), NATS
//! gets `PUB`s on one connection, confirmed at the end by a PING's PONG. Both follow the
//! same schedule: open loop (`--rate 0`: as fast as the system takes them for the whole
//! time) or a fixed total rate, every body stamped with its send time.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::http1::Http1;
use crate::stamp;
use crate::worker::nats_stream::{NatsEvent, NatsStream};
use crate::worker::BENCH_OP;

/// When pushes go out.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Pushes per second in all (0: open loop).
    pub rate: u32,
    pub seconds: u64,
    pub body: usize,
}

impl Schedule {
    /// When push `k` is due (None: past the end); open loop: now, until the end.
    fn due(&self, start: Instant, k: u64) -> Option<Instant> {
        let end = start + Duration::from_secs(self.seconds);
        let at = match self.rate {
            0 => Instant::now(),
            r => start + Duration::from_secs_f64(k as f64 / f64::from(r)),
        };
        (at < end).then_some(at)
    }
}

/// What the publisher did.
#[derive(Debug, Default)]
pub struct Published {
    /// Pushes sent, and confirmed (goim: committed; NATS: processed before the final PONG).
    pub sent: u64,
    pub acked: u64,
    /// When the first push left, when the last one was sent (goim: acknowledged), and
    /// when the publisher finished (NATS: its final PONG) (wall ns).
    pub first_ns: u64,
    pub last_ns: u64,
    pub done_ns: u64,
    pub errors: Vec<String>,
}

fn note(errors: &mut Vec<String>, e: String) {
    if errors.len() < 5 && !errors.contains(&e) {
        errors.push(e);
    }
}

/// Room pushes to `live://<room>` through `workers` keep-alive HTTP connections.
/// `acked` counts as they are acknowledged (for the progress bar).
pub async fn goim(
    http: SocketAddr,
    room: &str,
    schedule: Schedule,
    workers: usize,
    acked: Arc<AtomicU64>,
) -> Published {
    let path = format!("/goim/push/room?operation={BENCH_OP}&type=live&room={room}");
    let start = Instant::now();
    let first_ns = stamp::now_ns();
    let mut tasks = tokio::task::JoinSet::new();
    let workers = workers.max(1) as u64;
    for w in 0..workers {
        let (path, acked) = (path.clone(), acked.clone());
        tasks.spawn(async move {
            let mut done = Published::default();
            let mut conn: Option<Http1> = None;
            let mut body = Vec::with_capacity(schedule.body);
            let mut k = w;
            while let Some(due) = schedule.due(start, k) {
                if schedule.rate > 0 {
                    tokio::time::sleep_until(due).await;
                }
                k += workers;
                if conn.as_ref().is_none_or(|c| c.closed) {
                    match Http1::connect(http).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            note(&mut done.errors, format!("connect {http}: {e}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                body.clear();
                stamp::write_body(&mut body, stamp::now_ns(), schedule.body);
                done.sent += 1;
                match c.request("POST", &path, &body).await {
                    Ok((200, reply)) if reply.windows(8).any(|w| w == b"\"code\":0") => {
                        done.acked += 1;
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((status, reply)) => note(
                        &mut done.errors,
                        format!("push refused: {status} {}", String::from_utf8_lossy(reply)),
                    ),
                    Err(e) => {
                        note(&mut done.errors, format!("push: {e}"));
                        conn = None;
                    }
                }
            }
            done
        });
    }
    let mut all = Published { first_ns, ..Default::default() };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(done) => {
                all.sent += done.sent;
                all.acked += done.acked;
                done.errors.into_iter().for_each(|e| note(&mut all.errors, e));
            }
            Err(e) => note(&mut all.errors, format!("publisher task: {e}")),
        }
    }
    all.done_ns = stamp::now_ns();
    all.last_ns = all.done_ns;
    all
}

/// PUBs written per write in open loop (each stamped; one clock read per write).
const NATS_BATCH: u64 = 64;

/// What the publisher's reader saw.
enum FromServer {
    Ping,
    Pong,
    Err(String),
}

/// `PUB bench <body>` on one connection to nats-server. Every PUB written counts as
/// published; the final PING's PONG (awaited until `flush_by`, the run's deadline) says
/// the server has worked through them all.
pub async fn nats(
    addr: SocketAddr,
    schedule: Schedule,
    acked: Arc<AtomicU64>,
    flush_by: Instant,
) -> Published {
    let mut done = Published::default();
    if let Err(e) = nats_run(addr, schedule, &acked, flush_by, &mut done).await {
        note(&mut done.errors, e);
    }
    done.acked = done.sent;
    done.done_ns = stamp::now_ns();
    if done.last_ns == 0 {
        done.last_ns = done.done_ns;
    }
    done
}

async fn nats_run(
    addr: SocketAddr,
    schedule: Schedule,
    acked: &AtomicU64,
    flush_by: Instant,
    done: &mut Published,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut from_server) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut parser = NatsStream::default();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let parsed = parser.feed(&buf[..n], &mut |event| {
                let _ = match event {
                    NatsEvent::Msg(_) => Ok(()),
                    NatsEvent::Ping => tx.send(FromServer::Ping),
                    NatsEvent::Pong => tx.send(FromServer::Pong),
                    NatsEvent::Err(line) => {
                        tx.send(FromServer::Err(String::from_utf8_lossy(line).into_owned()))
                    }
                };
            });
            if let Err(e) = parsed {
                let _ = tx.send(FromServer::Err(e.to_string()));
                break;
            }
        }
        let _ = tx.send(FromServer::Err("nats-server closed the publisher's connection".into()));
    });
    let write = |e: std::io::Error| format!("publish: {e}");
    wr.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n").await.map_err(write)?;
    let head = format!("PUB bench {}\r\n", schedule.body);
    let msg_len = head.len() + schedule.body + 2;
    let mut buf = Vec::new();
    let start = Instant::now();
    let push_end = start + Duration::from_secs(schedule.seconds);
    done.first_ns = stamp::now_ns();
    let mut k = 0;
    'publish: while let Some(due) = schedule.due(start, k) {
        if schedule.rate > 0 {
            tokio::time::sleep_until(due).await;
        }
        buf.clear();
        while let Ok(event) = from_server.try_recv() {
            match event {
                FromServer::Ping => buf.extend_from_slice(b"PONG\r\n"),
                FromServer::Pong => {}
                FromServer::Err(e) => return Err(e),
            }
        }
        let pongs = buf.len();
        let now_ns = stamp::now_ns();
        // Open loop: a batch. Fixed rate: every push due by now (one, unless behind).
        loop {
            buf.extend_from_slice(head.as_bytes());
            stamp::write_body(&mut buf, now_ns, schedule.body);
            buf.extend_from_slice(b"\r\n");
            k += 1;
            let more = match schedule.rate {
                0 => k % NATS_BATCH != 0,
                _ => schedule.due(start, k).is_some_and(|d| d <= Instant::now()),
            };
            if !more {
                break;
            }
        }
        // nats-server stalls a publisher whose subscribers lag: the push phase still ends
        // on time, at a message boundary (the message cut in two is finished first).
        let mut written = 0;
        while written < buf.len() {
            let cut = written < pongs || (written - pongs) % msg_len != 0;
            let until = if cut { flush_by } else { push_end };
            match tokio::time::timeout_at(until, wr.write(&buf[written..])).await {
                Ok(Ok(0)) => return Err("nats-server closed the publisher's connection".into()),
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => return Err(write(e)),
                Err(_) if until == push_end => {
                    done.sent += (written.saturating_sub(pongs) / msg_len) as u64;
                    break 'publish;
                }
                Err(_) => return Err("nats-server took no more bytes until the deadline".into()),
            }
        }
        done.sent += ((buf.len() - pongs) / msg_len) as u64;
        acked.store(done.sent, Ordering::Relaxed);
    }
    done.last_ns = stamp::now_ns();
    // Bounded like the rest: a stalled server may not even take the PING.
    let flushed = tokio::time::timeout_at(flush_by, async {
        wr.write_all(b"PING\r\n").await.map_err(write)?;
        while let Some(event) = from_server.recv().await {
            match event {
                FromServer::Pong => return Ok(()),
                FromServer::Ping => wr.write_all(b"PONG\r\n").await.map_err(write)?,
                FromServer::Err(e) => return Err(e),
            }
        }
        Err("nats-server closed the publisher's connection".to_string())
    })
    .await;
    flushed
        .map_err(|_| "nats-server was still working through the PUBs at the deadline (no PONG)".to_string())?
}
