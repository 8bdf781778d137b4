//! Hostile and broken QUIC peers cannot hurt a cluster (separate processes: 3 logic, 1 comet,
//! 1 job): UDP garbage, unknown or missing service bytes, the wrong ALPN, garbage, 1 GB-prefixed,
//! truncated and undecodable frames, Tail and Push streams abandoned mid-way. Every process stays
//! healthy, a push still commits and is delivered, and `goim_quic_*` metrics count the rejects.
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::cluster::{auth_req, exclusive, first_commit, join, wait_for, Cluster, ProcNode};
use common::counter;
use goim_net::quic::{read_frame, write_frame, ClusterTls, QuicEndpoint, SERVER_NAME};
use goim_net::rpc::logic::LogicRequest;
use goim_net::rpc::push::PushBatch;
use goim_net::rpc::tail::{TailBatch, TailRequest};
use goim_net::rpc::{PushRecord, PushTarget, Service};
use goim_raft::network::RaftRpc;

/// Random bytes that decode as neither a Raft RPC nor a logic request (random bytes could
/// happen to be a valid vote or lease request, which is not what this test is about).
fn garbage(len: usize) -> Vec<u8> {
    loop {
        let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        let raft = goim_net::serial::decode::<RaftRpc>(&bytes).is_err();
        let logic = goim_net::serial::decode::<LogicRequest>(&bytes).is_err();
        if raft && logic {
            return bytes;
        }
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Raw UDP datagrams: random sizes, some shaped like QUIC long-header packets.
fn udp_garbage(to: SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    for i in 0..300 {
        let mut d = garbage(1 + (i * 37) % 1400);
        if i % 3 == 0 && d.len() > 6 {
            d[0] = 0xc0 | (d[0] & 0x0f); // long header, "initial"
            d[1..5].copy_from_slice(&1u32.to_be_bytes()); // QUIC v1
        }
        let _ = sock.send_to(&d, to);
    }
}

/// A plain quinn connection to `to` (not the cluster's endpoint type, which always writes a
/// valid service byte), offering `alpn`.
async fn raw_quic(to: SocketAddr, alpn: &[u8]) -> Result<quinn::Connection, String> {
    let config = ClusterTls::client_config_for(alpn).map_err(|e| e.to_string())?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
    let connecting = endpoint.connect_with(config, to, SERVER_NAME).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())
}

/// Writes `bytes` on a fresh stream of `conn`, finishes it, and waits (briefly) for the
/// server to react: a reply, a reset, or a stop.
async fn raw_stream(conn: &quinn::Connection, bytes: &[u8]) {
    let (mut send, mut recv) = conn.open_bi().await.expect("open stream");
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(3), recv.read_to_end(1 << 20)).await;
}

/// Sends `bytes` on a `service` stream through the cluster's own endpoint type, finishes,
/// and waits briefly for the server's answer (it should reset the stream).
async fn service_stream(ep: &QuicEndpoint, to: &str, service: Service, bytes: &[u8]) {
    let (mut send, mut recv) = ep.open(to, service).await.expect("open service stream");
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(3), recv.read_to_end(1 << 20)).await;
}

/// Opens a Tail stream to `logic` (reads one batch) and a Push stream to `comet` (sends
/// half a frame), then vanishes: the runtime carrying the endpoint is torn down without
/// closing anything, so the peers only learn from their idle timeout.
fn vanish_mid_stream(logic: String, comet: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let tls = ClusterTls::generate().unwrap();
            let ep = QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), &tls).unwrap();
            let (mut tail_send, mut tail_recv) = ep.open(&logic, Service::Tail).await.expect("open tail");
            let req = TailRequest { partition: 0, from_seq: 1, max_batch: 4 };
            write_frame(&mut tail_send, &req).await.expect("tail request");
            let first =
                tokio::time::timeout(Duration::from_secs(5), read_frame::<TailBatch>(&mut tail_recv)).await;
            assert!(
                matches!(first, Ok(Ok(Some(TailBatch::Records(_))))),
                "the tail serves records: {first:?}"
            );

            let (mut push_send, push_recv) = ep.open(&comet, Service::Push).await.expect("open push");
            let record = PushRecord {
                partition: 0,
                seq: u64::MAX - 1,
                ts_ms: 0,
                target: PushTarget::All,
                op: 1000,
                body: bytes::Bytes::from_static(b"never delivered"),
            };
            let batch = PushBatch { partition: 0, records: vec![record], last_seq: u64::MAX - 1 };
            let frame = framed(&goim_net::serial::encode(&batch).unwrap());
            push_send.write_all(&frame[..frame.len() / 2]).await.expect("half a push frame");
            // Let the bytes leave, then disappear without a close.
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::mem::forget((tail_send, tail_recv, push_send, push_recv, ep));
        });
        rt.shutdown_background();
    })
    .join()
    .expect("vanishing peer");
}

/// Every process runs and answers `/health` with 200.
async fn all_healthy(c: &mut Cluster) {
    c.assert_all_alive();
    let nodes: Vec<&ProcNode> = c.logic.iter().chain(&c.comets).chain(&c.jobs).collect();
    for n in nodes {
        wait_for(Duration::from_secs(10), &format!("{} healthy", n.name), || async {
            n.healthy().await.then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_vanishing_peers_are_counted_and_harmless() {
    let _one_cluster_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 1, 1).await;
    let (mut client, _) = join(&c.comets[0], false, &auth_req(1, "key-1", "live://1", &[1000])).await;
    wait_for(Duration::from_secs(10), "the client counted", || async {
        (c.online_room(0, "1").await? == 1).then_some(())
    })
    .await;
    c.push_delivered(0, &mut client, "before").await;

    // The leader is the target: it is the node whose trouble would hurt most.
    let target = c.wait_leader(Duration::from_secs(10)).await;
    let t = &c.logic[target];
    let metrics_before = c.metrics(t).await.expect("/metrics");
    let (bad_before, rejected_before) = (
        counter(&metrics_before, "goim_quic_bad_frames_total"),
        counter(&metrics_before, "goim_quic_rejected_total"),
    );

    // Raw UDP garbage at every process's QUIC port.
    for n in c.logic.iter().chain(&c.comets).chain(&c.jobs) {
        udp_garbage(n.quic);
    }

    // Real QUIC connections misbehaving at the protocol level.
    let conn = raw_quic(t.quic, b"goim/1").await.expect("QUIC handshake with the target");
    raw_stream(&conn, &[0xee, 1, 2, 3]).await; // unknown service byte
    raw_stream(&conn, &[]).await; // no service byte at all
    conn.close(0u32.into(), b"done");
    let wrong_alpn = raw_quic(t.quic, b"not-goim").await;
    assert!(wrong_alpn.is_err(), "a connection offering the wrong ALPN is refused");

    let ep = QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), &ClusterTls::generate().unwrap()).unwrap();
    let to = t.quic_addr();
    service_stream(&ep, &to, Service::Raft, &framed(&garbage(64))).await;
    let mut huge = (1u32 << 30).to_be_bytes().to_vec(); // a length prefix claiming 1 GB
    huge.extend_from_slice(&garbage(100));
    service_stream(&ep, &to, Service::Logic, &huge).await;
    let mut truncated = 100u32.to_be_bytes().to_vec(); // 100 bytes announced, 10 sent
    truncated.extend_from_slice(&garbage(10));
    service_stream(&ep, &to, Service::Logic, &truncated).await;
    service_stream(&ep, &to, Service::Logic, &framed(&garbage(40))).await;
    service_stream(&ep, &to, Service::Logic, &garbage(7)).await; // not even a length prefix
    ep.shutdown().await;

    // Peers that open a stream and vanish mid-way.
    vanish_mid_stream(to.clone(), c.comets[0].quic_addr());

    // Counted on the target.
    let counted =
        wait_for(Duration::from_secs(10), "bad frames and rejections counted on the target", || async {
            let m = c.metrics(&c.logic[target]).await?;
            let (bad, rejected) =
                (counter(&m, "goim_quic_bad_frames_total"), counter(&m, "goim_quic_rejected_total"));
            (bad >= bad_before + 4.0 && rejected >= rejected_before + 2.0).then_some((bad, rejected, m))
        })
        .await;
    eprintln!(
        "on {}: goim_quic_bad_frames_total {bad_before} -> {}, goim_quic_rejected_total {rejected_before} -> {}",
        c.logic[target].name, counted.0, counted.1
    );
    for line in counted.2.lines().filter(|l| l.starts_with("goim_quic_")) {
        eprintln!("  {line}");
    }

    // Nothing crashed, the cluster still works.
    all_healthy(&mut c).await;
    c.push_delivered(target, &mut client, "after the garbage").await;
    // Once the vanished peers' connections have timed out too (QUIC idle timeout 5 s).
    let settle = Instant::now() + Duration::from_secs(6);
    while Instant::now() < settle {
        c.assert_all_alive();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    all_healthy(&mut c).await;
    c.push_delivered((target + 1) % 3, &mut client, "after the vanished peers").await;
    let log = c.logic[target].log();
    assert!(!log.contains("panicked"), "no panic in the target's log");
    c.assert_all_alive();
}

/// A voter's data is lost and a new, empty node (another id) is started at its address
/// before the voter is removed: the new node must not answer for it. Three voters; the
/// leader and one follower stopped, and the follower's address taken by a wiped node 4. The
/// survivor must not be elected, nor commit a push: node 4 voting and acknowledging entries
/// as the lost voter would have let it (a leader could then be elected without the entries a
/// majority holds). Node 4 counts what it refused; the old leader back, a leader is elected
/// and pushes commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_at_a_lost_voters_address_does_not_answer_for_it() {
    let _one_cluster_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 0, 0).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let (survivor, lost) = ((leader + 1) % 3, (leader + 2) % 3);
    let (base, lost_id) = (c.logic[survivor].url(), c.logic[lost].id);
    assert!(first_commit(&base, "lost", Duration::from_secs(10)).await.is_some(), "the cluster commits");
    c.logic[leader].kill9();
    c.logic[lost].kill9();
    c.logic[lost].wipe_as(4);
    c.logic[lost].spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.logic[lost].assert_alive();

    assert!(
        first_commit(&base, "lost", Duration::from_secs(8)).await.is_none(),
        "the survivor committed with node 4 answering for node {lost_id}"
    );
    let status = c.status(survivor).await.expect("the survivor answers its status");
    assert!(status["leader"].is_null(), "a leader elected on node 4's vote: {status}");
    let metrics =
        c.http.get(format!("{}/metrics", c.logic[lost].url())).send().await.expect("node 4 answers");
    let m = metrics.text().await.expect("node 4's metrics");
    assert!(
        counter(&m, "goim_raft_misaddressed_total") >= 1.0,
        "node 4 refused node {lost_id}'s messages:\n{m}"
    );
    let refused = format!("refused a Raft message for node {lost_id}: this is node 4");
    assert!(c.logic[lost].log().contains(&refused), "{}", c.logic[lost].log_tail(20));

    c.logic[leader].spawn();
    assert!(
        first_commit(&base, "lost", Duration::from_secs(20)).await.is_some(),
        "a real majority commits again"
    );
    c.logic[survivor].assert_alive();
}
