//! Fan-out across a cluster (3 logic, 2 comet, 2 job processes): TCP and WebSocket clients on
//! both comets get every room push (200, from pushers on different logic nodes) exactly once, in
//! room_seq order; key and mid pushes reach exactly the clients they name; room online counts are
//! cluster-wide in heartbeat replies and in `/goim/online/*` on every logic node.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{
    auth_req, check_room_stream, data_of, exclusive, join, wait_for, Cluster, Inbox, Pusher,
};
use goim_client::Client;

const ROOM: &str = "live://1";
const ROOM_OP: i32 = 3000;
const ROOM_PATH: &str = "/goim/push/room?operation=3000&type=live&room=1";
const PUSHES: usize = 200;
const PUSHERS: usize = 4;

struct Member {
    name: String,
    comet: usize,
    mid: i64,
    key: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_key_and_mid_pushes_fan_out_across_comets() {
    let _one_cluster_at_a_time = exclusive().await;
    let c = Cluster::start(3, 2, 2).await;

    // Three clients per comet, TCP and WebSocket mixed.
    let specs = [(0, false, 1), (0, true, 2), (0, false, 3), (1, true, 4), (1, false, 5), (1, true, 6)];
    let mut members = Vec::new();
    let mut clients: Vec<Client> = Vec::new();
    for (comet, ws, mid) in specs {
        let key = format!("key-{mid}");
        let (client, reply) = join(&c.comets[comet], ws, &auth_req(mid, &key, ROOM, &[1000, 2000])).await;
        assert_eq!((reply.key.as_str(), reply.mid), (key.as_str(), mid), "auth reply");
        let name = format!("mid {mid} on {} over {}", c.comets[comet].name, if ws { "ws" } else { "tcp" });
        members.push(Member { name, comet, mid, key });
        clients.push(client);
    }
    let total = members.len() as u64;

    // Online counts are cluster-wide: every logic node sums both comets' reports, and each
    // comet's heartbeat reply includes the other comet's clients.
    wait_for(Duration::from_secs(15), "room online count 6 and conn_count 6 on every logic node", || async {
        for i in 0..c.logic.len() {
            let (_, conns) = c.online_total(i).await?;
            (c.online_room(i, "1").await? == total && conns == total).then_some(())?;
        }
        Some(())
    })
    .await;
    for (m, client) in members.iter().zip(clients.iter_mut()) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = client.heartbeat().await.unwrap_or_else(|e| panic!("{}: heartbeat: {e}", m.name));
            if n as u64 == total {
                break;
            }
            assert!(Instant::now() < deadline, "{}: heartbeat reply says {n} online, want {total}", m.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let inboxes: Vec<Inbox> =
        members.iter().zip(clients).map(|(m, client)| Inbox::spawn(&m.name, client)).collect();

    // 200 room pushes from 4 concurrent pushers, each starting at a different logic node.
    let pusher = Pusher::new(c.logic_urls());
    let tasks: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let pusher = pusher.clone();
            tokio::spawn(async move {
                let mut outs = Vec::new();
                for n in 0..PUSHES / PUSHERS {
                    let body = format!("room-p{p}-{n}");
                    outs.push(pusher.push(p, ROOM_PATH, &body, &body).await);
                }
                outs
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.expect("pusher task"));
    }
    let mut by_room_seq: BTreeMap<u64, String> = BTreeMap::new();
    for o in &outcomes {
        assert!(o.acked.is_some(), "push {:?} not acknowledged: {}", o.body, o.last_error);
        let rs = o.room_seq().unwrap_or_else(|| panic!("room_seq in the reply to {:?}", o.body));
        assert!(by_room_seq.insert(rs, o.body.clone()).is_none(), "room_seq {rs} given twice");
    }
    assert_eq!(
        by_room_seq.keys().copied().collect::<Vec<_>>(),
        (1..=PUSHES as u64).collect::<Vec<_>>(),
        "room_seq dense from 1"
    );

    for inbox in &inboxes {
        wait_for(
            Duration::from_secs(20),
            &format!("{} to receive {PUSHES} room pushes", inbox.name),
            || async { (inbox.len() >= PUSHES).then_some(()) },
        )
        .await;
    }

    // Key and mid pushes, each through a different logic node: one client on one comet,
    // a mid on the other, and pushes naming clients on both comets.
    let http = &c.http;
    let post = |node: usize, path: String, body: &'static str| {
        let url = format!("{}{path}", c.logic[node].url());
        async move {
            let r = http.post(&url).body(body).send().await.expect("push").json().await.expect("push reply");
            data_of(Some(r)).unwrap_or_else(|| panic!("push {url} failed"))
        }
    };
    post(0, "/goim/push/keys?operation=1000&keys=key-5".into(), "to-key-5").await;
    post(1, "/goim/push/mids?operation=2000&mids=2".into(), "to-mid-2").await;
    post(2, "/goim/push/mids?operation=2000&mids=1,6".into(), "to-mids-1-6").await;
    let split = post(0, "/goim/push/keys?operation=1000&keys=key-3&keys=key-4".into(), "to-keys-3-4").await;
    let expected: BTreeMap<i64, &str> = [
        (1, "to-mids-1-6"),
        (2, "to-mid-2"),
        (3, "to-keys-3-4"),
        (4, "to-keys-3-4"),
        (5, "to-key-5"),
        (6, "to-mids-1-6"),
    ]
    .into();
    for inbox in &inboxes {
        wait_for(Duration::from_secs(10), &format!("{}'s key/mid push", inbox.name), || async {
            (inbox.len() > PUSHES).then_some(())
        })
        .await;
    }
    // A sentinel to every key, after the pushes: once a client has it, anything misrouted
    // to it (earlier in its comet's log) has arrived too.
    let all_keys: String = members.iter().map(|m| format!("&keys={}", m.key)).collect();
    post(1, format!("/goim/push/keys?operation=1000{all_keys}"), "sentinel").await;
    for inbox in &inboxes {
        inbox.wait_body("sentinel", Duration::from_secs(10)).await;
    }

    for (m, inbox) in members.iter().zip(inboxes) {
        assert_eq!(inbox.ended(), None, "{} stayed connected", m.name);
        let (_client, packets) = inbox.stop().await;
        let room = check_room_stream(&m.name, &packets, ROOM_OP);
        let room_packets: Vec<_> = packets.iter().filter(|p| p.op == ROOM_OP).collect();
        assert_eq!(room_packets.len(), PUSHES, "{}: every room push exactly once", m.name);
        assert_eq!(room_packets[0].seq, 1, "{}: room stream starts at room_seq 1", m.name);
        for (rs, body) in &by_room_seq {
            assert_eq!(room.get(body), Some(rs), "{}: {body:?} with the room_seq its reply named", m.name);
        }
        let direct: Vec<String> = packets
            .iter()
            .filter(|p| p.op != ROOM_OP)
            .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            .filter(|body| body != "sentinel")
            .collect();
        assert_eq!(direct, vec![expected[&m.mid].to_string()], "{}: key/mid pushes for it, only", m.name);
    }

    // The push naming clients on both comets was split per comet, each record to the comet
    // the key's session is on.
    let last = split["seq"].as_u64().expect("seq");
    let log = data_of(c.get(&format!("{}/goim/log?from={}&limit=10", c.logic[1].url(), last - 1)).await)
        .expect("push log");
    let targets: BTreeSet<(String, String)> = log["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["body"] == "to-keys-3-4")
        .map(|r| {
            (
                r["target"]["comet"].as_str().unwrap().to_string(),
                r["target"]["keys"][0].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = members
        .iter()
        .filter(|m| m.mid == 3 || m.mid == 4)
        .map(|m| (c.comets[m.comet].comet_id(), m.key.clone()))
        .collect();
    assert_eq!(targets, want, "one keys record per comet");
}
