//! One authenticated connection as the rest of the comet sees it: identity (key, mid,
//! conn id, client ip), current room, accepted ops, and a bounded queue of pre-encoded
//! frames that the connection's writer drains. Pushing never blocks: a full queue applies
//! the slow-consumer policy.
//!
//! The channel also keeps its place in its room's stream (`RoomFlow`): room frames at or
//! below the last offset it queued are dropped, so history replay and live delivery meet
//! without a duplicate. While the comet prepares a replay, everything is held back and
//! released behind the replay, in arrival order.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use goim_net::packet::{encode_batch, split_batch, HEADER_LEN};
use tokio::sync::Notify;

use super::{lock, SlowConsumer};

/// A frame encoded once and shared (refcounted) by every connection it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One packet, written as-is on every transport.
    Packet(Bytes),
    /// An op-9 packet wrapping pushed packets (goim's `OpRaw`): WebSocket clients get it
    /// whole, TCP clients its inner packets, as goim's comet writes key, mid and broadcast
    /// pushes.
    Batch(Bytes),
    /// An op-9 batch of consecutive room messages, offsets `first..=last`: WebSocket
    /// clients get it as one message, TCP clients get its inner packets (the bytes past
    /// the outer header).
    Room(RoomBatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomBatch {
    pub batch: Bytes,
    pub first: u64,
    pub last: u64,
}

impl RoomBatch {
    /// The batch without its messages at or below `seen` (which must be inside it).
    fn after(&self, seen: u64) -> Option<RoomBatch> {
        let packets = split_batch(self.batch.slice(HEADER_LEN.min(self.batch.len())..), usize::MAX).ok()?;
        let skip = usize::try_from(seen + 1 - self.first).ok()?;
        if packets.len() as u64 != self.last - self.first + 1 || skip >= packets.len() {
            return None;
        }
        Some(RoomBatch { batch: encode_batch(&packets[skip..]), first: seen + 1, last: self.last })
    }
}

impl Frame {
    fn bytes(&self) -> &Bytes {
        match self {
            Frame::Packet(b) | Frame::Batch(b) => b,
            Frame::Room(r) => &r.batch,
        }
    }

    pub fn ws_bytes(&self) -> Bytes {
        self.bytes().clone()
    }

    /// `tcp_bytes().len()`, without touching the refcount.
    pub fn tcp_len(&self) -> usize {
        self.tcp_slice().len()
    }

    /// The encoded bytes and how many of them TCP clients skip (an op-9 wrapper's header:
    /// they get the inner packets).
    fn tcp_parts(&self) -> (&Bytes, usize) {
        match self {
            Frame::Packet(b) => (b, 0),
            Frame::Batch(b) => (b, HEADER_LEN.min(b.len())),
            Frame::Room(r) => (&r.batch, HEADER_LEN.min(r.batch.len())),
        }
    }

    /// What `tcp_bytes` holds, borrowed (for copying into a write buffer without touching
    /// the refcount).
    pub fn tcp_slice(&self) -> &[u8] {
        let (bytes, skip) = self.tcp_parts();
        &bytes[skip..]
    }

    pub fn tcp_bytes(&self) -> Bytes {
        let (bytes, skip) = self.tcp_parts();
        bytes.slice(skip..)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Frames queued before the connection is a slow consumer.
    pub capacity: usize,
    pub slow: SlowConsumer,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full and the policy is `Drop`.
    Dropped,
    /// The channel is closed (now, or already before).
    Closed,
    /// Room messages the channel had queued already.
    Duplicate,
    /// The queue is full (internal: `push` turns it into `Closed` or `Dropped` per the
    /// policy).
    Full,
}

/// Where the channel is in its room's stream.
#[derive(Default)]
struct RoomFlow {
    /// The last room offset queued (room frames at or below it are duplicates).
    seen: u64,
    /// `Some` while a replay is being prepared: frames pushed meanwhile, in order.
    held: Option<Vec<Frame>>,
}

/// What a push touches.
#[derive(Default)]
struct Outbound {
    flow: RoomFlow,
    queue: VecDeque<Frame>,
}

/// The session state logic confirmed at auth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    pub key: String,
    pub mid: i64,
    /// `None` when in no room.
    pub room: Option<String>,
    pub accepts: Vec<i32>,
}

pub struct Channel {
    pub conn: u64,
    pub key: String,
    pub mid: i64,
    pub ip: IpAddr,
    /// Changed only by `Bucket`, under its lock, so room membership and this agree.
    room: Mutex<Option<String>>,
    /// Sorted, without duplicates.
    accepts: Mutex<Vec<i32>>,
    /// The room stream position and the queue, under one lock: a push takes it once.
    out: Mutex<Outbound>,
    ready: Notify,
    /// Wakes the connection's task once `shut` is set (a permit waits if it is not waiting).
    closing: Notify,
    /// Set by `close`: checked on every push.
    shut: AtomicBool,
    /// When the next heartbeat is due, in ms on the comet's clock (`idle`): past it the
    /// sweeper closes the channel. `u64::MAX` until the connection's loop starts.
    heartbeat_due_ms: AtomicU64,
    /// Op-4 messages sent on to logic and not yet answered.
    uplink_in_flight: AtomicUsize,
    /// Set by `finish`: nothing more is queued, the connection closes once the queue is out.
    finishing: AtomicBool,
    policy: QueuePolicy,
}

impl Channel {
    pub fn new(conn: u64, ip: IpAddr, session: Session, policy: QueuePolicy) -> Channel {
        let mut accepts = session.accepts;
        accepts.sort_unstable();
        accepts.dedup();
        Channel {
            conn,
            key: session.key,
            mid: session.mid,
            ip,
            room: Mutex::new(session.room),
            accepts: Mutex::new(accepts),
            out: Mutex::new(Outbound::default()),
            ready: Notify::new(),
            closing: Notify::new(),
            shut: AtomicBool::new(false),
            heartbeat_due_ms: AtomicU64::new(u64::MAX),
            uplink_in_flight: AtomicUsize::new(0),
            finishing: AtomicBool::new(false),
            policy,
        }
    }

    pub fn room(&self) -> Option<String> {
        lock(&self.room).clone()
    }

    /// For `Bucket` only: the room index must change with it.
    pub fn set_room(&self, room: Option<String>) {
        *lock(&self.room) = room;
    }

    /// The accepted ops, sorted.
    pub fn accept_list(&self) -> Vec<i32> {
        lock(&self.accepts).clone()
    }

    pub fn accepts(&self, op: i32) -> bool {
        lock(&self.accepts).binary_search(&op).is_ok()
    }

    pub fn subscribe(&self, ops: &[i32]) {
        let mut accepts = lock(&self.accepts);
        accepts.extend_from_slice(ops);
        accepts.sort_unstable();
        accepts.dedup();
    }

    pub fn unsubscribe(&self, ops: &[i32]) {
        lock(&self.accepts).retain(|op| !ops.contains(op));
    }

    /// Queues `frame` for the writer without blocking (or holds it back during a replay).
    /// A full queue closes the channel or drops the frame, per the policy, and counts it.
    pub fn push(&self, frame: Frame) -> Pushed {
        let mut out = lock(&self.out);
        if let Some(held) = out.flow.held.as_mut() {
            if self.is_closed() {
                return Pushed::Closed;
            }
            if held.len() >= self.policy.capacity {
                drop(out);
                return self.overflow();
            }
            held.push(frame);
            return Pushed::Queued;
        }
        let pushed = self.queue_in_flow(&mut out, frame);
        drop(out);
        self.queued(pushed)
    }

    /// Holds every frame back from now until `resume` (the channel is about to join a room
    /// whose replay the comet prepares).
    pub fn hold(&self) {
        lock(&self.out).flow.held.get_or_insert_with(Vec::new);
    }

    /// Ends a hold: queues `reply`, then the `replay` of room history after offset `seen`,
    /// then what was held back, skipping room messages already queued.
    pub fn resume(&self, reply: Frame, seen: u64, replay: Vec<Frame>) {
        let mut out = lock(&self.out);
        let held = out.flow.held.take().unwrap_or_default();
        out.flow.seen = seen;
        let mut last = self.queue_in_flow(&mut out, reply);
        let mut any = last == Pushed::Queued;
        for frame in replay.into_iter().chain(held) {
            if last == Pushed::Full || last == Pushed::Closed {
                break;
            }
            last = self.queue_in_flow(&mut out, frame);
            any |= last == Pushed::Queued;
        }
        drop(out);
        if any {
            self.ready.notify_one();
        }
        if last == Pushed::Full {
            self.overflow();
        }
    }

    /// Queues `frame` (the caller holds `out`), dropping room messages at or below
    /// `flow.seen`; a full queue is `Full`, for `queued` to apply the policy once the lock
    /// is released.
    fn queue_in_flow(&self, out: &mut Outbound, frame: Frame) -> Pushed {
        let flow = &mut out.flow;
        let frame = match frame {
            Frame::Room(r) if r.last <= flow.seen => return Pushed::Duplicate,
            Frame::Room(r) if r.first <= flow.seen => match r.after(flow.seen) {
                Some(tail) => Frame::Room(tail),
                None => {
                    // Not dense (never built so): better a duplicate than a loss.
                    tracing::warn!(key = %self.key, first = r.first, last = r.last, "unsplittable room batch");
                    Frame::Room(r)
                }
            },
            other => other,
        };
        let last = match &frame {
            Frame::Room(r) => Some(r.last),
            _ => None,
        };
        if self.shut.load(Ordering::Acquire) || self.finishing.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        if out.queue.len() >= self.policy.capacity {
            return Pushed::Full;
        }
        out.queue.push_back(frame);
        if let Some(last) = last {
            out.flow.seen = last;
        }
        Pushed::Queued
    }

    /// After the lock: wakes the writer for a queued frame, applies the slow-consumer
    /// policy to a full queue.
    fn queued(&self, pushed: Pushed) -> Pushed {
        match pushed {
            Pushed::Queued => {
                self.ready.notify_one();
                Pushed::Queued
            }
            Pushed::Full => self.overflow(),
            other => other,
        }
    }

    /// The slow-consumer policy, applied to a frame that found the queue full.
    fn overflow(&self) -> Pushed {
        metrics::counter!("goim_comet_slow_consumer_total", "policy" => self.policy.slow.label())
            .increment(1);
        match self.policy.slow {
            SlowConsumer::Close => {
                tracing::debug!(key = %self.key, conn = self.conn, "slow consumer closed");
                self.close();
                Pushed::Closed
            }
            SlowConsumer::Drop => Pushed::Dropped,
        }
    }

    /// Moves everything queued so far, in order, into `into` (which must be empty); the
    /// queue gets `into`'s buffer in exchange, so a busy connection's writer and pushers
    /// pass two buffers back and forth instead of allocating one per wake-up.
    pub fn take_into(&self, into: &mut VecDeque<Frame>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut lock(&self.out).queue, into);
    }

    /// Everything queued so far, in order.
    #[cfg(test)]
    pub fn take_all(&self) -> VecDeque<Frame> {
        std::mem::take(&mut lock(&self.out).queue)
    }

    /// Resolves once something was pushed since the last `take_into` (or right away if a
    /// push happened while nobody waited).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Closes the connection: its task sees it and ends. Idempotent.
    pub fn close(&self) {
        self.shut.store(true, Ordering::Release);
        self.closing.notify_one();
        self.ready.notify_one();
        lock(&self.out).queue.clear();
    }

    /// Closes the connection once what is queued now has been written (last words, such
    /// as a refusal); nothing queued after this is sent.
    pub fn finish(&self) {
        self.finishing.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// `finish` was called and everything queued before it has been taken by the writer.
    pub fn finished(&self) -> bool {
        self.finishing.load(Ordering::Acquire) && lock(&self.out).queue.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// Resolves once the channel is closed. Only the connection's own task waits on it.
    pub async fn closed(&self) {
        if !self.is_closed() {
            self.closing.notified().await
        }
    }

    /// A heartbeat (or the start of the connection's loop): the next one is due by `due_ms`.
    pub fn heartbeat_due_by(&self, due_ms: u64) {
        self.heartbeat_due_ms.store(due_ms, Ordering::Relaxed);
    }

    /// Whether the heartbeat due by now (`now_ms`) has not come.
    pub fn heartbeat_overdue(&self, now_ms: u64) -> bool {
        self.heartbeat_due_ms.load(Ordering::Relaxed) < now_ms
    }

    /// Takes one of `most` places for an op-4 message in flight; `false` when all are taken.
    pub fn take_uplink_place(&self, most: usize) -> bool {
        self.uplink_in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < most).then_some(n + 1))
            .is_ok()
    }

    /// Gives back a place `take_uplink_place` took (logic answered).
    pub fn give_uplink_place(&self) {
        self.uplink_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn channel(capacity: usize, slow: SlowConsumer) -> Channel {
        let session = Session {
            key: "k".into(),
            mid: 1,
            room: Some("live://1".into()),
            accepts: vec![1001, 1000, 1001],
        };
        let policy = QueuePolicy { capacity, slow };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Channel::new(7, ip, session, policy)
    }

    fn frame(n: u8) -> Frame {
        Frame::Packet(Bytes::from(vec![n]))
    }

    #[test]
    fn finish_takes_nothing_more_and_is_done_once_the_queue_is_taken() {
        let ch = channel(8, SlowConsumer::Close);
        assert_eq!(ch.push(frame(1)), Pushed::Queued);
        assert!(!ch.finished());
        ch.finish();
        assert_eq!(ch.push(frame(2)), Pushed::Closed, "nothing is queued after the last words");
        assert!(!ch.finished(), "the last words are not written yet");
        assert_eq!(ch.take_all(), [frame(1)]);
        assert!(ch.finished());
        assert!(!ch.is_closed(), "the writer closes it");
    }

    #[test]
    fn batch_frames_lose_their_outer_header_on_tcp() {
        let batch = goim_net::packet::encode_batch(&[goim_net::packet::Packet::new(1000, 3, "x")]);
        let frame = Frame::Room(RoomBatch { batch: batch.clone(), first: 3, last: 3 });
        assert_eq!(frame.ws_bytes(), batch);
        assert_eq!(frame.tcp_bytes(), batch.slice(HEADER_LEN..));
        assert_eq!(frame.tcp_slice(), &batch[HEADER_LEN..]);
        let single = Frame::Packet(batch.clone());
        assert_eq!(single.tcp_bytes(), batch);
        assert_eq!(single.tcp_slice(), &batch[..]);
    }

    #[test]
    fn accepts_sub_and_unsub() {
        let ch = channel(4, SlowConsumer::Close);
        assert!(ch.accepts(1000) && ch.accepts(1001) && !ch.accepts(1002));
        ch.subscribe(&[1002, 1000]);
        assert!(ch.accepts(1002));
        ch.unsubscribe(&[1000, 1001]);
        assert!(!ch.accepts(1000) && !ch.accepts(1001) && ch.accepts(1002));
    }

    #[test]
    fn full_queue_closes_under_close_policy() {
        let ch = channel(2, SlowConsumer::Close);
        assert_eq!(ch.push(frame(1)), Pushed::Queued);
        assert_eq!(ch.push(frame(2)), Pushed::Queued);
        assert_eq!(ch.push(frame(3)), Pushed::Closed);
        assert!(ch.is_closed());
        assert!(ch.take_all().is_empty(), "a closed channel frees its queue");
        assert_eq!(ch.push(frame(4)), Pushed::Closed);
    }

    #[test]
    fn full_queue_drops_under_drop_policy() {
        let ch = channel(2, SlowConsumer::Drop);
        assert_eq!(ch.push(frame(1)), Pushed::Queued);
        assert_eq!(ch.push(frame(2)), Pushed::Queued);
        assert_eq!(ch.push(frame(3)), Pushed::Dropped);
        assert!(!ch.is_closed());
        assert_eq!(Vec::from(ch.take_all()), vec![frame(1), frame(2)]);
        assert_eq!(ch.push(frame(4)), Pushed::Queued);
    }

    fn room_frame(first: u64, last: u64) -> Frame {
        let packets: Vec<_> =
            (first..=last).map(|s| goim_net::packet::Packet::new(1000, s as i32, "m")).collect();
        Frame::Room(RoomBatch { batch: encode_batch(&packets), first, last })
    }

    fn offsets(frames: VecDeque<Frame>) -> Vec<Vec<i32>> {
        frames
            .into_iter()
            .map(|f| split_batch(f.tcp_bytes(), usize::MAX).unwrap().iter().map(|p| p.seq).collect())
            .collect()
    }

    #[test]
    fn held_frames_follow_the_reply_and_replay_without_duplicates() {
        let ch = channel(16, SlowConsumer::Close);
        ch.hold();
        assert_eq!(ch.push(room_frame(4, 6)), Pushed::Queued);
        assert_eq!(ch.push(frame(9)), Pushed::Queued);
        assert_eq!(ch.push(room_frame(7, 8)), Pushed::Queued);
        assert!(ch.take_all().is_empty(), "held back until resumed");
        let reply = Frame::Packet(goim_net::packet::Packet::new(8, 1, "reply").to_bytes());
        ch.resume(reply.clone(), 2, vec![room_frame(3, 5)]);
        let mut got = ch.take_all();
        assert_eq!(got.pop_front(), Some(reply));
        assert_eq!(got.len(), 4);
        assert_eq!(got[2], frame(9), "non-room frames keep their place");
        got.remove(2);
        assert_eq!(offsets(got), [vec![3, 4, 5], vec![6], vec![7, 8]], "4 and 5 came with the replay");
        assert_eq!(ch.push(room_frame(7, 8)), Pushed::Duplicate);
        assert_eq!(ch.push(room_frame(9, 9)), Pushed::Queued);
    }

    #[tokio::test]
    async fn ready_fires_for_a_push_made_before_waiting() {
        let ch = channel(4, SlowConsumer::Close);
        ch.push(frame(1));
        tokio::time::timeout(Duration::from_secs(1), ch.ready()).await.unwrap();
        assert_eq!(ch.take_all().len(), 1);
    }
}
