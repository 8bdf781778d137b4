//! Recovery without a gap: a client that comes back after missing room pushes gets exactly
//! what it missed, then live ones, with no gap and no duplicate at the seam, on whichever
//! comet it comes back to; a gap beyond retention says `recovered:false` and carries on
//! live. Every node is its own process (the `common::cluster` harness).
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use goim_client::{AuthRequest, Client, Event, ResumeConfig, ResumingClient};
use goim_net::packet::Packet;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const OP: i32 = 1000;
const ROOM: &str = "live://1";
const PUSH_ROOM: &str = "/goim/push/room?operation=1000&type=live&room=1";

/// Pushes `n` room messages `{prefix}-{i}` with 32 in flight; all must be acknowledged.
async fn push_many(pusher: &Pusher, n: usize, prefix: &str) -> Vec<PushOutcome> {
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    for i in 0..n {
        if set.len() >= 32 {
            out.push(set.join_next().await.unwrap().unwrap());
        }
        let pusher = pusher.clone();
        let body = format!("{prefix}-{i}");
        set.spawn(async move { pusher.push(i, PUSH_ROOM, &body, &body).await });
    }
    while let Some(o) = set.join_next().await {
        out.push(o.unwrap());
    }
    for o in &out {
        assert!(o.acked.is_some(), "push {} not acknowledged: {}", o.body, o.last_error);
    }
    out
}

fn resume_req(mid: i64, key: &str, room_seq: u64, epoch: &str) -> AuthRequest {
    AuthRequest { room_seq: Some(room_seq), epoch: Some(epoch.into()), ..auth_req(mid, key, ROOM, &[]) }
}

/// Reads until `n` room packets arrived (or `within` passed).
async fn recv_room(client: &mut Client, n: usize, within: Duration) -> Vec<Packet> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        match client.recv_timeout(Duration::from_millis(200)).await {
            Ok(Some(p)) if p.op == OP => got.push(p),
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("connection closed after {} packets", got.len()),
        }
    }
    got
}

/// Room offsets of `packets` (header seq).
fn offsets(packets: &[Packet]) -> Vec<u64> {
    packets.iter().map(|p| p.seq as u32 as u64).collect()
}

/// Every acknowledged push in `acked` is in `received` with the room_seq its reply named.
fn assert_all_received(who: &str, received: &HashMap<String, u64>, acked: &[PushOutcome]) {
    let (missing, wrong) = acked_problems(who, received, acked);
    assert!(
        missing.is_empty(),
        "{who}: {} acknowledged pushes never arrived: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_client_back_on_the_other_comet_gets_the_1000_it_missed_then_live_under_load() {
    let _x = exclusive().await;
    let mut c = Cluster::start(3, 2, 1).await;
    let pusher = Pusher::new(c.logic_urls());

    // An observer stays on comet 2 throughout; the client starts on comet 1.
    let (observer, _) = join(&c.comets[1], true, &auth_req(2, "observer", ROOM, &[])).await;
    let observer = Inbox::spawn("observer", observer);
    let (mut client, reply) = join(&c.comets[0], false, &auth_req(1, "client", ROOM, &[])).await;
    let epoch = reply.epoch.clone();
    assert!(!epoch.is_empty(), "a room joined has an epoch");
    let before = push_many(&pusher, 5, "before").await;
    let seen = recv_room(&mut client, 5, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 5);
    let last_seen = *offsets(&seen).last().unwrap();
    client.close().await.unwrap();

    let missed = push_many(&pusher, 1000, "missed").await;
    // Pushes keep arriving while the client comes back: the replay meets live delivery.
    let stream = PushStream::start(&pusher, 3, Duration::from_millis(10), PUSH_ROOM, "live");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (client, reply) = join(&c.comets[1], false, &resume_req(1, "client", last_seen, &epoch)).await;
    assert!(reply.recovered, "{reply:?}");
    assert_eq!((reply.room_seq, reply.epoch.as_str()), (last_seen, epoch.as_str()));
    let inbox = Inbox::spawn("client", client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = stream.stop().await;
    assert!(live.iter().all(|o| o.acked.is_some()), "every live push acknowledged");

    let total = missed.len() + live.len();
    // Once the sentinel (pushed after everything) is in, anything sent twice is in too.
    let sentinel = pusher.room_sentinel("type=live&room=1").await;
    inbox.wait_body(&sentinel, Duration::from_secs(20)).await;
    let (_, packets) = inbox.stop().await;
    let packets: Vec<Packet> = packets.into_iter().filter(|p| p.op == OP).collect();
    assert_eq!(packets.len(), total, "exactly the missed and the live pushes, nothing twice");
    assert_eq!(offsets(&packets[..1]), [last_seen + 1], "the replay starts right after what it saw");
    let received = check_room_stream("client", &packets, OP);
    assert_all_received("client", &received, &missed);
    assert_all_received("client", &received, &live);
    assert!(before.iter().all(|o| !received.contains_key(&o.body)), "nothing it had seen comes again");
    // Replayed pushes come first, in push order.
    let first_live = packets.iter().position(|p| p.body.starts_with(b"live")).unwrap_or(packets.len());
    assert_eq!(first_live, missed.len(), "the 1000 missed come before any live one");

    let (_, seen_by_observer) = observer.stop().await;
    let observed = check_room_stream("observer", &seen_by_observer, OP);
    assert_eq!(observed.len(), before.len() + total);
    c.assert_all_alive();
}

#[tokio::test]
async fn a_gap_beyond_retention_is_not_recovered_and_live_delivery_goes_on() {
    let _x = exclusive().await;
    const ROOM_AGE: Duration = Duration::from_secs(8);
    let age = ROOM_AGE.as_millis().to_string();
    let c =
        Cluster::start_with(1, 2, 1, &["--room-retention-records", "100", "--room-retention-ms", &age]).await;
    let pusher = Pusher::new(c.logic_urls());
    let (mut client, reply) = join(&c.comets[0], true, &auth_req(1, "k", ROOM, &[])).await;
    let epoch = reply.epoch.clone();
    push_many(&pusher, 3, "seen").await;
    assert_eq!(offsets(&recv_room(&mut client, 3, Duration::from_secs(10)).await), [1, 2, 3]);
    client.close().await.unwrap();
    push_many(&pusher, 300, "gone").await;

    // Offsets 4..=200 fell out of the room's 100-message window: no partial replay.
    let (mut client, reply) = join(&c.comets[1], true, &resume_req(1, "k", 3, &epoch)).await;
    assert!(!reply.recovered, "{reply:?}");
    assert_eq!(reply.room_seq, 303, "the stream goes on from the room's offset");
    let live = push_many(&pusher, 5, "after").await;
    let last_push = Instant::now();
    let got = recv_room(&mut client, 5, Duration::from_secs(10)).await;
    assert_eq!(offsets(&got), [304, 305, 306, 307, 308]);
    assert_all_received("client", &check_room_stream("client", &got, OP), &live);
    client.close().await.unwrap();

    // Within the window it is recovered; another epoch never is.
    let (mut client, reply) = join(&c.comets[0], false, &resume_req(1, "k", 300, &epoch)).await;
    assert!(reply.recovered && reply.room_seq == 300, "{reply:?}");
    assert_eq!(
        offsets(&recv_room(&mut client, 8, Duration::from_secs(10)).await),
        (301..=308).collect::<Vec<_>>()
    );
    client.close().await.unwrap();
    let (_, reply) = join(&c.comets[0], false, &resume_req(1, "k", 300, "not-the-epoch")).await;
    assert!(!reply.recovered && reply.room_seq == 308, "{reply:?}");

    // The same window through HTTP.
    let url = format!("{}/goim/history/room?type=live&room=1&since=3&limit=10", c.logic[0].url());
    let h = data_of(c.get(&url).await).expect("history reply");
    assert_eq!(h["complete"], false, "{h}");
    assert_eq!(h["room_seq"], 308);
    assert_eq!(h["epoch"], epoch.as_str());
    assert_eq!(h["messages"][0]["room_seq"], 209, "the oldest of the last 100");
    let url = format!("{}/goim/history/room?type=live&room=1&since=305", c.logic[0].url());
    let h = data_of(c.get(&url).await).expect("history reply");
    assert_eq!(h["complete"], true, "{h}");
    let bodies: Vec<&str> =
        h["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    let want: Vec<String> = got[2..].iter().map(|p| String::from_utf8_lossy(&p.body).into_owned()).collect();
    assert_eq!(bodies, want, "306..=308, as delivered");
    let bad =
        data_of(c.get(&format!("{}/goim/history/room?type=live&room=1&since=x", c.logic[0].url())).await);
    assert!(bad.is_none(), "a bad since is a -400");

    // A room change resumes too: op 12 with JSON, answered in JSON.
    let (mut mover, _) = join(&c.comets[1], false, &auth_req(5, "mover", "live://2", &[])).await;
    let change = format!(r#"{{"room_id":"{ROOM}","room_seq":305,"epoch":"{epoch}"}}"#);
    let body = mover.request(goim_net::packet::op::CHANGE_ROOM, change).await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        reply,
        serde_json::json!({"room_id": ROOM, "room_seq": 305, "epoch": epoch, "recovered": true})
    );
    assert_eq!(offsets(&recv_room(&mut mover, 3, Duration::from_secs(10)).await), [306, 307, 308]);

    // Past the room's age limit the same offsets are no longer recoverable.
    tokio::time::sleep_until((last_push + ROOM_AGE + Duration::from_millis(500)).into()).await;
    let (_, reply) = join(&c.comets[0], false, &resume_req(1, "k", 305, &epoch)).await;
    assert!(!reply.recovered && reply.room_seq == 308, "{reply:?}");
    let h = data_of(c.get(&url).await).expect("history reply");
    assert_eq!(
        (h["complete"].as_bool(), h["messages"].as_array().map(Vec::len)),
        (Some(false), Some(0)),
        "{h}"
    );
}

/// A `ResumingClient`'s room packets, collected across reconnects.
struct Resumer {
    packets: Arc<Mutex<Vec<Packet>>>,
    connects: Arc<Mutex<Vec<(String, bool)>>>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), String>>,
}

impl Resumer {
    async fn start(c: &Cluster, comet: &ProcNode, ws: bool, mid: i64) -> Resumer {
        let logic_http = c.logic.iter().map(|n| n.http.to_string()).collect();
        let mut cfg = ResumeConfig::new(logic_http, auth_req(mid, &format!("r{mid}"), ROOM, &[]));
        cfg.ws = ws;
        cfg.first_comet = Some(if ws { comet.ws.to_string() } else { comet.tcp_addr() });
        cfg.backoff_max = Duration::from_millis(500);
        let mut client = ResumingClient::connect(cfg).await.expect("first connect");
        let packets: Arc<Mutex<Vec<Packet>>> = Arc::default();
        let connects: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let stop = CancellationToken::new();
        let task = {
            let (packets, connects, stop) = (packets.clone(), connects.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        e = client.recv() => e.map_err(|e| e.to_string())?,
                    };
                    match event {
                        Event::Message(p) => packets.lock().unwrap().push(p),
                        Event::Connected(r) => {
                            connects.lock().unwrap().push((client.comet().to_string(), r.recovered))
                        }
                    }
                }
            })
        };
        Resumer { packets, connects, stop, task }
    }

    fn has_body(&self, body: &str) -> bool {
        self.packets.lock().unwrap().iter().any(|p| p.body.as_ref() == body.as_bytes())
    }
}

#[tokio::test]
async fn comet_kill_9_under_a_steady_stream_clients_resume_elsewhere_exactly_once() {
    comet_loss_under_a_steady_stream(false).await;
}

/// The same while the cluster also loses its Raft leader: clients come back during the
/// election, when no session can be recorded; their auths are refused and retried until
/// one succeeds, and the resume is still whole.
#[tokio::test]
async fn comet_and_raft_leader_kill_9_together_clients_still_resume_exactly_once() {
    comet_loss_under_a_steady_stream(true).await;
}

async fn comet_loss_under_a_steady_stream(kill_leader_too: bool) {
    let _x = exclusive().await;
    let c = Cluster::start(3, 2, 1).await;
    let pusher = Pusher::new(c.logic_urls());
    let mut clients = Vec::new();
    for i in 0..16 {
        // 12 on the comet that dies (TCP and WS), 4 on the one that stays.
        let comet = if i < 12 { &c.comets[0] } else { &c.comets[1] };
        clients.push(Resumer::start(&c, comet, i % 2 == 0, i as i64 + 1).await);
    }
    let stream = PushStream::start(&pusher, 3, Duration::from_millis(20), PUSH_ROOM, "steady");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = c;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let killed_at = Instant::now();
    c.kill9(Role::Comet, 0);
    if kill_leader_too {
        c.kill9(Role::Logic, leader);
    }
    let moved_tcp = c.comets[1].tcp_addr();
    let moved_ws = c.comets[1].ws.to_string();
    wait_for(Duration::from_secs(20), "every client of the killed comet reconnected elsewhere", || async {
        clients
            .iter()
            .take(12)
            .all(|r| {
                r.connects
                    .lock()
                    .unwrap()
                    .iter()
                    .skip(1)
                    .any(|(comet, _)| *comet == moved_tcp || *comet == moved_ws)
            })
            .then_some(())
    })
    .await;
    eprintln!("all 12 clients resumed on comet2 within {:?} of the kill", killed_at.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = stream.stop().await;
    let lost: Vec<&PushOutcome> = outcomes.iter().filter(|o| o.acked.is_none()).collect();
    assert!(lost.is_empty(), "pushes never acknowledged: {lost:?}");
    let acked = outcomes;
    assert!(acked.len() > 100, "a steady stream ({} acknowledged)", acked.len());
    // Once every client has the sentinel (pushed after everything), anything sent twice
    // is in too.
    let sentinel = pusher.room_sentinel("type=live&room=1").await;
    wait_for(Duration::from_secs(20), "every client received every push and the sentinel", || async {
        clients.iter().all(|r| r.has_body(&sentinel)).then_some(())
    })
    .await;
    for (i, r) in clients.into_iter().enumerate() {
        r.stop.cancel();
        r.task.await.unwrap().unwrap_or_else(|e| panic!("client {i}: {e}"));
        let packets: Vec<Packet> = r.packets.lock().unwrap().iter().filter(|p| p.op == OP).cloned().collect();
        let who = format!("client {i}");
        let received = check_room_stream(&who, &packets, OP);
        assert_all_received(&who, &received, &acked);
        assert_eq!(packets.len(), acked.len(), "{who}: exactly once");
        let connects = r.connects.lock().unwrap().clone();
        if i < 12 {
            assert!(
                connects.len() >= 2 && connects[1..].iter().all(|(_, recovered)| *recovered),
                "{who}: {connects:?}"
            );
        }
    }
    if kill_leader_too {
        c.restart(Role::Logic, leader).await;
    }
    c.assert_all_alive();
}

#[tokio::test]
async fn the_seam_holds_under_load_across_many_reconnects() {
    let _x = exclusive().await;
    let c = Cluster::start(3, 2, 1).await;
    let pusher = Pusher::new(c.logic_urls());
    let stream = PushStream::start(&pusher, 4, Duration::from_millis(5), PUSH_ROOM, "load");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6i64 {
        let comets = [c.comets[0].tcp_addr(), c.comets[1].tcp_addr()];
        let (ws_urls, ws) = ([c.comets[0].ws_url(), c.comets[1].ws_url()], i % 2 == 1);
        tasks.spawn(async move {
            let key = format!("seam{i}");
            let (mut packets, mut start, mut epoch) = (Vec::new(), None::<u64>, String::new());
            // Eight stays of 50..400 ms with absences half as long, alternating comets, each
            // resuming where the last ended.
            for round in 0..8usize {
                let at = (i as usize + round) % 2;
                let mut client = match ws {
                    true => Client::connect_ws(&ws_urls[at]).await.unwrap(),
                    false => Client::connect_tcp(&comets[at]).await.unwrap(),
                };
                let req = match start {
                    None => auth_req(i, &key, ROOM, &[]),
                    Some(_) => {
                        let last =
                            packets.last().map_or(start.unwrap_or(0), |p: &Packet| p.seq as u32 as u64);
                        resume_req(i, &key, last, &epoch)
                    }
                };
                let reply = client.auth(&req).await.unwrap();
                assert!(start.is_none() || reply.recovered, "{key} round {round}: {reply:?}");
                start.get_or_insert(reply.room_seq);
                epoch = reply.epoch;
                let stay = Duration::from_millis(50 + (i as u64 * 37 + round as u64 * 53) % 350);
                let until = Instant::now() + stay;
                while let Ok(Ok(Some(p))) = tokio::time::timeout_at(until.into(), client.recv()).await {
                    if p.op == OP {
                        packets.push(p);
                    }
                }
                client.close().await.unwrap();
                // Away for a while: the next stay starts with a replay while pushes go on.
                tokio::time::sleep(stay / 2).await;
            }
            (key, start.unwrap_or(0), epoch, packets)
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        done.push(r.unwrap());
    }
    let acked: Vec<PushOutcome> = stream.stop().await.into_iter().filter(|o| o.acked.is_some()).collect();
    let newest = acked.iter().filter_map(PushOutcome::room_seq).max().unwrap();
    assert!(acked.len() > 500, "under load: {} pushes acknowledged", acked.len());
    for (key, start, epoch, mut packets) in done {
        // Back once more for whatever is left, then the whole stream must be dense.
        let last = packets.last().map_or(start, |p| p.seq as u32 as u64);
        let (mut client, reply) = join(&c.comets[0], false, &resume_req(0, &key, last, &epoch)).await;
        assert!(reply.recovered, "{key}: {reply:?}");
        packets.extend(recv_room(&mut client, (newest - last) as usize, Duration::from_secs(20)).await);
        assert_eq!(offsets(&packets[..1]), [start + 1], "{key}");
        let received = check_room_stream(&key, &packets, OP);
        assert_eq!(packets.len() as u64, newest - start, "{key}: every offset once");
        let after_start: Vec<PushOutcome> =
            acked.iter().filter(|o| o.room_seq().is_some_and(|s| s > start)).cloned().collect();
        assert_all_received(&key, &received, &after_start);
    }
    let metrics = c.metrics(&c.comets[0]).await.unwrap_or_default();
    assert!(metrics.contains("goim_comet_recoveries_total{result=\"recovered\"}"), "recoveries counted");
}
