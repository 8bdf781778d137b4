//! Snapshots beside apply: while 20,000 pushes from 12 pushers are committed to
//! a 3-node cluster with one follower down, the nodes build snapshots (every 200 entries)
//! and pushes keep being acknowledged while a snapshot is being built (a build records
//! before-images beside apply instead of copying the state in line with it). The follower
//! then comes back after the leader purged that part of its log, so it can only catch up by
//! installing a snapshot (streamed in 512 KiB chunks from the leader's snapshot file); it
//! then holds the same push log as the leader.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{data_of, exclusive, wait_for, Cluster, Role};
use common::counter;

const PUSHES: usize = 20_000;
/// Few pushers, so that group commit puts few pushes in each entry and the log grows past
/// what a snapshot keeps (`max_in_snapshot_log_to_keep`, 1,000 entries) and gets purged.
const CONCURRENCY: usize = 12;

/// `goim_storage_snapshot_building` on `node`'s `/metrics`, read every few ms until
/// `stop`: when it was read, and whether a snapshot was being built.
async fn watch_building(url: String, stop: tokio_util::sync::CancellationToken) -> Vec<(Instant, bool)> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let mut seen = Vec::new();
    while !stop.is_cancelled() {
        let sent = Instant::now();
        if let Ok(text) = async { http.get(&url).send().await?.text().await }.await {
            // Counted as of when the request went out: the build was running by then at
            // the latest, and still when the reply was made.
            seen.push((sent, counter(&text, "goim_storage_snapshot_building") > 0.0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// Acknowledgements that came between two consecutive reads that both saw a build running
/// (so inside one build, or two back to back), and how many such windows there were.
fn acks_during_builds(seen: &[(Instant, bool)], acks: &[Instant]) -> (usize, usize) {
    let windows: Vec<(Instant, Instant)> =
        seen.windows(2).filter(|w| w[0].1 && w[1].1).map(|w| (w[0].0, w[1].0)).collect();
    let during = acks.iter().filter(|a| windows.iter().any(|(from, to)| from < *a && *a < to)).count();
    (during, windows.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_acked_while_snapshots_build_and_a_follower_catches_up_through_one() {
    let _one_at_a_time = exclusive().await;
    let mut c = Cluster::start_with(3, 0, 0, &["--snapshot-every", "200"]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let before = c.status(follower).await.expect("status")["last_log_index"].as_u64().unwrap_or(0);
    c.kill9(Role::Logic, follower);

    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(watch_building(format!("{}/metrics", c.logic[leader].url()), stop.clone()));

    // Room pushes to the leader, CONCURRENCY at a time; when each was acknowledged.
    let started = Instant::now();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let url = format!("{}/goim/push/room?operation=1000&type=live&room=s", c.logic[leader].url());
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(Mutex::new(Vec::with_capacity(PUSHES)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (http, url, next, acks) = (http.clone(), url.clone(), next.clone(), acks.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= PUSHES {
                    return;
                }
                let reply: serde_json::Value =
                    http.post(&url).body(format!("s{i}")).send().await.unwrap().json().await.unwrap();
                assert_eq!(reply["code"], 0, "push {i}: {reply}");
                acks.lock().unwrap().push(Instant::now());
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.unwrap();
    }
    eprintln!("{PUSHES} pushes committed in {:?}", started.elapsed());
    stop.cancel();
    let seen = watcher.await.unwrap();
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let (during, windows) = acks_during_builds(&seen, &acks);
    let metrics = c.metrics(&c.logic[leader]).await.expect("metrics");
    let applied_while = counter(&metrics, "goim_storage_applied_while_snapshotting_total");
    eprintln!(
        "{during} pushes acknowledged inside {windows} windows with a snapshot build running; \
         {applied_while} entries applied while building"
    );
    assert!(windows > 0, "a snapshot build was seen running ({} reads)", seen.len());
    assert!(during > 0, "pushes were acknowledged while a snapshot was being built");
    assert!(applied_while > 0.0, "entries were applied while a snapshot was being built");

    // Leadership may have moved while the follower was down (two busy voters on two cores):
    // read the log head from whichever node leads now, once it has applied every push.
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    let ls = wait_for(Duration::from_secs(30), "the leader to apply every push", || async {
        let s = c.status(leader).await?;
        (s["push_log"]["last_seq"] == PUSHES as u64).then_some(s)
    })
    .await;
    let purged = ls["purged_index"].as_u64().expect("the leader purged its log");
    assert!(
        purged > before,
        "the entries the follower misses are gone from the log: purged {purged} > {before}"
    );

    let caught_up = Instant::now();
    c.restart(Role::Logic, follower).await;
    c.wait_caught_up(follower, Duration::from_secs(60)).await;
    eprintln!("follower caught up in {:?}", caught_up.elapsed());
    let fs = c.status(follower).await.expect("follower status");
    let snap = fs["snapshot_index"].as_u64().expect("the follower installed a snapshot");
    assert!(snap > before, "snapshot {snap} covers what it missed (it had {before})");
    assert_eq!(fs["push_log"], ls["push_log"], "same push log head");

    // The follower serves the same records (spot checks across the log).
    for from in [1u64, 7_777, 19_990] {
        let path = format!("/goim/log?from={from}&limit=10");
        let a = data_of(c.get(&format!("{}{path}", c.logic[leader].url())).await).expect("leader log");
        let b = data_of(c.get(&format!("{}{path}", c.logic[follower].url())).await).expect("follower log");
        assert_eq!(a["records"], b["records"], "records from {from}");
        assert_eq!(b["records"][0]["seq"], from);
    }
}
