//! Cluster formation: voters started in any order (the initializing lowest id last) form
//! one cluster by themselves; after all of them are killed and restarted (in another
//! order) it is the same cluster with the same log, initialized exactly once.
mod common;

use std::time::Duration;

use common::cluster::{data_of, exclusive, wait_for, Cluster};
use common::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_form_one_cluster_in_any_start_order_and_across_restarts() {
    let _one_at_a_time = exclusive().await;
    let mut c = Cluster::unstarted(3);
    // 3 and 2 first: without node 1 (the one that initializes) nothing forms yet.
    c.logic[2].spawn();
    c.logic[1].spawn();
    for i in [1, 2] {
        let status = wait_for(Duration::from_secs(30), "nodes 3 and 2 answering", || c.status(i)).await;
        assert!(status["leader"].is_null(), "no leader before node 1: {status}");
        assert!(!c.logic[i].healthy().await, "no cluster before node 1");
    }
    c.logic[0].spawn();
    for i in 0..3 {
        c.logic[i].wait_healthy(Duration::from_secs(30)).await;
    }
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let url = format!("{}/goim/push/room?operation=1000&type=live&room=f", c.logic[leader].url());
    for i in 0..10 {
        assert_eq!(post(&url, format!("f{i}")).await["code"], 0);
    }

    // Everyone dies; they come back in another order, node 1 again last.
    for i in 0..3 {
        c.logic[i].kill9();
    }
    for i in [1, 2, 0] {
        c.logic[i].spawn();
    }
    for i in 0..3 {
        c.logic[i].wait_healthy(Duration::from_secs(30)).await;
    }
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    for i in 0..3 {
        let status = wait_for(Duration::from_secs(10), "the log replayed", || async {
            let s = c.status(i).await?;
            (s["push_log"]["last_seq"] == 10).then_some(s)
        })
        .await;
        assert_eq!(status["voters"], serde_json::json!([1, 2, 3]));
    }
    let url = format!("{}/goim/log?from=1", c.logic[leader].url());
    let log = data_of(c.get(&url).await).expect("log");
    assert_eq!(log["records"][9]["body"], "f9");
    let inits = c.logic[0].log().matches("cluster initialized").count();
    assert_eq!(inits, 1, "initialized once, not again on restart");
}
