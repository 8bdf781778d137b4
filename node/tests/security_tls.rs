//! TLS for clients and the API through the real binary: with `--tls-cert`/`--tls-key` a
//! WSS client authenticates and receives a push sent over HTTPS, both trusting only the
//! test's own CA, and `/goim/nodes/weighted` names the WSS port; an HTTPS client offering
//! `h2` in ALPN gets HTTP/2 and many pushes in flight on its one connection; plain-text
//! clients on the TLS ports are closed and counted while the plain ports keep working; a
//! node given a key that does not match its certificate refuses to start, naming the files.
mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::Node;
use futures_util::{SinkExt, StreamExt};
use goim_client::AuthRequest;
use goim_net::packet::{decode_ws_bytes, op, split_batch, Packet};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const WAIT: Duration = Duration::from_secs(5);

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it, as PEM files.
struct Pki {
    ca: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
    _dir: tempfile::TempDir,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: ca_cert.der().clone(),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
        other_key: write("other.key", rcgen::KeyPair::generate().unwrap().serialize_pem()),
        _dir: dir,
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TLS connection to `port` trusting only `ca`, offering no ALPN.
async fn tls_connect(ca: &CertificateDer<'static>, port: u16) -> std::io::Result<TlsStream<TcpStream>> {
    tls_connect_alpn(ca, port, &[]).await
}

/// A TLS connection to `port` trusting only `ca`, offering `alpn`.
async fn tls_connect_alpn(
    ca: &CertificateDer<'static>,
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// One HTTP/1.1 request over TLS; the reply's status line and JSON body.
async fn https(
    ca: &CertificateDer<'static>,
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> (String, Value) {
    let mut tls = tls_connect(ca, port).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    // The server ends with close_notify; an abrupt end after a full reply is fine too.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut reply)).await.unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no reply head: {reply:?}"));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("body {body:?}: {e}")))
}

async fn ws_send(ws: &mut WebSocketStream<TlsStream<TcpStream>>, packet: Packet) {
    ws.send(Message::Binary(packet.to_bytes())).await.unwrap();
}

/// The next goim packets (a batch split into its messages) read off the WSS connection.
async fn ws_recv(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> Vec<Packet> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time");
        match message.expect("connection open").unwrap() {
            Message::Binary(data) => {
                let packet = decode_ws_bytes(data, 1 << 20).unwrap();
                if packet.op == op::RAW {
                    return split_batch(packet.body, 1 << 20).unwrap();
                }
                return vec![packet];
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn a_wss_client_receives_a_push_sent_over_https() {
    let pki = pki();
    let (wss, https_port) = (free_port(), free_port());
    let node = Node::start(&[
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
        "--wss-addr",
        &format!("127.0.0.1:{wss}"),
        "--https-addr",
        &format!("127.0.0.1:{https_port}"),
    ])
    .await;

    let (status, health) = https(&pki.ca, https_port, "GET", "/health", "").await;
    assert!(status.contains("200"), "{status} {health}");
    let (_, nodes) = https(&pki.ca, https_port, "GET", "/goim/nodes/weighted", "").await;
    assert_eq!(nodes["data"]["wss_port"], wss, "clients are told the WSS port: {nodes}");

    let tls = tls_connect(&pki.ca, wss).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/sub", tls).await.unwrap();
    let auth = AuthRequest {
        mid: 7,
        key: "tls-7".into(),
        room_id: "live://9".into(),
        accepts: vec![1000],
        ..Default::default()
    };
    ws_send(&mut ws, Packet::new(op::AUTH, 1, serde_json::to_vec(&auth).unwrap())).await;
    let reply = ws_recv(&mut ws).await;
    assert_eq!(reply[0].op, op::AUTH_REPLY, "{reply:?}");
    let body: Value = serde_json::from_slice(&reply[0].body).unwrap_or(Value::Null);
    assert!(body.get("error").is_none(), "auth refused: {body}");

    let (status, pushed) =
        https(&pki.ca, https_port, "POST", "/goim/push/room?operation=1000&type=live&room=9", "over tls")
            .await;
    assert!(status.contains("200") && pushed["code"] == 0, "{status} {pushed}");
    let got = ws_recv(&mut ws).await;
    assert!(got.iter().any(|p| p.op == 1000 && p.body.as_ref() == b"over tls"), "{got:?}");

    // A client offering h2 and http/1.1 gets HTTP/2; 40 pushes in flight on its one
    // connection are each acknowledged, and the WSS client receives every one of them.
    let tls = tls_connect_alpn(&pki.ca, https_port, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the HTTPS listener chose h2");
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("an HTTP/2 connection over TLS");
    tokio::spawn(conn);
    let pushes = (0..40).map(|i| {
        let mut sender = sender.clone();
        async move {
            let uri =
                format!("https://localhost:{https_port}/goim/push/room?operation=1000&type=live&room=9");
            let request = axum::http::Request::post(uri).body(Body::from(format!("h2 {i}"))).unwrap();
            let reply = sender.send_request(request).await.expect("a reply");
            assert_eq!(reply.version(), axum::http::Version::HTTP_2);
            let body = axum::body::to_bytes(Body::new(reply.into_body()), 1 << 20).await.unwrap();
            serde_json::from_slice::<Value>(&body).unwrap()
        }
    });
    for reply in futures_util::future::join_all(pushes).await {
        assert_eq!(reply["code"], 0, "{reply}");
    }
    let mut h2_bodies = std::collections::BTreeSet::new();
    while h2_bodies.len() < 40 {
        for p in ws_recv(&mut ws).await {
            assert_eq!(p.op, 1000, "{p:?}");
            assert!(
                h2_bodies.insert(String::from_utf8_lossy(&p.body).into_owned()),
                "delivered twice: {p:?}"
            );
        }
    }
    assert_eq!(h2_bodies, (0..40).map(|i| format!("h2 {i}")).collect());
    let m = common::metrics(&node).await;
    assert_eq!(
        common::metric(&m, "goim_http_connections_total{version=\"h2\"}"),
        1.0,
        "one h2 connection: {m}"
    );
    // A client offering only http/1.1 (or nothing, above) is served HTTP/1.1 as before.
    let tls = tls_connect_alpn(&pki.ca, https_port, &[b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // Plain text on the TLS ports: closed, counted; the plain ports still serve.
    for port in [wss, https_port] {
        let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(WAIT, plain.read_to_end(&mut out)).await.expect("closed in time");
        assert!(read.is_err() || !String::from_utf8_lossy(&out).contains("200 OK"), "{out:?}");
    }
    let m = common::metrics(&node).await;
    assert!(common::metric(&m, "goim_tls_handshake_failures_total{listener=\"https\"}") >= 1.0, "{m}");
    assert!(common::metric(&m, "goim_tls_handshake_failures_total{listener=\"wss\"}") >= 1.0, "{m}");
    let plain_push =
        common::post(&format!("{}/goim/push/room?operation=1000&type=live&room=9", node.http()), "plain")
            .await;
    assert_eq!(plain_push["code"], 0, "{plain_push}");
    let got = ws_recv(&mut ws).await;
    assert!(got.iter().any(|p| p.op == 1000 && p.body.as_ref() == b"plain"), "{got:?}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_stops_the_node() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_goim"))
        .args(["run", "--data-dir", path(&dir.path().join("data"))])
        .args(["--tls-cert", path(&pki.cert), "--tls-key", path(&pki.other_key)])
        .args(["--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0"])
        .args(["--quic-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("other.key does not go with") && stderr.contains("server.pem"), "{stderr}");
    let half = Command::new(env!("CARGO_BIN_EXE_goim"))
        .args(["run", "--tls-cert", path(&pki.cert)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-cert and --tls-key go together"));
}
