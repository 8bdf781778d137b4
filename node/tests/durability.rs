//! Acknowledged means durable: room pushes stream in while the node is `kill -9`'d; after a
//! restart on the same data dir every push that got `code:0` is in `goim log tail`, in
//! order, with no gaps in seq.
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Node;
use serde_json::Value;

const TOTAL: usize = 10_000;
const CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pushes_survive_kill_9() {
    let mut node = Node::start(&[]).await;
    let url = format!("{}/goim/push/room?operation=1000&type=live&room=1", node.http());
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (url, acked, next) = (url.clone(), acked.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= TOTAL {
                    return;
                }
                let body = format!("m{i}");
                let Ok(resp) = client.post(&url).body(body.clone()).send().await else {
                    return;
                };
                let Ok(reply) = resp.json::<Value>().await else {
                    return;
                };
                if reply["code"] == 0 {
                    let seq = reply["data"]["seq"].as_u64().unwrap();
                    acked.lock().unwrap().insert(seq, body);
                }
            }
        }));
    }
    // Kill once a good part of the stream has been acknowledged.
    common::eventually(Duration::from_secs(120), "5000 acks", || async {
        (acked.lock().unwrap().len() >= 5_000).then_some(())
    })
    .await;
    node.kill9();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 5_000 && acked.len() < TOTAL, "killed mid-stream: {} acked", acked.len());

    node.spawn().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_goim"))
        .args(["log", "tail", "--http", &node.http(), "--from", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "dense, in order, from 1");
    let room_seqs: Vec<u64> = records.iter().map(|r| r["target"]["room_seq"].as_u64().unwrap()).collect();
    assert_eq!(room_seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "room offsets dense too");
    for (seq, body) in &acked {
        let r = &records[(*seq - 1) as usize];
        assert_eq!(r["body"].as_str(), Some(body.as_str()), "acked push {seq} kept with its body");
    }
    eprintln!("acked before kill: {}, in log after restart: {}", acked.len(), records.len());
}
