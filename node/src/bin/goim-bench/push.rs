//! `goim-bench push`: acknowledged pushes/s. Concurrent HTTP pushers against goim's logic
//! voters (each push committed, fsync'd on a majority, before its reply), one message per
//! request (goim's `/goim/push/room`) or `--batch N` per request (`/goim/push/batch`),
//! over HTTP/1.1 (one connection per request in flight) or `--http2` (a few connections);
//! with `--peer nats`, the same number of messages in flight against a 3-node JetStream
//! cluster and an R3 file stream, in the same command. Reports acked pushes/s, the ack
//! latency, the servers' CPU per acked push and the load generator's own CPU
//! (docs/BENCHMARKS.md, "Acknowledged pushes/s").
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::time::Instant;

use crate::http1::Http1;
use crate::http2::Http2;
use crate::jetstream;
use crate::procfs;
use crate::report::{self, row, thousands, Row};
use crate::servers::{Peer, ServerArgs, System};

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Push to these already running logic nodes (HTTP addresses, comma-separated; pushers
    /// spread over them) instead of starting `--voters` of them.
    #[arg(long, value_delimiter = ',')]
    http: Vec<SocketAddr>,
    /// With `--http`: the PIDs of those nodes, for their CPU and memory.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Logic voters to start (every push fsync'd on a majority before its ack).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    voters: u64,
    /// The goim binary to start (default: `goim` next to this executable).
    #[arg(long)]
    goim_bin: Option<PathBuf>,
    /// One more flag for every goim process started (repeat for more).
    #[arg(long = "goim-arg", allow_hyphen_values = true)]
    goim_args: Vec<String>,
    /// Also measure a 3-node JetStream cluster (R3 file stream), same load.
    #[arg(long, value_enum, default_value_t = Peer::None)]
    peer: Peer,
    /// The nats-server binary (found on PATH or in /usr/sbin when not a path).
    #[arg(long, default_value = "nats-server")]
    nats_bin: String,
    /// Requests in flight. goim: HTTP/1.1 connections with one request each (with
    /// `--http2`, streams over `--http2-connections` connections). JetStream:
    /// `PUB`s in flight, `* batch` of them, shared by `--nats-connections` connections.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Messages per goim request (0: goim's one-message route, `/goim/push/room`).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// goim: HTTP/2 (h2c prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// With `--http2`: connections the requests in flight share, spread over the targets.
    #[arg(long, default_value_t = 8)]
    http2_connections: usize,
    /// JetStream publisher connections.
    #[arg(long, default_value_t = 32)]
    nats_connections: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Message body bytes.
    #[arg(long, default_value_t = 64)]
    body: usize,
    /// Rooms pushed to, round robin.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// One JSON object per run on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

/// What publishers saw: acked and failed messages, ack latencies in µs, first errors.
#[derive(Default)]
pub struct Pushed {
    pub acked: u64,
    pub failed: u64,
    pub latency_us: Vec<u32>,
    pub errors: Vec<String>,
}

impl Pushed {
    fn merge(&mut self, other: Pushed) {
        self.acked += other.acked;
        self.failed += other.failed;
        self.latency_us.extend(other.latency_us);
        for e in other.errors {
            if self.errors.len() < 8 && !self.errors.contains(&e) {
                self.errors.push(e);
            }
        }
    }
}

/// One system's run.
struct Run {
    label: String,
    pushed: Pushed,
    secs: f64,
    server_cpu_s: f64,
    /// Each server process's RSS at the end, MB.
    server_rss_mb: Vec<f64>,
    loadgen_cpu_s: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.pushed.acked as f64 / self.secs.max(1e-9)
    }

    fn cpu_us_per_push(&self) -> f64 {
        self.server_cpu_s * 1e6 / (self.pushed.acked.max(1) as f64)
    }

    fn pct_ms(&self, p: f64) -> f64 {
        percentile(&self.pushed.latency_us, p)
    }
}

/// `label  p50 …  p99 …  max …` of sorted microsecond samples, in ms.
pub fn print_latency(label: &str, sorted: &[u32]) {
    let pct = |p| percentile(sorted, p);
    println!("{label:<19}p50 {:.1}  p99 {:.1}  max {:.1}", pct(0.5), pct(0.99), pct(1.0));
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

/// Runs every system; exits 2 (saying so) when one acknowledged nothing.
pub async fn run(args: PushArgs) -> anyhow::Result<i32> {
    let mut runs = Vec::new();
    for system in args.peer.systems() {
        runs.push(run_one(&args, system).await?);
    }
    let names: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    let rows: Vec<Row> = vec![
        row("acked pushes/s", &runs, |r| thousands(r.rate() as u64)).ratio(&runs, Run::rate),
        row("acked / failed", &runs, |r| format!("{} / {}", thousands(r.pushed.acked), r.pushed.failed)),
        row("ack p50 ms", &runs, |r| format!("{:.1}", r.pct_ms(0.5))).ratio(&runs, |r| r.pct_ms(0.5)),
        row("ack p99 ms", &runs, |r| format!("{:.1}", r.pct_ms(0.99))).ratio(&runs, |r| r.pct_ms(0.99)),
        row("ack max ms", &runs, |r| format!("{:.1}", r.pct_ms(1.0))),
        row("server CPU µs/push", &runs, |r| format!("{:.1}", r.cpu_us_per_push()))
            .ratio(&runs, Run::cpu_us_per_push),
        row("server RSS MB (end), each", &runs, |r| {
            r.server_rss_mb.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(" ")
        }),
        row("load generator CPU s", &runs, |r| format!("{:.1}", r.loadgen_cpu_s)),
    ];
    let over = match args.http2 {
        true => format!(", goim over HTTP/2 on {} connections", args.http2_connections),
        false => String::new(),
    };
    let title = format!(
        "acknowledged pushes, {} s, {} B bodies, {}{over}",
        args.seconds,
        args.body,
        match args.batch {
            0 => format!("{} pushers, one message per request", args.concurrency),
            n => format!("{} pushers × {n} messages per request", args.concurrency),
        }
    );
    let object = json!({
        "bench": "push",
        "seconds": args.seconds,
        "body": args.body,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "http2": args.http2.then_some(args.http2_connections),
        "runs": runs.iter().map(|r| json!({
            "system": r.label,
            "acked": r.pushed.acked,
            "failed": r.pushed.failed,
            "acked_per_s": r.rate(),
            "p50_ms": r.pct_ms(0.5),
            "p99_ms": r.pct_ms(0.99),
            "max_ms": r.pct_ms(1.0),
            "server_cpu_us_per_push": r.cpu_us_per_push(),
            "server_rss_mb": r.server_rss_mb,
            "loadgen_cpu_s": r.loadgen_cpu_s,
            "errors": r.pushed.errors,
        })).collect::<Vec<_>>(),
    });
    report::emit(args.json, &title, &names, &rows, object)?;
    for r in &runs {
        for e in &r.pushed.errors {
            eprintln!("{}: {e}", r.label);
        }
    }
    let idle: Vec<&str> = runs.iter().filter(|r| r.pushed.acked == 0).map(|r| r.label.as_str()).collect();
    if idle.is_empty() {
        return Ok(0);
    }
    eprintln!("no push was acknowledged by: {}", idle.join(", "));
    Ok(2)
}

async fn run_one(args: &PushArgs, system: System) -> anyhow::Result<Run> {
    let servers = ServerArgs {
        goim_bin: args.goim_bin.clone(),
        comets: 0,
        voters: args.voters,
        goim_args: [
            vec!["--http-max-connections".to_string(), (args.concurrency + 64).to_string()],
            args.goim_args.clone(),
        ]
        .concat(),
        goim_http: None,
        goim_sub: Vec::new(),
        server_pid: Vec::new(),
        nats_bin: args.nats_bin.clone(),
    };
    let running = match (system, args.http.is_empty()) {
        (System::Goim, false) => None,
        _ => Some(servers.start_for_pushes(system).await?),
    };
    let (label, pids, targets) = match &running {
        Some(r) if system == System::Nats => (r.label.clone(), r.pids.clone(), r.sub_addrs.clone()),
        Some(r) => (r.label.clone(), r.pids.clone(), vec![r.publish_addr]),
        None => (format!("goim (running, {})", args.http.len()), args.server_pid.clone(), args.http.clone()),
    };
    eprintln!("{label}: pushing for {} s …", args.seconds);
    let cpu_before = procfs::cpu_seconds_of(&pids);
    let own_before = procfs::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    match system {
        System::Goim => {
            let shared: Vec<Arc<Http2>> = match args.http2 {
                true => (0..args.http2_connections.max(1))
                    .map(|c| Arc::new(Http2::new(targets[c % targets.len()])))
                    .collect(),
                false => Vec::new(),
            };
            for w in 0..args.concurrency {
                let h2 = (!shared.is_empty()).then(|| shared[w % shared.len()].clone());
                let target = h2.as_ref().map_or(targets[w % targets.len()], |c| c.target());
                let job = Pusher {
                    target,
                    h2,
                    first: w,
                    rooms: args.rooms.max(1),
                    batch: args.batch,
                    body: args.body,
                };
                tasks.spawn(job.run(deadline));
            }
        }
        System::Nats => {
            let conns = args.nats_connections.max(1);
            let window = (args.concurrency * args.batch.max(1)).div_ceil(conns);
            for c in 0..conns {
                tasks.spawn(jetstream::publish(targets[c % targets.len()], c, window, args.body, deadline));
            }
        }
    }
    let mut pushed = Pushed::default();
    while let Some(p) = tasks.join_next().await {
        pushed.merge(p.context("pusher task")?);
    }
    let secs = started.elapsed().as_secs_f64();
    pushed.latency_us.sort_unstable();
    Ok(Run {
        label,
        secs,
        server_cpu_s: procfs::cpu_seconds_of(&pids) - cpu_before,
        server_rss_mb: pids.iter().map(|p| procfs::mib(procfs::rss_bytes(*p).unwrap_or(0))).collect(),
        loadgen_cpu_s: procfs::cpu_seconds(std::process::id()).unwrap_or(0.0) - own_before,
        pushed,
    })
}

/// One HTTP pusher, one request in flight: on a keep-alive HTTP/1.1 connection of its own,
/// or as a stream of a shared HTTP/2 connection.
struct Pusher {
    target: SocketAddr,
    h2: Option<Arc<Http2>>,
    first: usize,
    rooms: usize,
    batch: usize,
    body: usize,
}

/// Pushers step through rooms so concurrent requests spread over them.
const ROOM_STRIDE: usize = 7;

impl Pusher {
    async fn run(self, deadline: Instant) -> Pushed {
        let mut done = Pushed::default();
        let body = "x".repeat(self.body);
        let mut conn: Option<Http1> = None;
        let mut i = self.first;
        let mut request = Vec::new();
        while Instant::now() < deadline {
            let (path, messages) = match self.batch {
                0 => {
                    request.clear();
                    request.extend_from_slice(body.as_bytes());
                    (format!("/goim/push/room?operation=1000&type=live&room={}", i % self.rooms), 1)
                }
                n => {
                    request.clear();
                    for k in 0..n {
                        let line = json!({"to": "room", "room": format!("live://{}", (i + k) % self.rooms), "op": 1000, "body": body});
                        request.extend_from_slice(line.to_string().as_bytes());
                        request.push(b'\n');
                    }
                    ("/goim/push/batch".to_string(), n)
                }
            };
            i += ROOM_STRIDE;
            let mut link = match &self.h2 {
                Some(h2) => Link::H2(h2.clone()),
                None => match conn.take() {
                    Some(c) if !c.closed => Link::H1(c),
                    _ => match Http1::connect(self.target).await {
                        Ok(c) => Link::H1(c),
                        Err(e) => {
                            self.note(&mut done, format!("connect {}: {e}", self.target));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                },
            };
            let sent = Instant::now();
            let outcome = link.post(&path, &request, messages).await;
            match outcome {
                Ok((acked, failed)) => {
                    done.acked += acked;
                    done.failed += failed;
                    let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    done.latency_us.extend(std::iter::repeat_n(us, acked as usize));
                    if let Link::H1(c) = link {
                        conn = Some(c);
                    }
                }
                Err(e) => {
                    done.failed += messages as u64;
                    self.note(&mut done, e);
                }
            }
        }
        done
    }

    fn note(&self, done: &mut Pushed, e: String) {
        if done.errors.len() < 2 && !done.errors.contains(&e) {
            done.errors.push(e);
        }
    }
}

/// Where a pusher's request goes: its own HTTP/1.1 connection or a shared HTTP/2 one.
enum Link {
    H1(Http1),
    H2(Arc<Http2>),
}

impl Link {
    /// POSTs `body` to `path`: (acked, failed) of its `messages`, or why none was acked.
    async fn post(&mut self, path: &str, body: &[u8], messages: usize) -> Result<(u64, u64), String> {
        let refused = |status, reply: &[u8]| format!("HTTP {status}: {}", String::from_utf8_lossy(reply));
        match self {
            Link::H1(c) => match c.request("POST", path, body).await {
                Ok((200, reply)) => acked_in(reply, messages),
                Ok((status, reply)) => Err(refused(status, reply)),
                Err(e) => Err(e.to_string()),
            },
            Link::H2(c) => match c.post(path, body.to_vec()).await {
                Ok((200, reply)) => acked_in(&reply, messages),
                Ok((status, reply)) => Err(refused(status, &reply)),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

/// (acked, failed) messages of a 200 reply: goim's `{"code":0,…}` for one message; for a
/// batch, one `results` entry per line, with a `seq` or an `error`.
fn acked_in(reply: &[u8], messages: usize) -> Result<(u64, u64), String> {
    let v: serde_json::Value = serde_json::from_slice(reply).map_err(|e| format!("reply: {e}"))?;
    if v["code"] != 0 {
        return Err(format!("refused: {v}"));
    }
    let Some(results) = v["data"]["results"].as_array() else {
        return Ok((1, messages as u64 - 1));
    };
    let acked = results.iter().filter(|r| r.get("seq").is_some()).count() as u64;
    Ok((acked, messages as u64 - acked))
}
