//! Losing a comet (`kill -9`; separate processes: 3 logic, 2 comet, 1 job): its sessions expire
//! (mid pushes stop naming it), it leaves `/goim/nodes/weighted`, online counts on every logic
//! node fall to the survivor's clients; its clients reconnect there with their keys, are counted
//! again and receive room, mid and key pushes.
mod common;

use std::time::{Duration, Instant};

use common::cluster::{auth_req, data_of, exclusive, join, wait_for, Cluster, Role};
use goim_client::{Client, ClientError};
use goim_net::packet::Packet;
use serde_json::Value;

const ROOM: &str = "live://1";
const OP: i32 = 1000;

struct Member {
    mid: i64,
    key: String,
    ws: bool,
    client: Client,
}

impl Member {
    fn name(&self) -> String {
        format!("mid {} ({})", self.mid, if self.ws { "ws" } else { "tcp" })
    }
}

async fn push(c: &Cluster, node: usize, path: &str, body: &str) -> Value {
    let url = format!("{}{path}", c.logic[node].url());
    let reply: Value =
        c.http.post(&url).body(body.to_string()).send().await.expect("push").json().await.expect("reply");
    data_of(Some(reply.clone())).unwrap_or_else(|| panic!("push {url}: {reply}"))
}

/// The next packet, within 10 s.
async fn next(m: &mut Member) -> Packet {
    let name = m.name();
    match m.client.recv_timeout(Duration::from_secs(10)).await {
        Ok(Some(p)) => p,
        other => panic!("{name}: expected a push, got {other:?}"),
    }
}

async fn quiet(m: &mut Member) {
    let name = m.name();
    match m.client.recv_timeout(Duration::from_millis(300)).await {
        Err(ClientError::Timeout) => {}
        other => panic!("{name}: expected silence, got {other:?}"),
    }
}

/// Heartbeats until the reply's online count is `want`.
async fn heartbeat_until(m: &mut Member, want: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = m.client.heartbeat().await.unwrap_or_else(|e| panic!("{}: heartbeat: {e}", m.name()));
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{}: heartbeat says {n} online, want {want}", m.name());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every logic node counts `n` in the room and `n` connections in total.
async fn counts_everywhere(c: &Cluster, n: u64) {
    wait_for(
        Duration::from_secs(15),
        &format!("online room and total counts {n} on every logic node"),
        || async {
            for i in 0..c.logic.len() {
                let (_, conns) = c.online_total(i).await?;
                (c.online_room(i, "1").await? == n && conns == n).then_some(())?;
            }
            Some(())
        },
    )
    .await
}

/// Keys records the push log holds after `after` (what a mid or key push resolved to).
async fn keys_records_after(c: &Cluster, after: u64) -> Vec<Value> {
    let log =
        data_of(c.get(&format!("{}/goim/log?from={}", c.logic[0].url(), after + 1)).await).expect("log");
    log["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["target"]["type"] == "keys")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_comets_sessions_expire_and_its_clients_move() {
    let _one_cluster_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 2, 1).await;
    let (doomed, survivor) = (c.comets[0].comet_id(), c.comets[1].comet_id());

    let mut victims = Vec::new();
    let mut others = Vec::new();
    for (mid, comet, ws) in [(1, 0, false), (2, 0, true), (3, 0, false), (4, 1, true), (5, 1, false)] {
        let key = format!("key-{mid}");
        let (client, _) = join(&c.comets[comet], ws, &auth_req(mid, &key, ROOM, &[OP])).await;
        let m = Member { mid, key, ws, client };
        if comet == 0 {
            victims.push(m);
        } else {
            others.push(m);
        }
    }
    counts_everywhere(&c, 5).await;
    for m in victims.iter_mut().chain(others.iter_mut()) {
        heartbeat_until(m, 5).await;
    }
    // Before the kill: the room reaches everyone, and a mid push resolves to the doomed comet.
    push(&c, 0, "/goim/push/room?operation=1000&type=live&room=1", "before").await;
    for m in victims.iter_mut().chain(others.iter_mut()) {
        assert_eq!(&next(m).await.body[..], b"before", "{}", m.name());
    }
    let before = push(&c, 1, "/goim/push/mids?operation=1000&mids=1", "mid-before").await;
    let records = keys_records_after(&c, before["seq"].as_u64().unwrap() - 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["target"]["comet"], doomed.as_str(), "mid 1's session is on the doomed comet");
    assert_eq!(&next(&mut victims[0]).await.body[..], b"mid-before");

    c.kill9(Role::Comet, 0);
    let killed_at = Instant::now();

    // Its clients see their connections end.
    for m in &mut victims {
        let r = m.client.recv_timeout(Duration::from_secs(5)).await;
        assert!(
            matches!(r, Ok(None) | Err(ClientError::Io(_)) | Err(ClientError::Ws(_))),
            "{}: {r:?}",
            m.name()
        );
    }
    // It leaves /goim/nodes/weighted everywhere; the counts fall to the survivor's 2.
    wait_for(
        Duration::from_secs(15),
        "the dead comet gone from /goim/nodes/weighted on every logic node",
        || async {
            for i in 0..c.logic.len() {
                let ids: Vec<String> = c
                    .weighted_on(i)
                    .await?
                    .iter()
                    .filter_map(|a| a["id"].as_str().map(String::from))
                    .collect();
                (ids == [survivor.clone()]).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    counts_everywhere(&c, 2).await;
    for m in &mut others {
        heartbeat_until(m, 2).await;
    }
    // Its sessions expired: a mid push for its clients resolves to no comet at all.
    wait_for(Duration::from_secs(15), "the dead comet's sessions to expire", || async {
        let head = data_of(c.get(&format!("{}/goim/log?from=1&limit=1", c.logic[2].url())).await)?;
        let last = head["last_seq"].as_u64()?;
        push(&c, 2, "/goim/push/mids?operation=1000&mids=1,2,3", "mids-after-loss").await;
        keys_records_after(&c, last).await.is_empty().then_some(())
    })
    .await;
    eprintln!("comet killed: sessions and registration gone after {:?}", killed_at.elapsed());

    // The clients reconnect to the comet /goim/nodes/weighted lists, with their keys.
    let listed = c.weighted().await.expect("/goim/nodes/weighted");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let survivor_node = c.comets.iter().find(|n| n.comet_id() == survivor).expect("survivor");
    assert_eq!(listed[0]["tcp"], survivor_node.tcp_addr());
    assert_eq!(listed[0]["ws"], survivor_node.ws.to_string());
    for m in &mut victims {
        m.client = if m.ws {
            Client::connect_ws(&format!("ws://{}/sub", listed[0]["ws"].as_str().unwrap())).await.unwrap()
        } else {
            Client::connect_tcp(listed[0]["tcp"].as_str().unwrap()).await.unwrap()
        };
        let reply = m.client.auth(&auth_req(m.mid, &m.key, ROOM, &[OP])).await.expect("auth on the survivor");
        assert_eq!(reply.key, m.key);
    }
    counts_everywhere(&c, 5).await;
    for m in victims.iter_mut().chain(others.iter_mut()) {
        heartbeat_until(m, 5).await;
    }

    // And receive pushes there: room, mid and key.
    push(&c, 1, "/goim/push/room?operation=1000&type=live&room=1", "after").await;
    for m in victims.iter_mut().chain(others.iter_mut()) {
        let p = next(m).await;
        assert_eq!(&p.body[..], b"after", "{}", m.name());
        assert_eq!(p.seq, 2, "{}: room_seq continues", m.name());
    }
    push(&c, 2, "/goim/push/mids?operation=1000&mids=1", "mid-after").await;
    push(&c, 0, "/goim/push/keys?operation=1000&keys=key-2", "key-after").await;
    assert_eq!(&next(&mut victims[0]).await.body[..], b"mid-after");
    assert_eq!(&next(&mut victims[1]).await.body[..], b"key-after");
    for m in victims.iter_mut().chain(others.iter_mut()) {
        quiet(m).await;
    }
    c.assert_all_alive();
}
