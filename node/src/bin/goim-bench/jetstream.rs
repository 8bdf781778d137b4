//! The JetStream side of `goim-bench push`: the stream a run publishes to (file storage,
//! replicated on every node, created through the `$JS.API` request subject) and the
//! publishers, each a NATS connection keeping a window of `PUB`s with a reply inbox in
//! flight; a message counts once JetStream's ack (`{"stream":…,"seq":…}`) is back. Acks of
//! one connection come back in publish order (one stream, one path through the cluster), so
//! a queue of send times per connection gives each ack's latency.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::push::Pushed;
use crate::worker::nats_stream::{NatsEvent, NatsStream};

/// The stream and the subject its messages are published on.
pub const STREAM: &str = "BENCH";
const SUBJECT: &str = "bench.push";
/// An ack not back after this long ends the connection's run as failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n").await?;
    Ok(s)
}

/// Asks the cluster behind `addr` to create the stream with `replicas` file-stored copies;
/// fails (to be retried) until JetStream has a meta leader and says it was created.
pub async fn create_stream(addr: SocketAddr, replicas: usize) -> anyhow::Result<()> {
    let mut s = connect(addr).await?;
    let config = serde_json::json!({
        "name": STREAM,
        "subjects": [SUBJECT],
        "storage": "file",
        "num_replicas": replicas,
        "retention": "limits",
        "discard": "old",
    })
    .to_string();
    let request = format!(
        "SUB _INBOX.create 1\r\nPUB $JS.API.STREAM.CREATE.{STREAM} _INBOX.create {}\r\n{config}\r\n",
        config.len()
    );
    s.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = String::from_utf8_lossy(&reply);
        if let Some(at) = text.find("MSG _INBOX.create") {
            let payload = &text[at..];
            if payload.matches("\r\n").count() >= 2 {
                if payload.contains("\"error\"") {
                    bail!("stream not created: {payload}");
                }
                return Ok(());
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.context("no reply")??;
        if n == 0 {
            bail!("nats-server closed the connection");
        }
        reply.extend_from_slice(&buf[..n]);
    }
}

/// One publisher connection until `deadline`, `window` messages in flight, then waits
/// for the acks still due.
pub async fn publish(addr: SocketAddr, id: usize, window: usize, body: usize, deadline: Instant) -> Pushed {
    let mut done = Pushed::default();
    if let Err(e) = publish_run(addr, id, window.max(1), body, deadline, &mut done).await {
        done.errors.push(e.to_string());
    }
    done
}

async fn publish_run(
    addr: SocketAddr,
    id: usize,
    window: usize,
    body: usize,
    deadline: Instant,
    done: &mut Pushed,
) -> anyhow::Result<()> {
    let mut s = connect(addr).await?;
    s.write_all(format!("SUB _INBOX.p{id}.* 1\r\n").as_bytes()).await?;
    let payload = "x".repeat(body);
    let (mut rd, mut wr) = s.split();
    let mut parser = NatsStream::default();
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(window);
    let (mut out, mut inbuf) = (Vec::new(), vec![0u8; 64 << 10]);
    let mut pongs = 0usize;
    let mut k = 0u64;
    loop {
        out.clear();
        for _ in 0..std::mem::take(&mut pongs) {
            out.extend_from_slice(b"PONG\r\n");
        }
        let now = Instant::now();
        while sent_at.len() < window && now < deadline {
            out.extend_from_slice(
                format!("PUB {SUBJECT} _INBOX.p{id}.{k} {body}\r\n{payload}\r\n").as_bytes(),
            );
            sent_at.push_back(now);
            k += 1;
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
        }
        if sent_at.is_empty() {
            return Ok(());
        }
        let n = tokio::time::timeout(ACK_TIMEOUT, rd.read(&mut inbuf))
            .await
            .with_context(|| format!("{} acks not back after {ACK_TIMEOUT:?}", sent_at.len()))??;
        if n == 0 {
            bail!("nats-server closed the connection");
        }
        let mut failure = None;
        parser.feed(&inbuf[..n], &mut |event| match event {
            NatsEvent::Msg(ack) => {
                let Some(at) = sent_at.pop_front() else { return };
                if ack.windows(7).any(|w| w == b"\"error\"") || !ack.windows(5).any(|w| w == b"\"seq\"") {
                    done.failed += 1;
                    failure.get_or_insert_with(|| String::from_utf8_lossy(ack).into_owned());
                } else {
                    done.acked += 1;
                    done.latency_us.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
            NatsEvent::Ping => pongs += 1,
            NatsEvent::Pong => {}
            NatsEvent::Err(line) => {
                failure.get_or_insert_with(|| String::from_utf8_lossy(line).into_owned());
            }
        })?;
        if let Some(f) = failure {
            if !done.errors.contains(&f) && done.errors.len() < 4 {
                done.errors.push(f);
            }
        }
    }
}
