//! Hostile input does not hurt a node: malformed frames, junk, silence and bad HTTP requests
//! each get a clean close or goim's error reply, are counted, and the node keeps serving a
//! well-behaved client connected the whole time.
mod common;

use std::time::Duration;

use common::{get, post, Node};
use goim_client::{AuthRequest, Client, ClientError};
use goim_net::packet::{op, Packet};

/// A connection the server must close: the next read is EOF or a reset, never data.
async fn assert_closed(c: &mut Client, what: &str) {
    match c.recv_timeout(Duration::from_secs(3)).await {
        Ok(None) | Err(ClientError::Io(_)) | Err(ClientError::Ws(_)) | Err(ClientError::Closed) => {}
        other => panic!("{what}: expected the server to close, got {other:?}"),
    }
}

fn header(pack_len: i32, header_len: i16, ver: i16, op: i32, seq: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&pack_len.to_be_bytes());
    b.extend_from_slice(&header_len.to_be_bytes());
    b.extend_from_slice(&ver.to_be_bytes());
    b.extend_from_slice(&op.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b
}

async fn authed_tcp(node: &Node, mid: i64) -> Client {
    let mut c = Client::connect_tcp(&node.tcp()).await.unwrap();
    c.auth(&AuthRequest { mid, room_id: "live://7".into(), accepts: vec![1000], ..Default::default() })
        .await
        .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_input_is_closed_and_counted_while_others_are_served() {
    let node = Node::start(&["--handshake-timeout-ms", "500"]).await;
    let mut good = authed_tcp(&node, 1).await;

    // headerLen != 16 (before auth and after auth).
    let mut c = Client::connect_tcp(&node.tcp()).await.unwrap();
    c.send_raw(&header(16, 12, 1, op::HEARTBEAT, 1)).await.unwrap();
    assert_closed(&mut c, "headerLen 12").await;
    let mut c = authed_tcp(&node, 2).await;
    c.send_raw(&header(20, 20, 1, op::HEARTBEAT, 1)).await.unwrap();
    assert_closed(&mut c, "headerLen 20 after auth").await;

    // packLen > 16 + maxBody, packLen < 16.
    let mut c = authed_tcp(&node, 3).await;
    c.send_raw(&header(16 + 4097, 16, 1, op::SEND_MSG, 1)).await.unwrap();
    assert_closed(&mut c, "packLen too large").await;
    let mut c = Client::connect_tcp(&node.tcp()).await.unwrap();
    c.send_raw(&header(8, 16, 1, op::AUTH, 1)).await.unwrap();
    assert_closed(&mut c, "packLen too small").await;

    // Garbage bytes.
    let mut c = Client::connect_tcp(&node.tcp()).await.unwrap();
    c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\xff\xfe\xfd").await.unwrap();
    assert_closed(&mut c, "garbage").await;

    // Auth with a body that is not JSON: op 8 with an error, then close.
    let mut c = Client::connect_tcp(&node.tcp()).await.unwrap();
    c.send(&Packet::new(op::AUTH, 1, &b"{not json"[..])).await.unwrap();
    let reply = c.recv_timeout(Duration::from_secs(3)).await.unwrap().unwrap();
    assert_eq!(reply.op, op::AUTH_REPLY);
    assert!(String::from_utf8_lossy(&reply.body).contains("error"), "{:?}", reply.body);
    assert_closed(&mut c, "bad auth json").await;

    // WebSocket: a text frame with junk; a binary frame whose packLen exceeds the frame.
    let mut w = Client::connect_ws(&node.ws()).await.unwrap();
    w.send_ws_text("hello, this is not a goim packet").await.unwrap();
    assert_closed(&mut w, "ws text junk").await;
    let mut w = Client::connect_ws(&node.ws()).await.unwrap();
    w.send_raw(&header(64, 16, 1, op::HEARTBEAT, 1)).await.unwrap();
    assert_closed(&mut w, "ws packLen beyond frame").await;

    // No auth within the handshake timeout (500 ms here).
    let mut c = Client::connect_tcp(&node.tcp()).await.unwrap();
    c.send(&Packet::new(op::HEARTBEAT, 1, &b""[..])).await.unwrap(); // ignored before auth
    let started = std::time::Instant::now();
    assert_closed(&mut c, "handshake timeout").await;
    assert!(started.elapsed() < Duration::from_secs(2));

    // Unknown op after auth: echoed with an empty body, connection stays.
    let mut c = authed_tcp(&node, 4).await;
    c.send(&Packet::new(4242, 9, &b"x"[..])).await.unwrap();
    let echo = c.recv_timeout(Duration::from_secs(3)).await.unwrap().unwrap();
    assert_eq!((echo.op, echo.seq, echo.body.len()), (4242, 9, 0));
    c.heartbeat().await.unwrap();

    // HTTP: missing / invalid operation, bad params, oversize body, unknown route.
    let http = node.http();
    for (url, want) in [
        (format!("{http}/goim/push/room?type=live&room=7"), "operation"),
        (format!("{http}/goim/push/room?operation=abc&type=live&room=7"), "operation"),
        (format!("{http}/goim/push/room?operation=9&type=live&room=7"), "operation"),
        (format!("{http}/goim/push/room?operation=1000&room=7"), "type"),
        (format!("{http}/goim/push/keys?operation=1000"), "keys"),
        (format!("{http}/goim/push/mids?operation=1000&mids=x1"), "mids"),
        (format!("{http}/goim/push/all?operation=1000&speed=-3"), "speed"),
    ] {
        let r = post(&url, "m").await;
        assert_eq!(r["code"], -400, "{url}: {r}");
        assert!(r["message"].as_str().unwrap().contains(want), "{url}: {r}");
    }
    let big = vec![b'x'; 64 * 1024 + 1];
    let r = post(&format!("{http}/goim/push/room?operation=1000&type=live&room=7"), big).await;
    assert_eq!(r["code"], -400, "{r}");
    let resp = reqwest::Client::new().get(format!("{http}/goim/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let r: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(r["code"], -404);
    let r = get(&format!("{http}/goim/online/top?type=live&limit=many")).await;
    assert_eq!(r["code"], -400);

    // Garbage on the QUIC port (UDP) must not hurt the node.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i % 1200 + 1)).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect();
        udp.send_to(&junk, node.quic.to_string()).unwrap();
    }

    // The good client was served throughout.
    good.heartbeat().await.unwrap();
    let r = post(&format!("{http}/goim/push/room?operation=1000&type=live&room=7"), "still here").await;
    assert_eq!(r["code"], 0, "{r}");
    let p = good.recv_timeout(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(&p.body[..], b"still here");

    // Everything above was counted.
    let metrics = reqwest::get(format!("{http}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("goim_comet_bad_frames_total"), "{metrics}");
    assert!(metrics.contains("goim_http_bad_requests_total"), "{metrics}");
    assert!(metrics.contains("goim_http_not_found_total"), "{metrics}");
}

/// A log filter that does not parse stops the node at start, naming it, instead of running
/// with a filter the operator did not ask for.
#[test]
fn a_bad_log_filter_stops_the_node_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_goim"))
        .args(["run", "--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--log", "info,openraft=loud"])
        .args(["--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0"])
        .args(["--quic-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--log \"info,openraft=loud\": not a log filter"), "{stderr}");
}
