//! Client and API auth (the real binary): with `--auth jwt`, forged, expired, wrong-room,
//! wrong-key and wrong-mid tokens are refused (an error body, then a close) at auth and on room
//! change, a valid one (also from `goim token`) is served; in both modes a key held by one mid
//! cannot be taken by another; with `--api-token` the push and cluster routes (and CLI) need it.
mod common;

use std::process::Command;
use std::time::Duration;

use common::{get, metrics, Node};
use goim_client::{AuthRequest, Client, ClientError};
use goim_net::packet::op;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "test-secret-0123456789";
const WAIT: Duration = Duration::from_secs(5);

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn sign(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A token for mid 5 that may join rooms 1 and 2 and hold key "k5".
fn token_for_5() -> String {
    sign(SECRET, json!({ "sub": "5", "exp": now() + 3600, "rooms": ["live://1", "live://2"], "key": "k5" }))
}

fn auth(mid: i64, key: &str, room: &str, token: Option<String>) -> AuthRequest {
    AuthRequest {
        mid,
        key: key.into(),
        room_id: room.into(),
        accepts: vec![1000],
        token,
        ..Default::default()
    }
}

async fn connect(node: &Node, ws: bool) -> Client {
    if ws {
        Client::connect_ws(&node.ws()).await.unwrap()
    } else {
        Client::connect_tcp(&node.tcp()).await.unwrap()
    }
}

/// The server closed the connection within a few seconds.
async fn closed(c: &mut Client) -> bool {
    loop {
        match c.recv_timeout(WAIT).await {
            Ok(None) => return true,
            Ok(Some(_)) => continue,
            Err(ClientError::Timeout) => return false,
            Err(_) => return true,
        }
    }
}

/// Auth is refused with an op-8 error naming `expect`, then the connection closes.
async fn refused(node: &Node, ws: bool, req: &AuthRequest, expect: &str) {
    let mut c = connect(node, ws).await;
    match c.auth(req).await {
        Err(ClientError::AuthRejected(why)) => assert!(why.contains(expect), "{why:?} lacks {expect:?}"),
        other => panic!("expected a refusal ({expect}), got {other:?}"),
    }
    assert!(closed(&mut c).await, "closed after the refusal ({expect})");
}

async fn push(node: &Node, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", node.http())).body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn expect_body(c: &mut Client, body: &str) {
    let p = c.recv_timeout(WAIT).await.unwrap().expect("a push");
    assert_eq!(String::from_utf8_lossy(&p.body), body);
}

fn goim(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_goim"));
    cmd.args(args).env_remove("GOIM_API_TOKEN").env_remove("GOIM_JWT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run goim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_checked_at_auth_and_on_room_change() {
    let node = Node::start(&["--auth", "jwt", "--jwt-secret", SECRET]).await;
    let log = node.log();
    assert!(log.contains("client auth on"), "{log}");

    for ws in [false, true] {
        let exp = now() + 3600;
        let forged = sign("another-secret", json!({ "sub": "5", "exp": exp }));
        refused(&node, ws, &auth(5, "", "live://1", Some(forged)), "signature").await;
        let expired = sign(SECRET, json!({ "sub": "5", "exp": now() - 3600 }));
        refused(&node, ws, &auth(5, "", "live://1", Some(expired)), "expired").await;
        refused(&node, ws, &auth(5, "k5", "live://3", Some(token_for_5())), "room").await;
        refused(&node, ws, &auth(5, "other", "live://1", Some(token_for_5())), "key").await;
        refused(&node, ws, &auth(6, "k5", "live://1", Some(token_for_5())), "another mid").await;
        refused(&node, ws, &auth(5, "k5", "live://1", None), "token required").await;
        refused(&node, ws, &auth(5, "k5", "live://1", Some("not.a.token".into())), "invalid token").await;
    }
    let m = metrics(&node).await;
    for reason in
        ["token_signature", "token_expired", "token_room", "token_key", "token_mid", "token_missing"]
    {
        let series = format!("goim_comet_auth_refused_total{{reason=\"{reason}\"}} 2");
        assert!(m.contains(&series), "{series} in\n{m}");
    }

    // A valid token: served, with the token's key (the client sent none); pushes arrive.
    let mut c = connect(&node, false).await;
    let reply = c.auth(&auth(5, "", "live://1", Some(token_for_5()))).await.unwrap();
    assert_eq!((reply.key.as_str(), reply.mid, reply.room_id.as_str()), ("k5", 5, "live://1"));
    let (status, r) = push(&node, "/goim/push/room?operation=1000&type=live&room=1", "to room 1", None).await;
    assert_eq!((status, &r["code"]), (200, &json!(0)), "{r}");
    expect_body(&mut c, "to room 1").await;
    push(&node, "/goim/push/keys?operation=1000&keys=k5", "to k5", None).await;
    expect_body(&mut c, "to k5").await;

    // Op 12 to an allowed room is served; to another one: an error reply, then a close.
    assert_eq!(&c.request(op::CHANGE_ROOM, "live://2").await.unwrap()[..], b"live://2");
    push(&node, "/goim/push/room?operation=1000&type=live&room=2", "to room 2", None).await;
    expect_body(&mut c, "to room 2").await;
    let body = c.request(op::CHANGE_ROOM, "live://3").await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("room"), "{body}");
    assert!(closed(&mut c).await, "closed after a refused room change");

    // Over WebSocket, a JSON room change may carry a fresh token naming more rooms; the
    // same change without it is refused.
    let mut w = connect(&node, true).await;
    w.auth(&auth(5, "k5", "live://1", Some(token_for_5()))).await.unwrap();
    let wider = sign(SECRET, json!({ "sub": 5, "exp": now() + 60, "rooms": ["live://3"], "key": "k5" }));
    let change = json!({ "room_id": "live://3", "token": wider }).to_string();
    let reply: Value = serde_json::from_slice(&w.request(op::CHANGE_ROOM, change).await.unwrap()).unwrap();
    assert_eq!(reply["room_id"], "live://3", "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    let other_mid = sign(SECRET, json!({ "sub": 6, "exp": now() + 60 }));
    let change = json!({ "room_id": "live://1", "token": other_mid }).to_string();
    let reply: Value = serde_json::from_slice(&w.request(op::CHANGE_ROOM, change).await.unwrap()).unwrap();
    assert!(reply["error"].as_str().unwrap().contains("another mid"), "{reply}");
    assert!(closed(&mut w).await);
    let m = metrics(&node).await;
    assert!(m.contains("goim_comet_auth_refused_total{reason=\"token_room\"} 3"), "{m}");

    // `goim token` output is accepted.
    let out = goim(
        &["token", "--secret", SECRET, "--mid", "9", "--room", "live://9", "--key", "k9", "--ttl", "10m"],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut t = connect(&node, true).await;
    let reply = t.auth(&auth(9, "", "live://9", Some(minted.clone()))).await.unwrap();
    assert_eq!((reply.key.as_str(), reply.room_id.as_str()), ("k9", "live://9"));
    refused(&node, false, &auth(9, "", "live://1", Some(minted)), "room").await;
    let env_minted = goim(&["token", "--mid", "9"], &[("GOIM_JWT_SECRET", SECRET)]);
    assert!(env_minted.status.success(), "{}", String::from_utf8_lossy(&env_minted.stderr));
    let no_secret = goim(&["token", "--mid", "9"], &[]);
    assert!(!no_secret.status.success());
    t.heartbeat().await.unwrap();
}

/// A key held by mid A: mid B is refused (A stays connected and served), A itself may
/// take it over from another connection.
async fn key_held_by_its_mid(node: &Node, token: impl Fn(i64) -> Option<String>) {
    let mut a = connect(node, false).await;
    a.auth(&auth(1, "shared", "live://7", token(1))).await.unwrap();
    for ws in [false, true] {
        refused(node, ws, &auth(2, "shared", "live://7", token(2)), "key held by another mid").await;
    }
    a.heartbeat().await.unwrap();
    push(node, "/goim/push/keys?operation=1000&keys=shared", "still a's", None).await;
    expect_body(&mut a, "still a's").await;
    let m = metrics(node).await;
    assert!(m.contains("goim_comet_auth_refused_total{reason=\"key_taken\"} 2"), "{m}");

    // The same mid reconnecting (as a resuming client does) takes the key over.
    let mut again = connect(node, true).await;
    again.auth(&auth(1, "shared", "live://7", token(1))).await.unwrap();
    assert!(closed(&mut a).await, "the older connection of the key is closed");
    push(node, "/goim/push/keys?operation=1000&keys=shared", "for the new one", None).await;
    expect_body(&mut again, "for the new one").await;

    // Once the key is released, another mid may use it.
    again.close().await.unwrap();
    common::eventually(WAIT, "the key to be free for mid 2", || async {
        let mut c = connect(node, false).await;
        c.auth(&auth(2, "shared", "live://7", token(2))).await.ok().map(|_| c)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cannot_be_taken_by_another_mid_without_auth() {
    let node = Node::start(&[]).await;
    let log = node.log();
    assert!(log.contains("client auth is off") && log.contains("loopback only"), "{log}");
    key_held_by_its_mid(&node, |_| None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cannot_be_taken_by_another_mid_with_jwt() {
    let node = Node::start(&["--auth", "jwt", "--jwt-secret", SECRET]).await;
    key_held_by_its_mid(&node, |mid| Some(sign(SECRET, json!({ "sub": mid, "exp": now() + 600 })))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_cluster_routes_need_the_api_token() {
    const TOKEN: &str = "api-token-xyz";
    let node = Node::start(&["--api-token", TOKEN]).await;
    let push_path = "/goim/push/room?operation=1000&type=live&room=1";
    for wrong in [None, Some("api-token-xy"), Some("api-token-xyzz")] {
        let (status, r) = push(&node, push_path, "x", wrong).await;
        assert_eq!((status, &r["code"]), (401, &json!(-401)), "{wrong:?}: {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
        let (status, r) = push(&node, "/cluster/remove?id=9", "", wrong).await;
        assert_eq!((status, &r["code"]), (401, &json!(-401)), "{wrong:?}: {r}");
    }
    let (status, r) = push(&node, push_path, "x", Some(TOKEN)).await;
    assert_eq!((status, &r["code"]), (200, &json!(0)), "{r}");
    let http = reqwest::Client::new();
    let status_url = format!("{}/cluster/status", node.http());
    assert_eq!(http.get(&status_url).send().await.unwrap().status().as_u16(), 401);
    let r: Value = http.get(&status_url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["code"], 0, "{r}");
    // Reads, /health and /metrics stay open.
    assert_eq!(get(&format!("{}/goim/online/total", node.http())).await["code"], 0);
    assert_eq!(get(&format!("{}/goim/log?from=1", node.http())).await["data"]["last_seq"], 1);
    assert!(http.get(format!("{}/health", node.http())).send().await.unwrap().status().is_success());
    let m = metrics(&node).await;
    assert!(m.contains("goim_http_unauthorized_total{reason=\"missing\"} 3"), "{m}");
    assert!(m.contains("goim_http_unauthorized_total{reason=\"wrong\"} 4"), "{m}");

    // The CLI: refused without the token, served with --token or GOIM_API_TOKEN.
    let addr = node.http.to_string();
    let out = goim(&["cluster", "status", "--http", &addr], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Bearer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = goim(&["cluster", "status", "--http", &addr, "--token", TOKEN], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["node_id"], 1);
    let out = goim(&["cluster", "status", "--http", &addr], &[("GOIM_API_TOKEN", TOKEN)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = goim(&["log", "tail", "--http", &addr, "--token", TOKEN], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_reads_guards_the_goim_reads_but_not_health_or_metrics() {
    const TOKEN: &str = "reads-token";
    let node = Node::start(&["--api-token", TOKEN, "--api-token-reads"]).await;
    let http = reqwest::Client::new();
    for path in [
        "/goim/online/total",
        "/goim/nodes/weighted",
        "/goim/log?from=1",
        "/goim/history/room?type=live&room=1",
    ] {
        let url = format!("{}{path}", node.http());
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let r: Value = http.get(&url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["code"], 0, "{path}: {r}");
    }
    for path in ["/health", "/metrics", "/"] {
        let r = http.get(format!("{}{path}", node.http())).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
}
