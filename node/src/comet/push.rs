//! The `Service::Push` stream handler: jobs stream `PushBatch`es to this comet, which
//! delivers each to its channels and acks it. Delivery is exactly-once towards clients
//! even though jobs deliver at least once: records at or below a partition's delivered
//! seq are skipped. Room records of one batch become one op-9 frame per room, encoded
//! once and shared by every member. The highest room offset delivered per room is noted
//! before the members are visited: a channel joining meanwhile replays history up to it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use goim_net::packet::{encode_batch, Packet};
use goim_net::quic::{read_frame, write_frame, BiStream, StreamHandler};
use goim_net::rpc::push::{PushAck, PushBatch};
use goim_net::rpc::record::Partition;
use goim_net::rpc::{PushRecord, PushTarget};

use super::channel::{Channel, Frame, Pushed, RoomBatch};
use super::{lock, Comet};

/// Highest seq delivered per partition, and highest offset per room. Each partition has
/// its own lock, held for a whole batch, so two streams of one partition (a job failing
/// over) cannot interleave.
#[derive(Default)]
pub struct Delivered {
    partitions: Mutex<HashMap<Partition, Arc<Mutex<u64>>>>,
    /// Room → (highest offset handed out, when).
    rooms: Mutex<HashMap<String, (u64, Instant)>>,
}

/// A room not delivered to for this long is forgotten. A join reads the offset only for
/// deliveries racing it (seconds at most); one that races re-creates the entry first.
const FORGET_ROOM_AFTER: Duration = Duration::from_secs(300);

impl Delivered {
    fn cursor(&self, partition: Partition) -> Arc<Mutex<u64>> {
        lock(&self.partitions).entry(partition).or_default().clone()
    }

    fn note_room(&self, room: &str, room_seq: u64) {
        let now = Instant::now();
        let mut rooms = lock(&self.rooms);
        match rooms.get_mut(room) {
            Some((seen, at)) => (*seen, *at) = ((*seen).max(room_seq), now),
            None => {
                rooms.insert(room.to_string(), (room_seq, now));
            }
        }
    }

    /// The highest offset of `room` this comet has handed to the room's members (0: none
    /// lately). Read after a channel joined the room: everything above reaches it live.
    pub fn room(&self, room: &str) -> u64 {
        lock(&self.rooms).get(room).map_or(0, |(seen, _)| *seen)
    }

    /// Forgets rooms not delivered to for `FORGET_ROOM_AFTER`.
    pub fn forget_quiet_rooms(&self) {
        lock(&self.rooms).retain(|_, (_, at)| at.elapsed() < FORGET_ROOM_AFTER);
    }
}

pub struct PushHandler {
    comet: Weak<Comet>,
    /// The comet's runtime: streams are served there, so waking a connection's writer
    /// is a push onto the local run queue, not a cross-runtime wake-up (a comet sharing
    /// its process runs on its own runtime, the QUIC endpoint on the other).
    runtime: tokio::runtime::Handle,
}

impl PushHandler {
    /// Call on the comet's runtime.
    pub fn new(comet: &Arc<Comet>) -> PushHandler {
        PushHandler { comet: Arc::downgrade(comet), runtime: tokio::runtime::Handle::current() }
    }
}

impl StreamHandler for PushHandler {
    fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Some(comet) = self.comet.upgrade() else {
            return Box::pin(async {});
        };
        let serving = self.runtime.spawn(serve_stream(comet, stream));
        Box::pin(async move {
            let _ = serving.await;
        })
    }
}

/// Reads batches until the job finishes the stream (or the comet shuts down), acking each
/// after delivery.
pub async fn serve_stream(comet: Arc<Comet>, mut stream: BiStream) {
    loop {
        let next = tokio::select! {
            _ = comet.shutdown_token().cancelled() => return,
            next = read_frame::<PushBatch>(&mut stream.recv) => next,
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(peer = %stream.peer, error = %e, "push stream ended");
                return;
            }
        };
        let ack = deliver(&comet, batch);
        if let Err(e) = write_frame(&mut stream.send, &ack).await {
            tracing::debug!(peer = %stream.peer, error = %e, "push ack failed");
            return;
        }
    }
    let _ = stream.send.finish();
}

/// Delivers the records of `batch` not delivered before, in order, and advances the
/// partition's cursor to the batch's end.
pub fn deliver(comet: &Comet, batch: PushBatch) -> PushAck {
    let cursor = comet.delivered().cursor(batch.partition);
    let mut delivered = lock(&cursor);
    let mut rooms = RoomGroups::default();
    let mut frames = 0usize;
    let mut last_seq = batch.last_seq;
    if let Some(first) = batch.records.iter().find(|r| r.seq > *delivered) {
        let age = crate::clock::now_ms().saturating_sub(first.ts_ms);
        metrics::histogram!("goim_comet_record_age_seconds").record(age as f64 / 1000.0);
    }
    for record in batch.records {
        if record.seq <= *delivered {
            continue;
        }
        last_seq = last_seq.max(record.seq);
        let PushRecord { target, op, body, .. } = record;
        if let PushTarget::Room { room, room_seq } = target {
            if !rooms.continues(&room, room_seq) {
                tracing::warn!(room, room_seq, "room offsets not consecutive in a push batch");
                frames += rooms.flush(comet);
            }
            rooms.add(room, room_seq, Packet::new(op, room_seq_field(room_seq), body));
            continue;
        }
        // Anything else must reach clients after the room records before it.
        frames += rooms.flush(comet);
        frames += match target {
            PushTarget::All => to_all(comet, op, body),
            PushTarget::Keys { comet: id, keys } if id == comet.id() => to_keys(comet, &keys, op, body),
            PushTarget::Kick { comet: id, key, conn } if id == comet.id() => {
                kick(comet, &key, conn);
                0
            }
            _ => 0,
        };
    }
    frames += rooms.flush(comet);
    *delivered = (*delivered).max(last_seq);
    metrics::counter!("goim_comet_pushed_frames_total").increment(frames as u64);
    PushAck { partition: batch.partition, last_seq: *delivered }
}

/// The packet seq of a room push is the room offset, wrapping like goim's 32-bit seq.
pub(super) fn room_seq_field(room_seq: u64) -> i32 {
    room_seq as u32 as i32
}

/// Room packets gathered from consecutive room records, per room, with the first offset.
#[derive(Default)]
struct RoomGroups {
    rooms: HashMap<String, (u64, Vec<Packet>)>,
}

impl RoomGroups {
    /// Whether `room_seq` continues what was gathered for `room` (offsets of a room are
    /// consecutive in the log; if not, the caller flushes first).
    fn continues(&self, room: &str, room_seq: u64) -> bool {
        self.rooms.get(room).is_none_or(|(first, packets)| first + packets.len() as u64 == room_seq)
    }

    fn add(&mut self, room: String, room_seq: u64, packet: Packet) {
        self.rooms.entry(room).or_insert_with(|| (room_seq, Vec::new())).1.push(packet);
    }

    /// Sends one op-9 frame per room, encoded once; returns the frames queued.
    fn flush(&mut self, comet: &Comet) -> usize {
        let mut queued = 0;
        for (room, (first, packets)) in self.rooms.drain() {
            let last = first + packets.len() as u64 - 1;
            let frame = Frame::Room(RoomBatch { batch: encode_batch(&packets), first, last });
            comet.delivered().note_room(&room, last);
            for bucket in comet.buckets() {
                bucket.for_room(&room, |ch| queued += send(ch, &frame));
            }
        }
        queued
    }
}

fn send(ch: &Channel, frame: &Frame) -> usize {
    usize::from(ch.push(frame.clone()) == Pushed::Queued)
}

fn to_all(comet: &Comet, op: i32, body: Bytes) -> usize {
    let frame = Frame::Batch(encode_batch(&[Packet::new(op, 0, body)]));
    let mut queued = 0;
    for bucket in comet.buckets() {
        bucket.for_each(|ch| {
            if ch.accepts(op) {
                queued += send(ch, &frame);
            }
        });
    }
    queued
}

fn to_keys(comet: &Comet, keys: &[String], op: i32, body: Bytes) -> usize {
    let frame = Frame::Batch(encode_batch(&[Packet::new(op, 0, body)]));
    keys.iter()
        .filter_map(|key| comet.channel(key))
        .filter(|ch| ch.accepts(op))
        .map(|ch| send(&ch, &frame))
        .sum()
}

/// Closes `key`'s channel if it is connection `conn` (a newer one stays).
fn kick(comet: &Comet, key: &str, conn: u64) {
    if let Some(ch) = comet.channel(key).filter(|ch| ch.conn == conn) {
        tracing::debug!(key, conn, "kicked");
        ch.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::testkit::{auth, closed, rec, Cluster, TestConfig};
    use crate::comet::SlowConsumer;
    use goim_client::Client;
    use goim_net::packet::{op, split_batch};
    use goim_net::rpc::Service;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(2);

    fn room(room: &str, room_seq: u64) -> PushTarget {
        PushTarget::Room { room: room.into(), room_seq }
    }

    async fn next(client: &mut Client) -> Packet {
        client.recv_timeout(WAIT).await.unwrap().unwrap()
    }

    /// Nothing more arrives (a heartbeat round trip flushes anything in flight first).
    async fn nothing_more(client: &mut Client) {
        client.heartbeat().await.unwrap();
        let extra = client.recv_timeout(Duration::from_millis(50)).await;
        assert!(extra.is_err(), "unexpected {extra:?}");
    }

    #[test]
    fn room_seq_wraps_into_the_packet_seq() {
        assert_eq!(room_seq_field(7), 7);
        assert_eq!(room_seq_field(u64::from(u32::MAX) + 8), 7);
    }

    #[tokio::test]
    async fn room_batch_reaches_tcp_as_inner_packets_and_ws_as_one_frame() {
        let cluster = Cluster::start().await;
        let mut tcp = cluster.client(false).await;
        tcp.auth(&auth(1, "live://1", &[])).await.unwrap();
        let mut ws = cluster.client(true).await;
        ws.auth(&auth(2, "live://1", &[])).await.unwrap();
        let mut other = cluster.client(true).await;
        other.auth(&auth(3, "live://2", &[])).await.unwrap();

        let records = vec![
            rec(1, room("live://1", 1), 1000, "a"),
            rec(2, room("live://2", 1), 1000, "x"),
            rec(3, room("live://1", 2), 1001, "b"),
        ];
        let ack = cluster.push(3, records).await;
        assert_eq!((ack.partition, ack.last_seq), (0, 3));

        let want = [Packet::new(1000, 1, "a"), Packet::new(1001, 2, "b")];
        assert_eq!([next(&mut tcp).await, next(&mut tcp).await], want);
        let frame = ws.recv_frame().await.unwrap().unwrap();
        assert_eq!((frame.op, frame.ver, frame.seq), (op::RAW, 1, 0));
        assert_eq!(split_batch(frame.body, 4096).unwrap(), want);
        assert_eq!(next(&mut other).await, Packet::new(1000, 1, "x"));
        nothing_more(&mut tcp).await;
        nothing_more(&mut ws).await;
        nothing_more(&mut other).await;
    }

    /// goim's comet writes key, mid and broadcast pushes as op 9 (`OpRaw`) too: whole on
    /// WebSocket, the inner packet on TCP.
    #[tokio::test]
    async fn key_and_broadcast_pushes_reach_ws_wrapped_in_op_9_and_tcp_bare() {
        let cluster = Cluster::start().await;
        let mut tcp = cluster.client(false).await;
        let tcp_key = tcp.auth(&auth(1, "r", &[1000])).await.unwrap().key;
        let mut ws = cluster.client(true).await;
        let ws_key = ws.auth(&auth(2, "r", &[1000])).await.unwrap().key;
        let keys = PushTarget::Keys { comet: cluster.comet.id().into(), keys: vec![tcp_key, ws_key] };
        cluster.push(2, vec![rec(1, keys, 1000, "key"), rec(2, PushTarget::All, 1000, "all")]).await;
        for body in ["key", "all"] {
            let want = Packet::new(1000, 0, body);
            assert_eq!(tcp.recv_frame().await.unwrap().unwrap(), want);
            let frame = ws.recv_frame().await.unwrap().unwrap();
            assert_eq!((frame.op, frame.ver, frame.seq), (op::RAW, 1, 0));
            assert_eq!(split_batch(frame.body, 4096).unwrap(), [want]);
        }
    }

    #[tokio::test]
    async fn keys_and_all_respect_accepts_and_order() {
        let cluster = Cluster::start().await;
        let mut yes = cluster.client(false).await;
        let yes_key = yes.auth(&auth(1, "r", &[1000])).await.unwrap().key;
        let mut no = cluster.client(true).await;
        let no_key = no.auth(&auth(2, "r", &[2000])).await.unwrap().key;
        let id = cluster.comet.id().to_string();
        let keys = |comet: &str| PushTarget::Keys {
            comet: comet.into(),
            keys: vec![yes_key.clone(), no_key.clone(), "absent".into()],
        };

        let records = vec![
            rec(1, room("r", 1), 1000, "room-before"),
            rec(2, keys(&id), 1000, "keys"),
            rec(3, PushTarget::All, 1000, "all"),
            rec(4, keys("another-comet"), 1000, "not ours"),
            rec(5, room("r", 2), 1000, "room-after"),
        ];
        cluster.push(5, records).await;
        let bodies = |packets: Vec<Packet>| -> Vec<Bytes> { packets.into_iter().map(|p| p.body).collect() };
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(next(&mut yes).await);
        }
        assert_eq!(bodies(got), ["room-before", "keys", "all", "room-after"]);
        let got = vec![next(&mut no).await, next(&mut no).await];
        assert_eq!(bodies(got), ["room-before", "room-after"]);
        nothing_more(&mut yes).await;
        nothing_more(&mut no).await;

        // Subscribing makes the other client accept the op.
        no.request(op::SUB, "1000").await.unwrap();
        cluster.push(6, vec![rec(6, PushTarget::All, 1000, "all-2")]).await;
        assert_eq!(next(&mut no).await, Packet::new(1000, 0, "all-2"));
        assert_eq!(next(&mut yes).await, Packet::new(1000, 0, "all-2"));
    }

    #[tokio::test]
    async fn already_delivered_seqs_are_skipped() {
        let cluster = Cluster::start().await;
        let mut client = cluster.client(false).await;
        client.auth(&auth(1, "r", &[1000])).await.unwrap();
        let first = vec![rec(1, room("r", 1), 1000, "one"), rec(2, PushTarget::All, 1000, "two")];
        assert_eq!(cluster.push(2, first.clone()).await.last_seq, 2);
        // The job retries the batch, then continues with an overlapping one.
        assert_eq!(cluster.push(2, first).await.last_seq, 2);
        let overlap = vec![rec(2, PushTarget::All, 1000, "two"), rec(3, room("r", 2), 1000, "three")];
        assert_eq!(cluster.push(4, overlap).await.last_seq, 4);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next(&mut client).await.body);
        }
        assert_eq!(got, ["one", "two", "three"]);
        nothing_more(&mut client).await;
    }

    #[tokio::test]
    async fn one_stream_carries_many_batches() {
        let cluster = Cluster::start().await;
        let mut client = cluster.client(true).await;
        client.auth(&auth(1, "r", &[])).await.unwrap();
        let (mut send, mut recv) =
            cluster.logic.endpoint().open(&cluster.comet_quic(), Service::Push).await.unwrap();
        for seq in 1..=3u64 {
            let batch =
                PushBatch { partition: 2, records: vec![rec(seq, room("r", seq), 1000, "m")], last_seq: seq };
            write_frame(&mut send, &batch).await.unwrap();
            let ack: PushAck =
                tokio::time::timeout(WAIT, read_frame(&mut recv)).await.unwrap().unwrap().unwrap();
            assert_eq!(ack, PushAck { partition: 2, last_seq: seq });
        }
        send.finish().unwrap();
        for seq in 1..=3 {
            assert_eq!(next(&mut client).await.seq, seq);
        }
    }

    #[tokio::test]
    async fn slow_consumer_is_closed_or_has_frames_dropped() {
        for slow in [SlowConsumer::Close, SlowConsumer::Drop] {
            let cluster = Cluster::start_with(TestConfig {
                outbound_queue: 2,
                slow_consumer: slow,
                ..TestConfig::default()
            })
            .await;
            let mut client = cluster.client(false).await;
            let key = client.auth(&auth(1, "r", &[1000])).await.unwrap().key;
            let keys = PushTarget::Keys { comet: cluster.comet.id().to_string(), keys: vec![key] };
            // One batch is delivered in one go: the writer cannot drain in between.
            let records = (1..=4).map(|seq| rec(seq, keys.clone(), 1000, "m"));
            cluster.push(4, records.collect()).await;
            match slow {
                SlowConsumer::Close => assert!(closed(&mut client).await),
                SlowConsumer::Drop => {
                    assert_eq!(next(&mut client).await.body, "m");
                    assert_eq!(next(&mut client).await.body, "m");
                    nothing_more(&mut client).await;
                }
            }
        }
    }
}
