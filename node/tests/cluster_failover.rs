//! No acknowledged push is lost, duplicated or reordered when the Raft leader (20 times) or the
//! job holding the push-log lease (twice) is `kill -9`'d and restarted while room pushes stream
//! in, retried across logic nodes with an `Idempotency-Key` (3 logic, 2 comet, 2 job processes);
//! clients stay connected. Prints `failover_ms median=… max=…`: kill → first ack of a later push.
mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    acked_problems, auth_req, exclusive, join, median_max_ms, room_check, wait_for, Cluster, Inbox,
    PushOutcome, PushStream, Pusher, Role,
};

const ROOM: &str = "live://1";
const ROOM_OP: i32 = 1000;
const ROOM_PATH: &str = "/goim/push/room?operation=1000&type=live&room=1";
/// Op of the mid pushes sent after the faults (client `i` has mid `i + 1`).
const MID_OP: i32 = 2000;
/// Each pusher starts a push this often (without waiting for the previous one).
const INTERVAL: Duration = Duration::from_millis(10);
const LEADER_KILLS: usize = 20;

/// Two clients per comet, one TCP and one WebSocket, in `ROOM`; waits until the cluster
/// counts them all, so room pushes reach both comets from the first one.
async fn clients(c: &Cluster) -> Vec<Inbox> {
    let mut inboxes = Vec::new();
    for (comet, node) in c.comets.iter().enumerate() {
        for ws in [false, true] {
            let mid = 1 + inboxes.len() as i64;
            let accepts = [ROOM_OP, MID_OP];
            let (client, _) = join(node, ws, &auth_req(mid, &format!("key-{mid}"), ROOM, &accepts)).await;
            let name = format!("mid {mid} on comet{} over {}", comet + 1, if ws { "ws" } else { "tcp" });
            inboxes.push(Inbox::spawn(name, client));
        }
    }
    let n = inboxes.len() as u64;
    wait_for(Duration::from_secs(15), "every client counted online", || async {
        (c.online_room(0, "1").await? == n).then_some(())
    })
    .await;
    inboxes
}

/// After the faults, a mid push to each client still reaches it (its session is still in
/// the session table). Returns what failed.
async fn mid_pushes_arrive(c: &Cluster, inboxes: &[Inbox]) -> Vec<String> {
    let mut failed = Vec::new();
    let mut sent = Vec::new();
    for (i, inbox) in inboxes.iter().enumerate() {
        let mid = i + 1;
        let body = format!("mid-push-after-the-faults-{mid}");
        let path = format!("/goim/push/mids?operation={MID_OP}&mids={mid}");
        let out = Pusher::new(c.logic_urls()).push(i, &path, &body, &body).await;
        match out.acked {
            Some((_, data)) => sent.push((inbox, body, data)),
            None => failed.push(format!("{}: mid push not acknowledged: {}", inbox.name, out.last_error)),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sent.iter().any(|(inbox, body, _)| !inbox.bodies().contains(body)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (inbox, body, data) in sent {
        if !inbox.bodies().contains(&body) {
            failed.push(format!("{}: a mid push for it (acknowledged: {data}) never arrived", inbox.name));
        }
    }
    failed
}

/// Every problem of every client's stream: connection lost, duplicates, room_seq not +1,
/// acknowledged pushes missing (only listed when `final_check`: until then they may be on
/// their way) or delivered with another room_seq than acknowledged.
fn problems(inboxes: &[Inbox], acked: &[PushOutcome], final_check: bool) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut missing_total = 0;
    for inbox in inboxes {
        if let Some(why) = inbox.ended() {
            all.push(format!("{}: connection lost: {why}", inbox.name));
        }
        let check = room_check(&inbox.name, &inbox.packets(), ROOM_OP);
        all.extend(check.problems);
        let (missing, wrong) = acked_problems(&inbox.name, &check.received, acked);
        all.extend(wrong);
        missing_total += missing.len();
        if final_check && !missing.is_empty() {
            all.push(format!(
                "{}: {} of {} acknowledged pushes missing (received {}), e.g. {:?}",
                inbox.name,
                missing.len(),
                acked.len(),
                check.received.len(),
                &missing[..missing.len().min(5)]
            ));
        }
    }
    (all, missing_total)
}

/// Waits until every acknowledged push reached every client, then checks each client's
/// stream: every acknowledged push exactly once with its room_seq, room_seq +1 each packet,
/// no connection lost. Reports every client's problems at once.
async fn assert_delivered(inboxes: Vec<Inbox>, outcomes: &[PushOutcome], earlier: Vec<String>) {
    let acked: Vec<PushOutcome> = outcomes.iter().filter(|o| o.acked.is_some()).cloned().collect();
    let report = |found: Vec<String>| {
        let all: Vec<String> = earlier.iter().cloned().chain(found).collect();
        format!("delivery of {} acknowledged pushes:\n{}", acked.len(), all.join("\n"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (found, missing) = problems(&inboxes, &acked, false);
        if found.is_empty() && missing == 0 {
            break;
        }
        // A gap or a duplicate never heals: report at once; missing pushes may be in flight.
        if !found.is_empty() || Instant::now() >= deadline {
            panic!("{}", report(problems(&inboxes, &acked, true).0));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No settling wait: the mid push each client got (`mid_pushes_arrive`) was proposed
    // after every room push, so anything delivered twice arrived before it.
    let (found, _) = problems(&inboxes, &acked, true);
    assert!(found.is_empty() && earlier.is_empty(), "{}", report(found));
    for inbox in inboxes {
        let name = inbox.name.clone();
        let (_client, packets) = inbox.stop().await;
        let n = packets.iter().filter(|p| p.op == ROOM_OP).count();
        eprintln!("{name}: {n} room pushes received, each once, room_seq +1 each");
    }
}

fn summarize(outcomes: &[PushOutcome]) -> (usize, usize, u32) {
    let acked = outcomes.iter().filter(|o| o.acked.is_some()).count();
    let retried = outcomes.iter().filter(|o| o.acked.is_some() && o.attempts > 1).count();
    let max_attempts = outcomes.iter().map(|o| o.attempts).max().unwrap_or(0);
    (acked, retried, max_attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_9_twenty_times_loses_and_duplicates_nothing() {
    let _one_cluster_at_a_time = exclusive().await;
    let began = Instant::now();
    let mut c = Cluster::start(3, 2, 2).await;
    let inboxes = clients(&c).await;
    let mut pusher = Pusher::new(c.logic_urls());
    pusher.give_up = Duration::from_secs(15);
    let stream = PushStream::start(&pusher, 3, INTERVAL, ROOM_PATH, "leader-kill");

    let mut failovers = Vec::new();
    for k in 1..=LEADER_KILLS {
        let leader = c.wait_leader(Duration::from_secs(10)).await;
        // The stream flows before the kill: a push sent from now on is acknowledged.
        let now = Instant::now();
        wait_for(Duration::from_secs(10), "pushes acknowledged before the kill", || async {
            stream.first_ack_of_push_sent_after(now)
        })
        .await;

        let killed_at = Instant::now();
        c.kill9(Role::Logic, leader);
        let acked_at =
            wait_for(Duration::from_secs(20), "an acknowledged push sent after the kill", || async {
                stream.first_ack_of_push_sent_after(killed_at)
            })
            .await;
        let took = acked_at - killed_at;
        let new_leader = c.wait_leader(Duration::from_secs(10)).await;
        eprintln!(
            "kill {k}/{LEADER_KILLS}: leader {} killed, {} leads; first acknowledged push sent after the kill: {} ms",
            c.logic[leader].name,
            c.logic[new_leader].name,
            took.as_millis()
        );
        failovers.push(took);
        c.restart(Role::Logic, leader).await;
    }
    let outcomes = stream.stop().await;
    let (median, max) = median_max_ms(&failovers);
    let (acked, retried, max_attempts) = summarize(&outcomes);
    eprintln!("failover_ms median={median} max={max} (over {LEADER_KILLS} leader kills)");
    eprintln!(
        "pushes: {} sent, {acked} acknowledged ({retried} after a retry, at most {max_attempts} attempts), {} given up",
        outcomes.len(),
        outcomes.len() - acked
    );
    let earlier = mid_pushes_arrive(&c, &inboxes).await;
    assert_delivered(inboxes, &outcomes, earlier).await;
    c.assert_all_alive();
    eprintln!("leader-kill test took {:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_kill_9_hands_the_partition_over_exactly_once() {
    let _one_cluster_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 2, 2).await;
    let inboxes = clients(&c).await;
    let pusher = Pusher::new(c.logic_urls());
    let stream = PushStream::start(&pusher, 2, INTERVAL, ROOM_PATH, "job-kill");

    for round in 1..=2 {
        let active = wait_for(Duration::from_secs(10), "a job holding the lease", || c.active_job()).await;
        let other = 1 - active;
        // Deliveries flow through the active job before it is killed.
        let now = Instant::now();
        wait_for(Duration::from_secs(10), "pushes acknowledged before the kill", || async {
            stream.first_ack_of_push_sent_after(now)
        })
        .await;

        let killed_at = Instant::now();
        c.kill9(Role::Job, active);
        let successor = c.jobs[other].job_id();
        wait_for(Duration::from_secs(15), &format!("{successor} to take the lease"), || async {
            (c.lease_holder().await? == successor).then_some(())
        })
        .await;
        let took_over = killed_at.elapsed();
        // A push sent now is delivered (by the successor) to every client.
        let now = Instant::now();
        let body = wait_for(Duration::from_secs(10), "a push acknowledged after the takeover", || async {
            stream.finished().into_iter().find(|o| o.sent_at >= now && o.acked.is_some()).map(|o| o.body)
        })
        .await;
        for inbox in &inboxes {
            wait_for(Duration::from_secs(10), &format!("{} to receive {body}", inbox.name), || async {
                inbox.bodies().contains(&body).then_some(())
            })
            .await;
        }
        eprintln!(
            "round {round}: {} killed, {} took the lease after {} ms, delivering after {} ms",
            c.jobs[active].name,
            c.jobs[other].name,
            took_over.as_millis(),
            killed_at.elapsed().as_millis()
        );
        c.restart(Role::Job, active).await;
    }
    let outcomes = stream.stop().await;
    let (acked, retried, _) = summarize(&outcomes);
    eprintln!("pushes: {} sent, {acked} acknowledged ({retried} after a retry)", outcomes.len());
    assert_eq!(acked, outcomes.len(), "no leader was killed: every push is acknowledged");
    let earlier = mid_pushes_arrive(&c, &inboxes).await;
    assert_delivered(inboxes, &outcomes, earlier).await;
    c.assert_all_alive();
}
