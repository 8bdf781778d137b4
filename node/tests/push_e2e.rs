//! Pushes end to end on one node (the real binary): TCP and WebSocket clients in one room get
//! key, mid, room and broadcast pushes exactly once with the right op and body (TCP as inner
//! packets, WS as op-9 frames), `accepts` filtering, seqs in the HTTP reply, heartbeat online
//! counts, `/goim/online/*`, counts falling on leave and on a silent client's expiry, and the
//! job's offset reaching the log's head once pushes stop.
mod common;

use std::time::Duration;

use common::{eventually, get, post, Node};
use goim_client::{AuthRequest, Client, ClientError};
use goim_net::packet::{op, split_batch, Packet};
use serde_json::Value;

const ROOM: &str = "live://1000";

async fn auth(c: &mut Client, mid: i64, accepts: Vec<i32>) -> goim_client::AuthReply {
    let reply = c
        .auth(&AuthRequest {
            mid,
            room_id: ROOM.into(),
            platform: "test".into(),
            accepts,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reply.mid, mid);
    assert_eq!(reply.room_id, ROOM);
    assert!(!reply.key.is_empty(), "server generates a key");
    reply
}

/// The next application packets (op-9 batches flattened), exactly `n` of them, then nothing
/// more within a short quiet period.
async fn exactly(c: &mut Client, n: usize) -> Vec<Packet> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.recv_timeout(Duration::from_secs(5)).await {
            Ok(Some(p)) => got.push(p),
            other => panic!("expected {n} packets, got {} then {other:?}", got.len()),
        }
    }
    assert_nothing_more(c).await;
    got
}

async fn assert_nothing_more(c: &mut Client) {
    match c.recv_timeout(Duration::from_millis(400)).await {
        Err(ClientError::Timeout) => {}
        other => panic!("expected silence, got {other:?}"),
    }
}

fn seq_of(reply: &Value) -> u64 {
    assert_eq!(reply["code"], 0, "push failed: {reply}");
    reply["data"]["seq"].as_u64().expect("seq in data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_tcp_and_ws_clients_exactly_once() {
    let node = Node::start(&["--renew-interval-ms", "300"]).await;
    let http = node.http();

    let mut tcp = Client::connect_tcp(&node.tcp()).await.unwrap();
    let tcp_auth = auth(&mut tcp, 11, vec![1000, 1001]).await;
    let mut ws = Client::connect_ws(&node.ws()).await.unwrap();
    let ws_auth = auth(&mut ws, 22, vec![1000]).await;
    let mut other = Client::connect_tcp(&node.tcp()).await.unwrap();
    let other_auth = auth(&mut other, 33, vec![2000]).await;

    // Keys: respects accepts (other does not accept 1000).
    let url = format!(
        "{http}/goim/push/keys?operation=1000&keys={}&keys={},{}",
        tcp_auth.key, ws_auth.key, other_auth.key
    );
    let s1 = seq_of(&post(&url, "to-keys").await);
    for c in [&mut tcp, &mut ws] {
        let p = exactly(c, 1).await;
        assert_eq!((p[0].op, &p[0].body[..]), (1000, &b"to-keys"[..]));
    }
    assert_nothing_more(&mut other).await;

    // Mids: only mid 33's connection, op 2000 which it accepts.
    let s2 = seq_of(&post(&format!("{http}/goim/push/mids?operation=2000&mids=33"), "to-mid").await);
    assert!(s2 > s1, "seqs grow: {s1} then {s2}");
    let p = exactly(&mut other, 1).await;
    assert_eq!((p[0].op, &p[0].body[..]), (2000, &b"to-mid"[..]));
    assert_nothing_more(&mut tcp).await;
    assert_nothing_more(&mut ws).await;

    // Room: ignores accepts; TCP sees inner packets, WS sees one op-9 frame.
    let reply = post(&format!("{http}/goim/push/room?operation=3000&type=live&room=1000"), "to-room").await;
    let s3 = seq_of(&reply);
    assert_eq!(reply["data"]["room_seq"], 1);
    assert!(s3 > s2);
    for c in [&mut tcp, &mut other] {
        let p = c.recv_frame().await.unwrap().unwrap();
        assert_eq!(
            (p.op, &p.body[..], p.seq),
            (3000, &b"to-room"[..], 1),
            "TCP gets the inner packet, seq = room_seq"
        );
        assert_nothing_more(c).await;
    }
    let frame = ws.recv_frame().await.unwrap().unwrap();
    assert_eq!(frame.op, op::RAW, "WS gets an op-9 frame");
    let inner = split_batch(frame.body, 1 << 20).unwrap();
    assert_eq!(inner.len(), 1);
    assert_eq!((inner[0].op, &inner[0].body[..]), (3000, &b"to-room"[..]));
    assert_nothing_more(&mut ws).await;

    // All: respects accepts.
    let s4 = seq_of(&post(&format!("{http}/goim/push/all?operation=1000&speed=10"), "to-all").await);
    assert!(s4 > s3);
    for c in [&mut tcp, &mut ws] {
        let p = exactly(c, 1).await;
        assert_eq!((p[0].op, &p[0].body[..]), (1000, &b"to-all"[..]));
    }
    assert_nothing_more(&mut other).await;

    // A burst of room pushes arrives complete and in order on both transports.
    for i in 0..50 {
        let r =
            post(&format!("{http}/goim/push/room?operation=3001&type=live&room=1000"), format!("m{i}")).await;
        assert_eq!(r["data"]["room_seq"], 2 + i);
    }
    for c in [&mut tcp, &mut ws, &mut other] {
        let got = exactly(c, 50).await;
        let bodies: Vec<String> = got.iter().map(|p| String::from_utf8_lossy(&p.body).into_owned()).collect();
        assert_eq!(bodies, (0..50).map(|i| format!("m{i}")).collect::<Vec<_>>());
        let seqs: Vec<i32> = got.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, (2..52).collect::<Vec<i32>>(), "room_seq in the header");
    }

    // A client joining now is told the room's offset (51 room pushes so far); one in a
    // room nobody pushed to starts at 0.
    let mut late = Client::connect_ws(&node.ws()).await.unwrap();
    assert_eq!(auth(&mut late, 44, vec![]).await.room_seq, 51);
    let mut elsewhere = Client::connect_tcp(&node.tcp()).await.unwrap();
    let reply = elsewhere
        .auth(&AuthRequest { mid: 45, room_id: "live://9".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(reply.room_seq, 0);

    // Offsets are committed beside delivery, at most every 200 ms: once pushes stop, the
    // job's committed offset reaches the log's head (nothing left for a successor to resend
    // but what came since).
    let status = eventually(Duration::from_secs(10), "the job's offset at the log's head", || async {
        let s = get(&format!("{http}/cluster/status")).await["data"].take();
        (s["jobs"][0]["lag"] == 0).then_some(s)
    })
    .await;
    assert_eq!(status["jobs"][0]["offset"], status["push_log"]["last_seq"], "{status}");
    assert!(status["jobs"][0]["offset"].as_u64() >= Some(s4 + 50), "{status}");
}

async fn room_count(http: &str) -> u64 {
    get(&format!("{http}/goim/online/room?type=live&rooms=1000")).await["data"]["1000"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_counts_follow_joins_leaves_and_expiry() {
    // Heartbeat 1 s: a client silent for 2 s is dropped.
    let node = Node::start(&["--renew-interval-ms", "200", "--heartbeat-secs", "1"]).await;
    let http = node.http();

    let mut a = Client::connect_tcp(&node.tcp()).await.unwrap();
    auth(&mut a, 1, vec![]).await;
    let mut b = Client::connect_ws(&node.ws()).await.unwrap();
    auth(&mut b, 2, vec![]).await;
    let mut silent = Client::connect_tcp(&node.tcp()).await.unwrap();
    auth(&mut silent, 3, vec![]).await;
    let mut elsewhere = Client::connect_tcp(&node.tcp()).await.unwrap();
    elsewhere
        .auth(&AuthRequest { mid: 4, room_id: "live://2000".into(), ..Default::default() })
        .await
        .unwrap();

    assert_eq!(a.heartbeat().await.unwrap(), 3, "heartbeat reply = room online count");
    assert_eq!(elsewhere.heartbeat().await.unwrap(), 1);

    eventually(Duration::from_secs(5), "room count 3", || async {
        (room_count(&http).await == 3).then_some(())
    })
    .await;
    let top = get(&format!("{http}/goim/online/top?type=live&limit=10")).await;
    assert_eq!(top["code"], 0);
    assert_eq!(top["data"][0]["room_id"], "1000");
    assert_eq!(top["data"][0]["count"], 3);
    assert_eq!(top["data"][1]["room_id"], "2000");
    assert_eq!(top["data"][1]["count"], 1);
    let total = get(&format!("{http}/goim/online/total")).await;
    assert_eq!(total["data"]["conn_count"], 4);
    assert_eq!(total["data"]["ip_count"], 1, "all from 127.0.0.1");

    // b leaves cleanly; `silent` stops heartbeating and must expire; a keeps heartbeating.
    b.close().await.unwrap();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        a.heartbeat().await.unwrap();
        elsewhere.heartbeat().await.unwrap();
    }
    eventually(Duration::from_secs(5), "room count 1", || async {
        (room_count(&http).await == 1).then_some(())
    })
    .await;
    assert_eq!(a.heartbeat().await.unwrap(), 1);
    // The silent client was closed by the server.
    let closed = silent.recv_timeout(Duration::from_secs(1)).await;
    assert!(matches!(closed, Ok(None) | Err(ClientError::Io(_))), "silent client closed, got {closed:?}");
    let total = get(&format!("{http}/goim/online/total")).await;
    assert_eq!(total["data"]["conn_count"], 2);
}

/// `--job-batch-hold-ms`: while pushes keep coming the job sends one batch per hold, so a
/// room's messages reach a WebSocket client packed into fewer op-9 frames, with nothing
/// lost, duplicated or reordered, and a mid push held with them still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_hold_packs_room_messages_and_loses_nothing() {
    let node = Node::start(&["--job-batch-hold-ms", "2000"]).await;
    let http = node.http();
    let mut ws = Client::connect_ws(&node.ws()).await.unwrap();
    auth(&mut ws, 7, vec![2000]).await;
    let room = format!("{http}/goim/push/room?operation=3000&type=live&room=1000");

    // After a quiet spell a push goes at once; the ones right after it are held.
    seq_of(&post(&room, "m0").await);
    let first = exactly(&mut ws, 1).await;
    assert_eq!(&first[0].body[..], b"m0");
    let pushing = std::time::Instant::now();
    for i in 1..=20 {
        seq_of(&post(&room, format!("m{i}")).await);
    }
    seq_of(&post(&format!("{http}/goim/push/mids?operation=2000&mids=7"), "to-mid").await);
    // One batch per 2 s hold while they were pushed, and one more at the end: the bound
    // follows however long this machine took to push them.
    let most_frames = pushing.elapsed().as_millis() as usize / 2_000 + 2;

    let mut frames = 0;
    let mut got = Vec::new();
    while got.len() < 21 {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.recv_frame())
            .await
            .unwrap_or_else(|_| panic!("held pushes never came: {} of 21", got.len()))
            .unwrap()
            .unwrap();
        assert_eq!(frame.op, op::RAW, "WS gets op-9 frames");
        frames += 1;
        for p in split_batch(frame.body, 1 << 20).unwrap() {
            got.push((p.op, String::from_utf8_lossy(&p.body).into_owned()));
        }
    }
    assert_nothing_more(&mut ws).await;
    let mut want: Vec<(i32, String)> = (1..=20).map(|i| (3000, format!("m{i}"))).collect();
    want.push((2000, "to-mid".into()));
    assert_eq!(got, want, "every held push once, in order");
    assert!(frames < 21, "held pushes were packed: {frames} frames for 21 messages");
    assert!(frames <= most_frames, "{frames} frames, more than one per hold ({most_frames} at most)");
}
