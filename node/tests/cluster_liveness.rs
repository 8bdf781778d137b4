//! The kernel-closed liveness connections (raft/src/liveness.rs): a `kill -9`'d leader is
//! replaced by an election a follower starts as soon as the leader's socket closes; a
//! frozen (SIGSTOP) leader, whose sockets stay open, is replaced by the election timers
//! alone; garbage, squatters and a flood on the liveness port are counted and change no
//! leader. Real processes, 3 logic nodes.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::cluster::{exclusive, wait_for, Cluster, Role};

/// The value of counter `name` in a node's /metrics text (0 when not yet counted).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn liveness_elections(c: &Cluster, nodes: &[usize]) -> u64 {
    let mut total = 0;
    for &i in nodes {
        let text = c.metrics(&c.logic[i]).await.unwrap_or_default();
        total += counter(&text, "goim_liveness_elections_total");
    }
    total
}

fn signal(pid: u32, sig: &str) {
    let ok =
        std::process::Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_through_its_closed_socket_a_frozen_one_by_the_timers() {
    let _one_cluster_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 0, 0).await;

    // kill -9: the kernel closes the leader's sockets, a follower elects at once.
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let before = liveness_elections(&c, &followers).await;
    c.kill9(Role::Logic, leader);
    let new_leader = wait_for(Duration::from_secs(20), "a new leader after the kill", || async {
        c.leader().await.filter(|l| *l != leader)
    })
    .await;
    let after = liveness_elections(&c, &followers).await;
    assert!(after > before, "no follower started an election on the closed socket ({before} → {after})");
    c.restart(Role::Logic, leader).await;
    c.wait_caught_up(leader, Duration::from_secs(30)).await;

    // SIGSTOP: the process lives, its sockets stay open: only the timers may replace it.
    let frozen = c.wait_leader(Duration::from_secs(20)).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != frozen).collect();
    let before = liveness_elections(&c, &others).await;
    let pid = c.logic[frozen].pid();
    signal(pid, "-STOP");
    let replaced = wait_for(Duration::from_secs(20), "a leader replacing the frozen one", || async {
        c.leader().await.filter(|l| *l != frozen)
    })
    .await;
    let after = liveness_elections(&c, &others).await;
    signal(pid, "-CONT");
    assert_eq!(after, before, "an election was started for a leader whose process was alive");
    assert!(replaced != frozen && new_leader != leader);
    c.wait_caught_up(frozen, Duration::from_secs(30)).await;
    c.assert_all_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_flood_on_the_liveness_port_are_counted_and_depose_no_one() {
    let _one_cluster_at_a_time = exclusive().await;
    let c = Cluster::start(3, 0, 0).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let term = c.status(leader).await.and_then(|s| s["term"].as_u64());
    let addr = c.logic[leader].quic_addr();

    // A greeting names the node; a byte sent back is garbage and ends the connection.
    let mut s = TcpStream::connect(&addr).expect("connect to the liveness port");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut hello = [0u8; 20];
    s.read_exact(&mut hello).expect("greeting");
    assert_eq!(&hello[..12], b"goim-alive/1");
    assert_eq!(u64::from_be_bytes(hello[12..].try_into().expect("8 bytes")), c.logic[leader].id);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write garbage");
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => assert!(rest.is_empty()),
        other => panic!("garbage should get a close and nothing else, got {other:?} and {rest:?}"),
    }

    // More connections than the listener holds: the surplus is closed and counted.
    let flood: Vec<TcpStream> = (0..100).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    let text = wait_for(Duration::from_secs(10), "the flood counted", || async {
        let text = c.metrics(&c.logic[leader]).await?;
        (counter(&text, "goim_liveness_refused_total") > 0).then_some(text)
    })
    .await;
    assert!(counter(&text, "goim_liveness_garbage_total") >= 1, "garbage not counted:\n{text}");
    drop(flood);

    // None of it moved leadership.
    assert_eq!(c.leader().await, Some(leader));
    assert_eq!(c.status(leader).await.and_then(|s| s["term"].as_u64()), term);
}
