//! The seam between a room's history and its live stream, for a channel joining a room (at
//! auth or on a room change). Logic names the room's offset `L` where the join was recorded;
//! the comet has handed the room's members everything up to its own offset `D`. The channel
//! joined the room holding its frames back, so everything above `D` reaches it live; the
//! comet fetches history up to `until = max(L, D)` and the channel's offset check drops the
//! overlap. A client that asks to resume from `R` gets `(R, until]` from history first, or
//! nothing of it (`recovered:false`) when that is not entirely retained: never a part.
use std::time::Duration;

use goim_net::packet::{encode_batch, Packet};
use goim_net::rpc::logic::HistoryPage;
use goim_net::rpc::{PushRecord, RpcError};

use super::channel::{Frame, RoomBatch};
use super::Comet;

/// Messages per history read.
const PAGE: u32 = 1000;
/// Most messages, and body bytes, per replayed op-9 frame.
const FRAME_MESSAGES: usize = 256;
const FRAME_BYTES: usize = 64 * 1024;
/// How long a replay may keep retrying its reads (logic failing over, a lagging node).
const FETCH_DEADLINE: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The offset (and epoch) a client asked to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub room_seq: u64,
    pub epoch: Option<String>,
}

/// The room's offset and epoch where logic recorded the join.
pub use goim_net::rpc::logic::Joined;

/// What the channel gets: `replay` after offset `room_seq`, then live messages.
#[derive(Debug, Default)]
pub struct Plan {
    pub room_seq: u64,
    pub recovered: bool,
    pub replay: Vec<Frame>,
}

/// The epoch as clients see it.
pub fn epoch_text(epoch: u64) -> String {
    if epoch == 0 {
        String::new()
    } else {
        format!("{epoch:x}")
    }
}

/// Plans the join of a channel that has just joined `room` (holding its frames).
pub async fn prepare(comet: &Comet, room: &str, joined: Joined, asked: Option<Resume>) -> Plan {
    let until = joined.room_seq.max(comet.delivered().room(room));
    if let Some(asked) = asked {
        let outcome = match refusal(&asked, joined, until, comet.config().recover_max) {
            Some(reason) => reason,
            None => match fetch(comet, room, asked.room_seq, until, joined.epoch).await {
                Ok(Some(replay)) => {
                    metrics::counter!("goim_comet_recoveries_total", "result" => "recovered").increment(1);
                    let n = until - asked.room_seq;
                    metrics::counter!("goim_comet_replayed_messages_total").increment(n);
                    return Plan { room_seq: asked.room_seq, recovered: true, replay };
                }
                Ok(None) => "not_retained",
                Err(e) => {
                    tracing::warn!(room, error = %e, "room history unavailable: not recovered");
                    "unavailable"
                }
            },
        };
        metrics::counter!("goim_comet_recoveries_total", "result" => outcome).increment(1);
    }
    // The stream continues after the join; what this comet handed the room between the
    // join and the channel's arrival comes from history.
    match fetch(comet, room, joined.room_seq, until, joined.epoch).await {
        Ok(Some(replay)) => Plan { room_seq: joined.room_seq, recovered: false, replay },
        outcome => {
            tracing::warn!(room, from = joined.room_seq, until, ?outcome, "join gap not fetched");
            metrics::counter!("goim_comet_join_gaps_total").increment(1);
            Plan { room_seq: until, recovered: false, replay: Vec::new() }
        }
    }
}

/// Why resuming from `asked` cannot work, if it cannot.
fn refusal(asked: &Resume, joined: Joined, until: u64, max: u64) -> Option<&'static str> {
    if asked.epoch.as_deref().is_some_and(|e| e != epoch_text(joined.epoch)) {
        Some("epoch")
    } else if asked.room_seq > joined.room_seq {
        Some("ahead")
    } else if until - asked.room_seq > max {
        Some("too_far")
    } else {
        None
    }
}

/// Room history `(after, until]` as op-9 frames; `None` when not all of it is retained.
async fn fetch(
    comet: &Comet,
    room: &str,
    after: u64,
    until: u64,
    epoch: u64,
) -> Result<Option<Vec<Frame>>, RpcError> {
    let deadline = tokio::time::Instant::now() + FETCH_DEADLINE;
    let mut next = after;
    let mut records = Vec::new();
    while next < until {
        let page = match comet.logic().history(room, next, until, PAGE).await {
            Ok(HistoryPage { epoch: e, .. }) if e != epoch => return Ok(None),
            Ok(HistoryPage { last_seq, records, .. }) if records.is_empty() => {
                if last_seq >= until {
                    return Ok(None);
                }
                Err(RpcError::Unavailable(format!("history at {last_seq}, {until} needed")))
            }
            Ok(HistoryPage { records, .. }) => Ok(records),
            Err(e) => Err(e),
        };
        match page {
            Ok(page) => {
                if page.first().and_then(PushRecord::room_seq) != Some(next + 1) {
                    return Ok(None);
                }
                next = page.last().and_then(PushRecord::room_seq).unwrap_or(next);
                records.extend(page);
            }
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
    Ok(Some(frames(records)))
}

/// Consecutive room records as op-9 frames of bounded size.
fn frames(records: Vec<PushRecord>) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut packets: Vec<Packet> = Vec::new();
    let (mut first, mut bytes) = (0, 0);
    let mut flush = |packets: &mut Vec<Packet>, first: u64| {
        if !packets.is_empty() {
            let last = first + packets.len() as u64 - 1;
            out.push(Frame::Room(RoomBatch { batch: encode_batch(packets.as_slice()), first, last }));
            packets.clear();
        }
    };
    for r in records {
        let Some(room_seq) = r.room_seq() else { continue };
        if packets.len() >= FRAME_MESSAGES || bytes >= FRAME_BYTES {
            flush(&mut packets, first);
        }
        if packets.is_empty() {
            (first, bytes) = (room_seq, 0);
        }
        bytes += r.body.len();
        packets.push(Packet::new(r.op, super::push::room_seq_field(room_seq), r.body));
    }
    flush(&mut packets, first);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::testkit::{auth, Cluster};
    use goim_client::{AuthRequest, Client};
    use goim_net::packet::{op, split_batch};
    use goim_net::rpc::PushTarget;

    const WAIT: Duration = Duration::from_secs(2);

    async fn bodies(client: &mut Client, n: usize) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let p = client.recv_timeout(WAIT).await.unwrap().unwrap();
            out.push((p.seq, String::from_utf8_lossy(&p.body).into_owned()));
        }
        out
    }

    async fn nothing_more(client: &mut Client) {
        client.heartbeat().await.unwrap();
        let extra = client.recv_timeout(Duration::from_millis(50)).await;
        assert!(extra.is_err(), "unexpected {extra:?}");
    }

    fn expect(range: std::ops::RangeInclusive<u64>) -> Vec<(i32, String)> {
        range.map(|s| (s as i32, format!("m{s}"))).collect()
    }

    fn resume_from(room_seq: u64, epoch: Option<&str>) -> AuthRequest {
        AuthRequest { room_seq: Some(room_seq), epoch: epoch.map(String::from), ..auth(1, "r", &[]) }
    }

    #[tokio::test]
    async fn auth_replays_what_was_missed_then_live_without_duplicates() {
        for ws in [false, true] {
            let cluster = Cluster::start().await;
            let history: Vec<_> =
                (1..=10).map(|s| cluster.logic.commit_room("r", &format!("m{s}"))).collect();
            let mut client = cluster.client(ws).await;
            let reply = client.auth(&resume_from(3, Some("e0"))).await.unwrap();
            assert_eq!((reply.room_seq, reply.epoch.as_str(), reply.recovered), (3, "e0", true));
            assert_eq!(bodies(&mut client, 7).await, expect(4..=10), "ws={ws}");
            // The job delivers 8..=12 (8..=10 overlap the replay): only 11 and 12 are new.
            let mut live = history[7..].to_vec();
            live.extend((11..=12).map(|s| cluster.logic.commit_room("r", &format!("m{s}"))));
            cluster.push(12, live).await;
            assert_eq!(bodies(&mut client, 2).await, expect(11..=12));
            nothing_more(&mut client).await;
        }
    }

    #[tokio::test]
    async fn a_gap_beyond_retention_or_another_epoch_is_not_recovered() {
        let cluster = Cluster::start().await;
        for s in 1..=10 {
            cluster.logic.commit_room("r", &format!("m{s}"));
        }
        cluster.logic.trim_room("r", 6);
        for asked in [resume_from(2, None), resume_from(7, Some("other")), resume_from(11, None)] {
            let mut client = cluster.client(false).await;
            let reply = client.auth(&asked).await.unwrap();
            assert_eq!((reply.room_seq, reply.recovered), (10, false), "{asked:?}");
            nothing_more(&mut client).await;
        }
        let mut client = cluster.client(true).await;
        let reply = client.auth(&resume_from(5, Some("e0"))).await.unwrap();
        assert_eq!((reply.room_seq, reply.recovered), (5, true), "5 is the last message not needed");
        assert_eq!(bodies(&mut client, 5).await, expect(6..=10));
        let live = cluster.logic.commit_room("r", "m11");
        cluster.push(11, vec![live]).await;
        assert_eq!(bodies(&mut client, 1).await, expect(11..=11));
    }

    #[tokio::test]
    async fn what_the_comet_delivered_before_the_channel_joined_comes_from_history() {
        let cluster = Cluster::start().await;
        let mut member = cluster.client(false).await;
        member.auth(&auth(1, "r", &[])).await.unwrap();
        let records: Vec<_> = (1..=5).map(|s| cluster.logic.commit_room("r", &format!("m{s}"))).collect();
        cluster.push(5, records).await;
        assert_eq!(bodies(&mut member, 5).await, expect(1..=5));
        // Logic recorded the join at offset 3, but this comet had handed out 4 and 5 already.
        cluster.logic.set_join_offset(Some(3));
        let mut late = cluster.client(true).await;
        let reply = late.auth(&auth(2, "r", &[])).await.unwrap();
        assert_eq!((reply.room_seq, reply.recovered), (3, false));
        assert_eq!(bodies(&mut late, 2).await, expect(4..=5));
        nothing_more(&mut late).await;
    }

    #[tokio::test]
    async fn json_room_change_recovers_and_a_plain_one_is_echoed() {
        let cluster = Cluster::start().await;
        for s in 1..=4 {
            cluster.logic.commit_room("b", &format!("m{s}"));
        }
        let mut client = cluster.client(false).await;
        client.auth(&auth(1, "a", &[])).await.unwrap();
        let body =
            client.request(op::CHANGE_ROOM, r#"{"room_id":"b","room_seq":1,"epoch":"e0"}"#).await.unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(reply, serde_json::json!({"room_id":"b","room_seq":1,"epoch":"e0","recovered":true}));
        assert_eq!(bodies(&mut client, 3).await, expect(2..=4));
        assert_eq!(cluster.comet.local_room_count("b"), 1);
        let bad = client.request(op::CHANGE_ROOM, r#"{"room_id":7}"#).await.unwrap();
        assert!(String::from_utf8_lossy(&bad).contains("bad change-room JSON"), "{bad:?}");
        assert_eq!(cluster.comet.local_room_count("b"), 1, "a bad request changes nothing");
        assert_eq!(client.request(op::CHANGE_ROOM, "a").await.unwrap(), "a");
        assert_eq!(cluster.comet.local_room_count("b"), 0);
        nothing_more(&mut client).await;
    }

    fn record(room_seq: u64, body: &str) -> PushRecord {
        PushRecord {
            partition: 0,
            seq: room_seq + 100,
            ts_ms: 1,
            target: PushTarget::Room { room: "r".into(), room_seq },
            op: 1000,
            body: body.to_string().into(),
        }
    }

    #[test]
    fn refusals() {
        let joined = Joined { room_seq: 50, epoch: 0xab };
        let asked = |room_seq, epoch: Option<&str>| Resume { room_seq, epoch: epoch.map(String::from) };
        assert_eq!(refusal(&asked(10, Some("ab")), joined, 60, 100), None);
        assert_eq!(refusal(&asked(10, None), joined, 60, 100), None);
        assert_eq!(refusal(&asked(10, Some("ac")), joined, 60, 100), Some("epoch"));
        assert_eq!(refusal(&asked(51, None), joined, 60, 100), Some("ahead"));
        assert_eq!(refusal(&asked(10, None), joined, 60, 49), Some("too_far"));
        assert_eq!(epoch_text(0), "");
        assert_eq!(epoch_text(0xab), "ab");
    }

    #[test]
    fn replay_frames_are_bounded_and_carry_their_offsets() {
        let records: Vec<_> = (1..=600).map(|s| record(s, "m")).collect();
        let frames = frames(records);
        let ranges: Vec<_> = frames
            .iter()
            .map(|f| match f {
                Frame::Room(r) => (r.first, r.last),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ranges, [(1, 256), (257, 512), (513, 600)]);
        let Frame::Room(last) = &frames[2] else { unreachable!() };
        let packets = split_batch(last.batch.slice(16..), usize::MAX).unwrap();
        assert_eq!(packets.len(), 88);
        assert_eq!(packets[0].seq, 513);

        let big = "x".repeat(40 * 1024);
        let frames = super::frames((1..=3).map(|s| record(s, &big)).collect());
        assert_eq!(frames.len(), 2, "a frame closes once past 64 KiB");
    }
}
