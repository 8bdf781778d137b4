//! The HTTP API over HTTP/2 (h2c prior knowledge) against the real binary: many
//! one-message pushes in flight on one connection are each acknowledged once and land in
//! the room's log once; the body bound holds per request and the connection carries on;
//! a connection that says nothing, one that stops after the preface and one that sends
//! garbage frames (refused with a GOAWAY) are closed and counted while the node keeps
//! answering.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{get, metric, metrics, Node};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2c() -> reqwest::Client {
    reqwest::Client::builder().http2_prior_knowledge().build().unwrap()
}

async fn post_h2(http: &reqwest::Client, url: &str, body: String) -> Value {
    let r = http.post(url).body(body).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "the reply came over HTTP/2");
    r.json().await.unwrap()
}

/// Reads until the server closes `s`: what it sent, or `None` when `s` is still open
/// after `within`.
async fn until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read_to_end = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.ok()?;
    Some(got)
}

/// The types of the HTTP/2 frames in `bytes`, in order (RFC 9113 §4.1: a 24-bit length,
/// then the type).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

/// HTTP/2's GOAWAY frame type.
const GOAWAY: u8 = 0x7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_multiplexed_on_one_connection_are_each_acked_and_logged_once() {
    const PUSHES: usize = 300;
    let node = Node::start(&[]).await;
    let http = h2c();
    let url = format!("{}/goim/push/room?operation=1000&type=live&room=7", node.http());
    // The client's pool may dial twice if its first requests race; one request first makes
    // the connection all the others share.
    let health = http.get(format!("{}/health", node.http())).send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    let sends = (0..PUSHES).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { post_h2(&http, &url, format!("h2-{i}")).await })
    });
    let mut seqs = BTreeSet::new();
    for send in sends.collect::<Vec<_>>() {
        let reply = send.await.unwrap();
        assert_eq!(reply["code"], 0, "{reply}");
        assert!(seqs.insert(reply["data"]["room_seq"].as_u64().unwrap()), "a room_seq acked twice: {reply}");
    }
    assert_eq!(seqs.len(), PUSHES);

    let page = get(&format!("{}/goim/history/room?type=live&room=7&since=0&limit=1000", node.http())).await;
    let messages = page["data"]["messages"].as_array().expect("messages").clone();
    let logged: Vec<u64> = messages.iter().map(|m| m["room_seq"].as_u64().unwrap()).collect();
    assert_eq!(logged, seqs.iter().copied().collect::<Vec<_>>(), "the log holds each acked push once");
    let bodies: BTreeSet<String> = messages.iter().map(|m| m["body"].as_str().unwrap().to_string()).collect();
    assert_eq!(bodies, (0..PUSHES).map(|i| format!("h2-{i}")).collect::<BTreeSet<_>>());

    // Every push went over the client's one HTTP/2 connection (the checks above and the
    // metrics read use HTTP/1.1).
    let m = metrics(&node).await;
    assert_eq!(metric(&m, "goim_http_connections_total{version=\"h2\"}"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_h2_body_is_refused_and_the_connection_carries_on() {
    let node = Node::start(&["--max-push-body", "1024"]).await;
    let http = h2c();
    let url = format!("{}/goim/push/room?operation=1000&type=live&room=8", node.http());
    let refused = post_h2(&http, &url, "x".repeat(4096)).await;
    assert_eq!(refused["code"], -400, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("more than 1024 bytes"), "{refused}");
    let ok = post_h2(&http, &url, "small".into()).await;
    assert_eq!(ok["code"], 0, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_stalled_and_garbage_h2_connections_are_closed_and_counted() {
    let node = Node::start(&["--http-header-timeout-ms", "1000", "--http-idle-timeout-ms", "2000"]).await;
    let addr = node.http.to_string();

    // Not a byte: the protocol is never known, so the header timeout closes it.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    // The preface and nothing else: the server's SETTINGS, then no byte either way.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(PREFACE).await.unwrap();
    // The preface, then bytes that are no HTTP/2 frame.
    let mut garbage = TcpStream::connect(&addr).await.unwrap();
    garbage.write_all(PREFACE).await.unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();

    // Refused by HTTP/2 itself (a GOAWAY), not left to the idle timeout.
    let refused = until_closed(&mut garbage, Duration::from_secs(5)).await.expect("garbage: left open");
    assert!(frame_types(&refused).contains(&GOAWAY), "garbage frames closed without a GOAWAY: {refused:?}");
    let said = until_closed(&mut silent, Duration::from_secs(5)).await.expect("silent connection left open");
    assert!(said.is_empty(), "a silent connection was sent {said:?}");
    let said =
        until_closed(&mut stalled, Duration::from_secs(8)).await.expect("stalled connection left open");
    assert!(!frame_types(&said).is_empty(), "the stalled connection got no SETTINGS before its close");

    let health = reqwest::get(format!("{}/health", node.http())).await.unwrap();
    assert!(health.status().is_success());
    let m = metrics(&node).await;
    assert!(metric(&m, "goim_http_timeouts_total{kind=\"header\"}") >= 1.0, "{m}");
    assert!(metric(&m, "goim_http_timeouts_total{kind=\"idle\"}") >= 1.0, "{m}");
}
