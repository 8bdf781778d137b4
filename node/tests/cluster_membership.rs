//! Online membership change loses nothing: the voters go 3 → 5 → 3 (`goim cluster add` /
//! `remove`, the leader among the removed) while pushes flow; no acknowledged push is lost, and
//! the client sees each exactly once in room order.
mod common;

use std::time::Duration;

use common::cluster::{
    acked_problems, auth_req, check_room_stream, exclusive, join, wait_for, Cluster, Inbox, PushStream,
    Pusher,
};

const ROOM_PATH: &str = "/goim/push/room?operation=1000&type=live&room=m";

fn voters(v: &serde_json::Value) -> Vec<u64> {
    v["voters"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_three_to_five_to_three_under_load() {
    let _one_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 1, 1).await;
    let (client, _) = join(&c.comets[0], true, &auth_req(1, "", "live://m", &[])).await;
    let inbox = Inbox::spawn("ws client", client);

    // Pushers address logic nodes 1..3 (the ones that stay reachable throughout).
    let pusher = Pusher::new(c.logic_urls());
    let stream = PushStream::start(&pusher, 3, Duration::from_millis(10), ROOM_PATH, "mem");

    // 3 → 5.
    let four = c.spawn_joining_logic(4, &[]);
    let five = c.spawn_joining_logic(5, &[]);
    for (i, id) in [(four, 4u64), (five, 5)] {
        let addr = c.logic[i].quic_addr();
        let reply = c.cluster_cli(1, &["add", "--id", &id.to_string(), "--addr", &addr]);
        assert!(voters(&reply).contains(&id), "{reply}");
    }
    for i in [four, five] {
        c.logic[i].wait_healthy(Duration::from_secs(30)).await;
        c.wait_caught_up(i, Duration::from_secs(30)).await;
    }
    let status = c.status(0).await.expect("status");
    assert_eq!(voters(&status), vec![1, 2, 3, 4, 5], "{status}");

    // 5 → 3, removing the current leader and one more original voter, through node 5.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let leader_id = c.logic[leader].id;
    let other = [1u64, 2, 3].into_iter().find(|id| *id != leader_id).expect("another voter");
    for id in [leader_id, other] {
        let reply = c.cluster_cli(five, &["remove", "--id", &id.to_string()]);
        assert!(!voters(&reply).contains(&id), "{reply}");
    }
    let remaining: Vec<u64> =
        [1u64, 2, 3, 4, 5].into_iter().filter(|id| *id != leader_id && *id != other).collect();
    wait_for(Duration::from_secs(15), "a leader among the remaining voters", || async {
        let s = c.status(five).await?;
        let leader = s["leader"].as_u64()?;
        (voters(&s) == remaining && remaining.contains(&leader)).then_some(())
    })
    .await;

    // Keep pushing a little on the shrunk group (and until enough flowed in all, however
    // quick the changes were), then stop and check every ack.
    let acked_before = stream.acked_count();
    wait_for(Duration::from_secs(20), "acks after the change", || async {
        let acked = stream.acked_count();
        (acked > acked_before + 50 && acked > 250).then_some(())
    })
    .await;
    let outcomes = stream.stop().await;
    let acked: Vec<_> = outcomes.iter().filter(|o| o.acked.is_some()).cloned().collect();
    assert!(acked.len() > 200, "enough pushes flowed: {}", acked.len());
    let want = acked.len();
    wait_for(Duration::from_secs(20), "every acked push delivered", || async {
        let got = check_room_stream("client", &inbox.packets(), 1000);
        acked.iter().all(|o| got.contains_key(&o.body)).then_some(())
    })
    .await;
    let (_, packets) = inbox.stop().await;
    let received = check_room_stream("client", &packets, 1000);
    let (missing, wrong) = acked_problems("client", &received, &acked);
    assert!(missing.is_empty() && wrong.is_empty(), "missing {missing:?}\nwrong {wrong:?}");
    eprintln!("membership 3→5→3: {want} acknowledged pushes, all delivered once, in order");
}
