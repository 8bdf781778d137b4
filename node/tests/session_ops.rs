//! Session operations through the real binary: a key reconnecting replaces the older
//! connection, change room (op 12) moves pushes and counts, sub/unsub (14/16) change what a
//! connection accepts, op 4 is routed to the sender's room (chat mode), SIGTERM drains.
mod common;

use std::time::Duration;

use common::{eventually, get, post, Node};
use goim_client::{AuthRequest, Client, ClientError};
use goim_net::packet::op;
use serde_json::Value;

async fn quiet(c: &mut Client) {
    match c.recv_timeout(Duration::from_millis(400)).await {
        Err(ClientError::Timeout) => {}
        other => panic!("expected silence, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_replaces_the_older_connection() {
    let node = Node::start(&[]).await;
    let req = AuthRequest {
        mid: 5,
        key: "my-key".into(),
        room_id: "live://1".into(),
        accepts: vec![1000],
        ..Default::default()
    };
    let mut old = Client::connect_tcp(&node.tcp()).await.unwrap();
    assert_eq!(old.auth(&req).await.unwrap().key, "my-key");
    let mut new = Client::connect_ws(&node.ws()).await.unwrap();
    assert_eq!(new.auth(&req).await.unwrap().key, "my-key");

    let closed = old.recv_timeout(Duration::from_secs(5)).await;
    assert!(matches!(closed, Ok(None) | Err(ClientError::Io(_))), "old connection closed: {closed:?}");
    let r =
        post(&format!("{}/goim/push/keys?operation=1000&keys=my-key", node.http()), "for the new one").await;
    assert_eq!(r["code"], 0, "{r}");
    let p = new.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(&p.body[..], b"for the new one");
    new.heartbeat().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_room_sub_unsub_and_chat_messages() {
    let node = Node::start(&["--renew-interval-ms", "200"]).await;
    let http = node.http();
    let mut a = Client::connect_tcp(&node.tcp()).await.unwrap();
    a.auth(&AuthRequest { mid: 1, room_id: "live://1".into(), ..Default::default() }).await.unwrap();
    let mut b = Client::connect_ws(&node.ws()).await.unwrap();
    b.auth(&AuthRequest { mid: 2, room_id: "live://1".into(), ..Default::default() }).await.unwrap();

    // Chat mode: op 4 goes to the sender's room, tagged with its mid; the reply has the seq.
    let reply = a.request(op::SEND_MSG, &b"hello room"[..]).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert!(reply["seq"].as_u64().unwrap() >= 1, "{reply}");
    for c in [&mut a, &mut b] {
        let p = c.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(p.op, 1000);
        let msg: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!((msg["mid"].as_i64(), msg["msg"].as_str()), (Some(1), Some("hello room")));
    }

    // b moves to room 2: room-1 pushes no longer reach it, room-2 pushes do; counts follow.
    let echoed = b.request(op::CHANGE_ROOM, &b"live://2"[..]).await.unwrap();
    assert_eq!(&echoed[..], b"live://2");
    post(&format!("{http}/goim/push/room?operation=1000&type=live&room=1"), "r1").await;
    post(&format!("{http}/goim/push/room?operation=1000&type=live&room=2"), "r2").await;
    assert_eq!(&a.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap().body[..], b"r1");
    assert_eq!(&b.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap().body[..], b"r2");
    quiet(&mut a).await;
    quiet(&mut b).await;
    eventually(Duration::from_secs(5), "counts 1 and 1", || async {
        let r = get(&format!("{http}/goim/online/room?type=live&rooms=1,2")).await;
        (r["data"]["1"] == 1 && r["data"]["2"] == 1).then_some(())
    })
    .await;
    // A chat message from b now lands in room 2 (the session table followed the change).
    b.request(op::SEND_MSG, &b"in two"[..]).await.unwrap();
    let p = b.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&p.body).contains("in two"));
    quiet(&mut a).await;

    // Sub/unsub change what broadcasts reach a connection.
    assert_eq!(&a.request(op::SUB, &b"1005,1006"[..]).await.unwrap()[..], b"1005,1006");
    post(&format!("{http}/goim/push/all?operation=1005"), "bc1").await;
    assert_eq!(&a.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap().body[..], b"bc1");
    quiet(&mut b).await;
    assert_eq!(&a.request(op::UNSUB, &b"1005"[..]).await.unwrap()[..], b"1005");
    post(&format!("{http}/goim/push/all?operation=1005"), "bc2").await;
    quiet(&mut a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_restart_keeps_the_log() {
    let mut node = Node::start(&[]).await;
    let url = format!("{}/goim/push/room?operation=1000&type=live&room=9", node.http());
    for i in 0..20 {
        assert_eq!(post(&url, format!("m{i}")).await["code"], 0);
    }
    let mut c = Client::connect_tcp(&node.tcp()).await.unwrap();
    c.auth(&AuthRequest { mid: 1, room_id: "live://9".into(), ..Default::default() }).await.unwrap();
    let status = node.terminate();
    assert!(status.success(), "graceful exit, got {status}");
    assert!(node.log().contains("stopped"), "{}", node.log());
    let closed = c.recv_timeout(Duration::from_secs(2)).await;
    assert!(matches!(closed, Ok(None) | Err(ClientError::Io(_))), "client closed on shutdown: {closed:?}");

    node.spawn().await;
    let log = get(&format!("{}/goim/log?from=1", node.http())).await;
    assert_eq!(log["data"]["last_seq"], 20);
    assert_eq!(log["data"]["records"][19]["body"], "m19");
    // The job resumed from its committed offset: the next push is delivered.
    let mut c = Client::connect_ws(&node.ws()).await.unwrap();
    c.auth(&AuthRequest { mid: 1, room_id: "live://9".into(), ..Default::default() }).await.unwrap();
    assert_eq!(post(&url, "after restart").await["data"]["seq"], 21);
    let p = c.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(&p.body[..], b"after restart");
}
