//! `POST /goim/push/batch` [ext] against the real binary: a batch's room lines reach a
//! subscribed client and the room history in line order; per-message ids make a resent
//! batch (whole or mixed with new lines) append nothing twice; invalid lines are named and
//! the valid ones still committed, while requests over the limits are refused whole (413);
//! and across a `kill -9` of the Raft leader, batches sent (and retried whole on the next
//! node when a send fails) lose and duplicate nothing. Whether the kill interrupts a batch
//! depends on timing: how many were retried is printed, not asserted.
mod common;

use std::time::{Duration, Instant};

use common::cluster::{exclusive, Cluster, Role};
use common::{counter, eventually, get, metrics, Node};
use goim_client::{AuthRequest, Client};
use serde_json::{json, Value};

const ROOM: &str = "live://1000";
const OP: i32 = 1000;

/// A room line of `ROOM`; with `id` when given.
fn room_line(body: &str, id: Option<&str>) -> String {
    let mut line = json!({ "to": "room", "room": ROOM, "op": OP, "body": body });
    if let Some(id) = id {
        line["id"] = json!(id);
    }
    line.to_string()
}

/// POSTs `lines` (one per line) to `base`'s batch route: HTTP status and JSON reply.
async fn post_batch(http: &reqwest::Client, base: &str, lines: &[String]) -> (u16, Value) {
    let r = http.post(format!("{base}/goim/push/batch")).body(lines.join("\n")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The `results` of a reply that must have succeeded.
fn results(reply: &(u16, Value)) -> Vec<Value> {
    assert_eq!((reply.0, &reply.1["code"]), (200, &json!(0)), "batch failed: {}", reply.1);
    reply.1["data"]["results"].as_array().expect("results").clone()
}

/// `ROOM`'s whole retained history on `base`: (room_seq, body), oldest first.
async fn history(base: &str) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    loop {
        let since = all.last().map_or(0, |(s, _)| *s);
        let url = format!("{base}/goim/history/room?type=live&room=1000&since={since}&limit=1000");
        let reply = get(&url).await;
        assert_eq!(reply["code"], 0, "history: {reply}");
        let page = reply["data"]["messages"].as_array().expect("messages").clone();
        if page.is_empty() {
            return all;
        }
        for m in page {
            all.push((m["room_seq"].as_u64().unwrap(), m["body"].as_str().unwrap().to_string()));
        }
    }
}

fn bodies(history: &[(u64, String)]) -> Vec<String> {
    history.iter().map(|(_, b)| b.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reaches_the_room_in_line_order() {
    let node = Node::start(&[]).await;
    let mut client = Client::connect_tcp(&node.tcp()).await.unwrap();
    let auth = AuthRequest { mid: 1, room_id: ROOM.into(), ..Default::default() };
    assert_eq!(client.auth(&auth).await.unwrap().room_seq, 0);

    let sent: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let lines: Vec<String> = sent.iter().map(|b| room_line(b, None)).collect();
    let got = results(&post_batch(&reqwest::Client::new(), &node.http(), &lines).await);
    let room_seqs: Vec<u64> = got.iter().map(|r| r["room_seq"].as_u64().expect("room_seq")).collect();
    assert_eq!(room_seqs, (1..=200).collect::<Vec<u64>>(), "room offsets follow line order");
    let seqs: Vec<u64> = got.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "one log record per line, in order: {seqs:?}");

    let mut received = Vec::new();
    while received.len() < sent.len() {
        match client.recv_timeout(Duration::from_secs(10)).await {
            Ok(Some(p)) => received.push((p.seq, p.op, String::from_utf8_lossy(&p.body).into_owned())),
            other => panic!("{} of {} received, then {other:?}", received.len(), sent.len()),
        }
    }
    let want: Vec<(i32, i32, String)> =
        sent.iter().enumerate().map(|(i, b)| (i as i32 + 1, OP, b.clone())).collect();
    assert_eq!(received, want, "the client gets the lines in order, header seq = room_seq");
    let h = history(&node.http()).await;
    assert_eq!(bodies(&h), sent);
    assert_eq!(h.iter().map(|(s, _)| *s).collect::<Vec<_>>(), room_seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_make_each_message_apply_once() {
    let node = Node::start(&[]).await;
    let http = reqwest::Client::new();
    let line = |i: usize| room_line(&format!("m{i}"), Some(&format!("id-{i}")));
    let first: Vec<String> = (0..50).map(line).collect();
    let once = results(&post_batch(&http, &node.http(), &first).await);
    let again = results(&post_batch(&http, &node.http(), &first).await);
    assert_eq!(again, once, "a resent batch answers the first seqs");
    assert_eq!(bodies(&history(&node.http()).await), (0..50).map(|i| format!("m{i}")).collect::<Vec<_>>());

    // Half old ids, half new: the old answer their first seqs, only the new are appended.
    let mixed: Vec<String> = (25..75).map(line).collect();
    let got = results(&post_batch(&http, &node.http(), &mixed).await);
    assert_eq!(got[..25], once[25..], "old ids: their first outcomes");
    let room_seqs: Vec<u64> = got[25..].iter().map(|r| r["room_seq"].as_u64().unwrap()).collect();
    assert_eq!(room_seqs, (51..=75).collect::<Vec<u64>>(), "new ids appended after the first batch");
    let h = history(&node.http()).await;
    assert_eq!(
        bodies(&h),
        (0..75).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "each message once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_lines_are_named_and_the_valid_ones_committed() {
    let node = Node::start(&["--max-push-body", "1024"]).await;
    let http = reqwest::Client::new();
    let lines = vec![
        room_line("first", Some("v-1")),
        r#"{"to":"room","room":"live://1000","op":1000,"body":"#.to_string(),
        String::new(),
        json!({ "to": "rooms", "room": ROOM, "op": OP }).to_string(),
        room_line(&"x".repeat(1025), None),
        json!({ "to": "room", "op": OP, "body": "no room" }).to_string(),
        json!({ "to": "keys", "keys": ["nobody"], "op": OP, "body_b64": "AP8=" }).to_string(),
        room_line("second", None),
        json!({ "to": "all", "op": OP, "body": "everyone" }).to_string(),
    ];
    let got = results(&post_batch(&http, &node.http(), &lines).await);
    assert_eq!(got.len(), 8, "one result per non-blank line: {got:?}");
    let error =
        |i: usize| got[i]["error"].as_str().unwrap_or_else(|| panic!("line error: {}", got[i])).to_string();
    assert!(error(1).starts_with("line 2: bad JSON: "), "{}", error(1));
    assert_eq!(error(2), r#"line 4: to: "rooms" is none of room, keys, mids, all"#);
    assert_eq!(error(3), "line 5: body: 1025 bytes exceeds the limit of 1024");
    assert_eq!(error(4), "line 6: room: missing");
    assert_eq!((&got[0]["room_seq"], &got[6]["room_seq"]), (&json!(1), &json!(2)));
    let seqs: Vec<u64> = [0, 5, 6, 7].iter().map(|&i| got[i]["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, [1, 1, 2, 3], "a key push reaching nobody answers the log head");
    assert_eq!(got[7].as_object().unwrap().len(), 1, "no room_seq but for room lines: {}", got[7]);
    assert_eq!(bodies(&history(&node.http()).await), ["first", "second"]);
    let m = metrics(&node).await;
    assert_eq!(counter(&m, "goim_http_batch_lines_total"), 8.0);
    assert_eq!(common::metric(&m, r#"goim_http_batch_lines_total{result="refused""#), 4.0);

    // Over the limits: refused whole, nothing committed.
    let many: Vec<String> = (0..1001).map(|i| room_line(&format!("n{i}"), None)).collect();
    let (status, reply) = post_batch(&http, &node.http(), &many).await;
    assert_eq!((status, &reply["code"]), (413, &json!(-413)), "{reply}");
    assert_eq!(reply["message"], "1001 lines, more than the limit of 1000 per request");
    let big: Vec<String> = (0..1000).map(|i| room_line(&format!("{i:01100}"), None)).collect();
    let (status, reply) = post_batch(&http, &node.http(), &big).await;
    assert_eq!((status, &reply["code"]), (413, &json!(-413)), "{reply}");
    assert_eq!(reply["message"], "body: more than 1048576 bytes, the limit of a batch request");
    assert_eq!(history(&node.http()).await.len(), 2, "nothing of a refused request is committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_mode_answers_seq_0_before_the_commit() {
    let node = Node::start(&["--unsafe-ack-before-commit"]).await;
    let lines = vec![room_line("a", None), "{".to_string(), json!({ "to": "all", "op": OP }).to_string()];
    let got = results(&post_batch(&reqwest::Client::new(), &node.http(), &lines).await);
    assert_eq!(got[0], json!({ "seq": 0, "room_seq": 0 }));
    assert!(got[1]["error"].as_str().unwrap().starts_with("line 2: "), "{}", got[1]);
    assert_eq!(got[2], json!({ "seq": 0 }));
    eventually(Duration::from_secs(10), "the batch committed after its reply", || async {
        (bodies(&history(&node.http()).await) == ["a"]).then_some(())
    })
    .await;
}

/// Lines per batch and batches the pusher sends (one at a time, each retried until
/// acknowledged) in the leader-kill test.
const LINES: usize = 40;

/// Sends batch `b` (ids and bodies `b{b}-{i}`), retrying it whole, same ids, on the next
/// logic node after any failure, until acknowledged: its results and the attempts taken.
async fn push_until_acked(
    http: &reqwest::Client,
    bases: &[String],
    first: usize,
    b: usize,
) -> (Vec<Value>, usize) {
    let lines: Vec<String> =
        (0..LINES).map(|i| format!("b{b}-{i}")).map(|id| room_line(&id, Some(&id))).collect();
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut attempts = 0;
    loop {
        let base = &bases[(first + attempts) % bases.len()];
        attempts += 1;
        let sent = http.post(format!("{base}/goim/push/batch")).body(lines.join("\n")).send().await;
        let reply = match sent {
            Ok(r) => r.json::<Value>().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match reply {
            Ok(v) if v["code"] == 0 => return (v["data"]["results"].as_array().unwrap().clone(), attempts),
            other => assert!(Instant::now() < give_up, "batch {b} never acknowledged; last: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_retried_across_a_leader_kill_lose_and_duplicate_nothing() {
    let _one_cluster_at_a_time = exclusive().await;
    let mut c = Cluster::start(3, 0, 0).await;
    let bases = c.logic_urls();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(usize, Vec<Value>)>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let pusher = {
        let (acked, stop, bases) = (acked.clone(), stop.clone(), bases.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
            let (mut node, mut retried) = (0, 0);
            let mut b = 0;
            while !stop.is_cancelled() {
                let (results, attempts) = push_until_acked(&http, &bases, node, b).await;
                // The next batch starts where this one was acknowledged.
                node += attempts - 1;
                retried += usize::from(attempts > 1);
                acked.lock().unwrap().push((b, results));
                b += 1;
            }
            retried
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    eventually(Duration::from_secs(10), "batches acknowledged before the kill", || async {
        (acked_count() >= 5).then_some(())
    })
    .await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let before = acked_count();
    c.kill9(Role::Logic, leader);
    eventually(Duration::from_secs(20), "batches acknowledged after the kill", || async {
        (acked_count() >= before + 5).then_some(())
    })
    .await;
    stop.cancel();
    let retried = pusher.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} batches of {LINES} acknowledged, {retried} after a retry", acked.len());

    // Every acknowledged line once, in the order sent, with the room_seq it was answered.
    let want: Vec<(u64, String)> = acked
        .iter()
        .flat_map(|(b, results)| {
            results
                .iter()
                .enumerate()
                .map(move |(i, r)| (r["room_seq"].as_u64().unwrap(), format!("b{b}-{i}")))
        })
        .collect();
    // Nothing else was pushed: a line committed is a line acknowledged (retries included).
    let alive = c.wait_leader(Duration::from_secs(10)).await;
    let h = eventually(Duration::from_secs(10), "every acknowledged line in the history", || async {
        let h = history(&c.logic[alive].url()).await;
        (h.len() >= want.len()).then_some(h)
    })
    .await;
    assert_eq!(h, want, "acknowledged lines once each, in order, as answered");
    c.assert_all_alive();
}
