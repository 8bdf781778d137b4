//! `goim-bench push`: acknowledged pushes/s. Many concurrent HTTP clients push to logic
//! nodes, each keeping one request in flight; reports committed (fsync'd) pushes/s and the
//! ack latency percentiles (docs/BENCHMARKS.md, "Acknowledged pushes/s").
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct PushArgs {
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

/// `label  p50 …  p99 …  max …` of sorted microsecond samples, in ms.
pub fn print_latency(label: &str, sorted: &[u32]) {
    let pct = |p| percentile(sorted, p);
    println!("{label:<19}p50 {:.1}  p99 {:.1}  max {:.1}", pct(0.5), pct(0.99), pct(1.0));
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
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
