//! Benchmarks against running nodes (see docs/BENCHMARKS.md):
//! - `goim-bench fanout`: N WebSocket clients in one room, room pushes at a steady rate
//!   through the HTTP API; reports delivered messages/s and push→receive latency
//!   percentiles (each push body carries its send time).
//! - `goim-bench push`: many concurrent HTTP clients pushing to logic nodes; reports
//!   acknowledged (committed, fsync'd) pushes/s and ack latency percentiles.
//! - `goim-bench recover`: a reconnect storm. M room pushes happen while N clients are
//!   away, then all N come back at once resuming from their offset; reports the time each
//!   took from connect to its last missed message, and replayed messages/s.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use goim_net::client::{AuthRequest, Client};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "goim-rs benchmarks")]
enum Bench {
    /// Room fan-out: N WebSocket clients in one room, pushes at a steady rate.
    Fanout(FanoutArgs),
    /// Acknowledged pushes/s: concurrent HTTP pushers against logic nodes.
    Push(PushArgs),
    /// Reconnect storm: N clients resume at once, each replaying M missed room messages.
    Recover(RecoverArgs),
}

#[derive(clap::Args, Debug)]
struct RecoverArgs {
    /// HTTP address of a logic node.
    #[arg(long, default_value = "127.0.0.1:3111")]
    http: String,
    /// WebSocket URL of a comet.
    #[arg(long, default_value = "ws://127.0.0.1:3102/sub")]
    ws: String,
    /// Clients coming back at once.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Room messages each one missed.
    #[arg(long, default_value_t = 1000)]
    missed: usize,
    #[arg(long, default_value_t = 64)]
    body: usize,
    #[arg(long, default_value = "recover")]
    room: String,
}

#[derive(clap::Args, Debug)]
struct PushArgs {
    /// HTTP addresses of logic nodes, comma-separated (pushers spread over them).
    #[arg(long, default_value = "127.0.0.1:3111")]
    http: String,
    /// Concurrent pushers (each keeps one request in flight).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    body: usize,
    /// Rooms pushed to, round robin.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
}

#[derive(clap::Args, Debug)]
struct FanoutArgs {
    /// HTTP address of a logic node.
    #[arg(long, default_value = "127.0.0.1:3111")]
    http: String,
    /// WebSocket URL of a comet.
    #[arg(long, default_value = "ws://127.0.0.1:3102/sub")]
    ws: String,
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Room pushes per second.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Seconds of pushing.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Body bytes per push (at least the timestamp).
    #[arg(long, default_value_t = 64)]
    body: usize,
    #[arg(long, default_value = "bench")]
    room: String,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Fanout(args) => fanout(args).await,
        Bench::Push(args) => push(args).await,
        Bench::Recover(args) => recover(args).await,
    }
}

/// `label  p50 …  p99 …  max …` of sorted microsecond samples, in ms.
fn print_latency(label: &str, sorted: &[u32]) {
    let pct = |p| percentile(sorted, p);
    println!("{label:<19}p50 {:.1}  p99 {:.1}  max {:.1}", pct(0.5), pct(0.99), pct(1.0));
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

async fn push(args: PushArgs) -> anyhow::Result<()> {
    let targets: Vec<String> = args.http.split(',').map(|h| h.trim().to_string()).collect();
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let body = "x".repeat(args.body);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.concurrency {
        let url = format!("http://{}/goim/push/room?operation=1000&type=live", targets[w % targets.len()]);
        let (http, body, rooms) = (http.clone(), body.clone(), args.rooms.max(1));
        workers.spawn(async move {
            let (mut acked, mut failed, mut lat) = (0u64, 0u64, Vec::new());
            let mut i = w;
            while Instant::now() < deadline {
                let started = Instant::now();
                let reply = http.post(format!("{url}&room={}", i % rooms)).body(body.clone()).send().await;
                let ok = match reply {
                    Ok(r) => r.json::<serde_json::Value>().await.map(|v| v["code"] == 0).unwrap_or(false),
                    Err(_) => false,
                };
                if ok {
                    acked += 1;
                    lat.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                } else {
                    failed += 1;
                }
                i += ROOM_STRIDE;
            }
            (acked, failed, lat)
        });
    }
    let started = Instant::now();
    let (mut acked, mut failed, mut lat) = (0u64, 0u64, Vec::new());
    while let Some(r) = workers.join_next().await {
        let (a, f, l) = r?;
        acked += a;
        failed += f;
        lat.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!("pushers            {} over {}", args.concurrency, args.http);
    println!("acked pushes       {acked} in {secs:.1} s = {:.0}/s ({failed} failed)", acked as f64 / secs);
    print_latency("ack latency ms", &lat);
    Ok(())
}

/// Pushers step through rooms so concurrent requests spread over them.
const ROOM_STRIDE: usize = 7;

async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let room_id = format!("live://{}", args.room);
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<u32>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();

    eprintln!("connecting {} WebSocket clients to {} …", args.clients, args.ws);
    let started = Instant::now();
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..args.clients {
        let (ws, room_id, delivered, latencies, stop, connected, permits) = (
            args.ws.clone(),
            room_id.clone(),
            delivered.clone(),
            latencies.clone(),
            stop.clone(),
            connected.clone(),
            permits.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut client = {
                let _permit = permits.acquire().await.ok()?;
                let mut c = Client::connect_ws(&ws).await.ok()?;
                c.auth(&AuthRequest { mid: i as i64, room_id, platform: "bench".into(), ..Default::default() }).await.ok()?;
                c
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let mut mine = Vec::new();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    p = client.recv() => match p {
                        Ok(Some(p)) if p.op == 1000 => {
                            let sent: u64 = std::str::from_utf8(&p.body[..16.min(p.body.len())]).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
                            mine.push(now_us().saturating_sub(sent).min(u32::MAX as u64) as u32);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
            }
            latencies.lock().await.extend(mine);
            Some(())
        }));
    }
    while (connected.load(Ordering::Relaxed) as usize) < args.clients {
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!(
                "only {} of {} clients connected in 120 s",
                connected.load(Ordering::Relaxed),
                args.clients
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{} clients connected in {:.1} s; pushing {} /s for {} s",
        args.clients,
        started.elapsed().as_secs_f64(),
        args.rate,
        args.seconds
    );

    let http = reqwest::Client::new();
    let url = format!("http://{}/goim/push/room?operation=1000&type=live&room={}", args.http, args.room);
    let total = args.rate as u64 * args.seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    let push_started = Instant::now();
    let mut acked = 0u64;
    let mut inflight = tokio::task::JoinSet::new();
    for _ in 0..total {
        tick.tick().await;
        let mut body = format!("{:<16}", now_us());
        body.extend(std::iter::repeat_n('x', args.body.saturating_sub(16)));
        let (http, url) = (http.clone(), url.clone());
        inflight.spawn(async move {
            http.post(&url)
                .body(body)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
                .filter(|r| r["code"] == 0)
        });
    }
    while let Some(r) = inflight.join_next().await {
        if matches!(r, Ok(Some(_))) {
            acked += 1;
        }
    }
    let push_secs = push_started.elapsed().as_secs_f64();
    let expected = acked * args.clients as u64;
    let wait = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_secs = push_started.elapsed().as_secs_f64();
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| percentile(&lat, p);
    let got = delivered.load(Ordering::Relaxed);
    println!("clients            {}", args.clients);
    println!(
        "pushes acked       {acked} of {total} ({:.1}/s over {push_secs:.1} s)",
        acked as f64 / push_secs
    );
    println!(
        "deliveries         {got} of {expected} expected ({:.2}%)",
        100.0 * got as f64 / expected.max(1) as f64
    );
    println!(
        "delivered msgs/s   {:.0} (over {drain_secs:.1} s until the last delivery)",
        got as f64 / drain_secs
    );
    println!(
        "latency ms         p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    Ok(())
}

async fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let room_id = format!("live://{}", args.room);
    let auth = |mid: usize| AuthRequest {
        mid: mid as i64,
        room_id: room_id.clone(),
        platform: "bench".into(),
        ..Default::default()
    };
    // Where the room stands before the clients "leave".
    let mut probe = Client::connect_ws(&args.ws).await?;
    let joined = probe.auth(&auth(0)).await?;
    probe.close().await?;
    eprintln!("pushing {} messages to {room_id} at offset {} …", args.missed, joined.room_seq);
    let http = reqwest::Client::new();
    let url = format!("http://{}/goim/push/room?operation=1000&type=live&room={}", args.http, args.room);
    let body = "x".repeat(args.body);
    let mut pushers = tokio::task::JoinSet::new();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..64 {
        let (http, url, body, next, missed) =
            (http.clone(), url.clone(), body.clone(), next.clone(), args.missed);
        pushers.spawn(async move {
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < missed {
                let reply = http.post(&url).body(body.clone()).send().await?;
                let v: serde_json::Value = reply.json().await?;
                anyhow::ensure!(v["code"] == 0, "push refused: {v}");
            }
            Ok(())
        });
    }
    while let Some(r) = pushers.join_next().await {
        r??;
    }

    eprintln!("{} clients resume from offset {} at once …", args.clients, joined.room_seq);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let req =
            AuthRequest { room_seq: Some(joined.room_seq), epoch: Some(joined.epoch.clone()), ..auth(i + 1) };
        let (ws, missed) = (args.ws.clone(), args.missed);
        clients.spawn(async move {
            let began = Instant::now();
            let mut c = Client::connect_ws(&ws).await?;
            let reply = c.auth(&req).await?;
            anyhow::ensure!(reply.recovered, "not recovered: {reply:?}");
            let mut got = 0;
            while got < missed {
                match c.recv_timeout(Duration::from_secs(30)).await? {
                    Some(p) if p.op == 1000 => got += 1,
                    Some(_) => {}
                    None => anyhow::bail!("closed after {got} messages"),
                }
            }
            Ok(began.elapsed().as_micros().min(u32::MAX as u128) as u32)
        });
    }
    let (mut done, mut failed, mut lat) = (0u64, 0u64, Vec::new());
    while let Some(r) = clients.join_next().await {
        match r? {
            Ok(us) => {
                done += 1;
                lat.push(us);
            }
            Err(e) => {
                failed += 1;
                eprintln!("client failed: {e}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let replayed = done * args.missed as u64;
    println!(
        "clients recovered  {done} of {} ({failed} failed), {} missed messages each",
        args.clients, args.missed
    );
    println!("replayed           {replayed} messages in {secs:.2} s = {:.0} msgs/s", replayed as f64 / secs);
    print_latency("connect→last ms", &lat);
    Ok(())
}
