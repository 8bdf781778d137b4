//! A comet killed and restarted while the job leaves it alone (it failed a batch): the room
//! messages pushed meanwhile are held for it and reach a client that resumed on it, with no
//! later message needed to show the gap (JEPSEN.md finding 6). Separate processes: 1 logic,
//! 1 comet, 1 job.
mod common;

use std::time::{Duration, Instant};

use common::cluster::{auth_req, data_of, exclusive, join, wait_for, Cluster, Role};
use goim_client::{AuthRequest, Client, ClientError};
use goim_net::packet::Packet;

const ROOM: &str = "live://1";
const OP: i32 = 1000;
/// Long enough that the restart, the resume and the pushes below land inside it.
const RETRY_MS: &str = "10000";

async fn push(c: &Cluster, body: &str) -> u64 {
    let url = format!("{}/goim/push/room?operation={OP}&type=live&room=1", c.logic[0].url());
    let reply = c.http.post(&url).body(body.to_string()).send().await.expect("push").json().await.ok();
    let data = data_of(reply).unwrap_or_else(|| panic!("push {body} not acknowledged"));
    data["room_seq"].as_u64().unwrap_or_else(|| panic!("push {body}: no room_seq in {data}"))
}

async fn next(client: &mut Client, within: Duration) -> Packet {
    match client.recv_timeout(within).await {
        Ok(Some(p)) => p,
        other => panic!("expected a push within {within:?}, got {other:?}"),
    }
}

/// A counter's value in the job's `/metrics` (0 while it was never incremented).
async fn job_counter(c: &Cluster, name: &str) -> u64 {
    let text = c.metrics(&c.jobs[0]).await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_pushed_while_the_job_leaves_a_restarted_comet_alone_reach_it() {
    let _one_cluster_at_a_time = exclusive().await;
    // The comet stays registered while it is down, so the job keeps its link (and its
    // failure) rather than forgetting it.
    let mut c =
        Cluster::start_with(1, 1, 1, &["--job-comet-retry-ms", RETRY_MS, "--comet-ttl-ms", "60000"]).await;
    let (mut client, reply) = join(&c.comets[0], false, &auth_req(1, "key-1", ROOM, &[OP])).await;
    let first = push(&c, "m1").await;
    let p = next(&mut client, Duration::from_secs(10)).await;
    assert_eq!((&p.body[..], p.seq as u64), (&b"m1"[..], first));

    c.kill9(Role::Comet, 0);
    let killed_at = Instant::now();
    let second = push(&c, "m2").await;
    // The job fails to hand m2 over (the ack times out, the new connection is refused) and
    // leaves the comet alone.
    wait_for(Duration::from_secs(30), "the job to give up on the dead comet", || async {
        (job_counter(&c, "goim_job_push_failures_total").await >= 1).then_some(())
    })
    .await;
    eprintln!("job gave up on the comet {:?} after the kill", killed_at.elapsed());
    let failed_at = Instant::now();

    c.restart(Role::Comet, 0).await;
    let resume = AuthRequest {
        room_seq: Some(first),
        epoch: Some(reply.epoch.clone()),
        ..auth_req(1, "key-1", ROOM, &[OP])
    };
    let (mut client, reply) = join(&c.comets[0], false, &resume).await;
    assert!(reply.recovered, "resume from {first}: {reply:?}");
    let p = next(&mut client, Duration::from_secs(10)).await;
    assert_eq!((&p.body[..], p.seq as u64), (&b"m2"[..], second), "m2 from history");

    let held_before = job_counter(&c, "goim_job_push_held_total").await;
    let third = push(&c, "m3").await;
    let fourth = push(&c, "m4").await;
    let pushed_after = failed_at.elapsed();
    wait_for(Duration::from_secs(10), "the job to hold m3 and m4 for the comet", || async {
        (job_counter(&c, "goim_job_push_held_total").await > held_before).then_some(())
    })
    .await;
    assert!(
        pushed_after < Duration::from_millis(RETRY_MS.parse().unwrap_or(0)),
        "m3 and m4 were pushed {pushed_after:?} after the job gave up: outside its retry wait, so this run did not test holding"
    );

    // No later push: m3 and m4 arrive when the job tries the comet again.
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = next(&mut client, Duration::from_secs(20)).await;
        got.push((String::from_utf8_lossy(&p.body).into_owned(), p.seq as u64));
    }
    assert_eq!(got, [("m3".to_string(), third), ("m4".to_string(), fourth)]);
    match client.recv_timeout(Duration::from_millis(500)).await {
        Err(ClientError::Timeout) => {}
        other => panic!("expected nothing more, got {other:?}"),
    }
    // And live delivery goes on.
    let fifth = push(&c, "m5").await;
    let p = next(&mut client, Duration::from_secs(10)).await;
    assert_eq!((&p.body[..], p.seq as u64), (&b"m5"[..], fifth));
    c.assert_all_alive();
}
