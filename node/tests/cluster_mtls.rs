//! Cluster mTLS: with certificates from `goim cluster certs`, a cluster of separate processes
//! (3 logic, 1 comet, 1 job, each with its own certificate) forms and delivers a push; a QUIC
//! peer with a foreign CA's certificate, a self-signed one or none cannot make an RPC and is
//! counted in `goim_quic_handshake_refused_total`; one with a cluster certificate can (control).
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::{auth_req, exclusive, join, wait_for, Cluster};
use common::counter;
use goim_net::quic::{ClusterTls, SERVER_NAME};
use goim_net::rpc::Service;

/// `goim cluster certs --out DIR --nodes NODES`.
fn certs(out: &Path, nodes: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_goim"))
        .args(["cluster", "certs", "--out"])
        .arg(out)
        .args(["--nodes", nodes, "--days", "2"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run goim cluster certs");
    assert!(status.success(), "goim cluster certs");
}

fn node_tls(dir: &Path, name: &str) -> ClusterTls {
    let pem = |f: String| dir.join(f);
    ClusterTls::from_pem_files(
        &pem("ca.pem".into()),
        &pem(format!("{name}.pem")),
        &pem(format!("{name}.key")),
    )
    .expect("load certificates")
}

/// A raw quinn connection with `config` that makes one (empty) Logic call: Ok if the node
/// served the stream, Err if the handshake or the connection was refused.
async fn knock(to: SocketAddr, config: quinn::ClientConfig) -> Result<(), String> {
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).map_err(|e| e.to_string())?;
    let attempt = async {
        let conn = endpoint.connect_with(config, to, SERVER_NAME).map_err(|e| e.to_string())?.await;
        let conn = conn.map_err(|e| format!("handshake: {e}"))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open: {e}"))?;
        send.write_all(&[Service::Logic as u8]).await.map_err(|e| format!("write: {e}"))?;
        send.finish().map_err(|e| format!("finish: {e}"))?;
        recv.read_to_end(1 << 16).await.map_err(|e| format!("read: {e}"))?;
        Ok(())
    };
    let result = tokio::time::timeout(Duration::from_secs(6), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()));
    endpoint.close(0u32.into(), b"done");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_with_ca_certs_and_strangers_are_refused() {
    let _one_cluster_at_a_time = exclusive().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let (ours, foreign) = (tmp.path().join("ours"), tmp.path().join("foreign"));
    certs(&ours, "logic1,logic2,logic3,comet1,job1");
    certs(&foreign, "stranger");

    let dir = ours.clone();
    let mut c = Cluster::start_each(3, 1, 1, &[], move |name| {
        let file = |f: String| dir.join(f).display().to_string();
        vec![
            "--cluster-ca".into(),
            file("ca.pem".into()),
            "--cluster-cert".into(),
            file(format!("{name}.pem")),
            "--cluster-key".into(),
            file(format!("{name}.key")),
        ]
    })
    .await;
    assert!(c.logic[0].log().contains("cluster mTLS"), "logic1 runs with mTLS");
    let (mut client, _) = join(&c.comets[0], false, &auth_req(1, "key-1", "live://1", &[1000])).await;
    wait_for(Duration::from_secs(10), "the client counted", || async {
        (c.online_room(0, "1").await? == 1).then_some(())
    })
    .await;
    c.push_delivered(0, &mut client, "over mTLS").await;

    let target = c.wait_leader(Duration::from_secs(10)).await;
    let to = c.logic[target].quic;
    let before =
        counter(&c.metrics(&c.logic[target]).await.expect("/metrics"), "goim_quic_handshake_refused_total");

    // Control: a cluster certificate gets its stream served.
    let member = node_tls(&ours, "logic1").stranger_client_config().expect("client config");
    knock(to, member).await.expect("a peer with a cluster certificate is served");
    // Strangers: a foreign CA's certificate, a self-signed one, none.
    let foreign_cfg = node_tls(&foreign, "stranger").stranger_client_config().expect("client config");
    let foreign_result = knock(to, foreign_cfg).await;
    assert!(foreign_result.is_err(), "a foreign-CA certificate is refused");
    let self_signed = ClusterTls::generate().expect("cert").stranger_client_config().expect("client config");
    let self_signed_result = knock(to, self_signed).await;
    assert!(self_signed_result.is_err(), "a self-signed certificate is refused");
    let none = ClusterTls::client_config_for(b"goim/1").expect("client config");
    let none_result = knock(to, none).await;
    assert!(none_result.is_err(), "no client certificate is refused");
    eprintln!(
        "refusals: foreign {foreign_result:?}; self-signed {self_signed_result:?}; none {none_result:?}"
    );

    let after = wait_for(Duration::from_secs(10), "refusals counted on the target", || async {
        let m = c.metrics(&c.logic[target]).await?;
        let n = counter(&m, "goim_quic_handshake_refused_total");
        (n >= before + 3.0).then_some(n)
    })
    .await;
    eprintln!("goim_quic_handshake_refused_total on logic{}: {before} -> {after}", target + 1);
    assert!(c.logic[target].log().contains("QUIC handshake refused"), "the refusal is logged");

    // The cluster is unharmed.
    c.push_delivered((target + 1) % 3, &mut client, "after the strangers").await;
    c.assert_all_alive();
}
