//! `goim-bench recover`: a reconnect storm. M room pushes happen while N clients are away,
//! then all N come back at once resuming from their offset; reports the time each took
//! from connect to its last missed message, and replayed messages/s (docs/BENCHMARKS.md,
//! "Recovery: a reconnect storm").
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use goim_client::{AuthRequest, Client};

use crate::push::print_latency;

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
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

pub async fn run(args: RecoverArgs) -> anyhow::Result<()> {
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
