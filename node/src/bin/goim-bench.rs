//! `goim-bench fanout`: room fan-out benchmark against a running node. Opens N WebSocket
//! clients in one room (spread over tasks), pushes to the room at a steady rate through the
//! HTTP API, and reports delivered messages/s and push→receive latency percentiles. Each
//! push body carries its send time, so latency is measured per delivery.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use goim_net::client::{AuthRequest, Client};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "room fan-out benchmark: N WebSocket clients in one room, pushes at a steady rate")]
struct Args {
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
    let args = Args::parse();
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
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0)
            as f64
            / 1000.0
    };
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
