//! One authenticated connection as the rest of the comet sees it: identity (key, mid,
//! conn id, client ip), current room, accepted ops, and a bounded queue of pre-encoded
//! frames that the connection's writer drains. Pushing never blocks: a full queue applies
//! the slow-consumer policy.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

use bytes::Bytes;
use goim_net::packet::HEADER_LEN;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{lock, SlowConsumer};

/// A frame encoded once and shared (refcounted) by every connection it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One packet, written as-is on every transport.
    Packet(Bytes),
    /// A whole op-9 batch: WebSocket clients get it as one message, TCP clients get its
    /// inner packets (the bytes past the outer header).
    Batch(Bytes),
}

impl Frame {
    pub fn ws_bytes(&self) -> Bytes {
        match self {
            Frame::Packet(b) | Frame::Batch(b) => b.clone(),
        }
    }

    pub fn tcp_bytes(&self) -> Bytes {
        match self {
            Frame::Packet(b) => b.clone(),
            Frame::Batch(b) => b.slice(HEADER_LEN.min(b.len())..),
        }
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
    queue: Mutex<VecDeque<Frame>>,
    ready: Notify,
    closed: CancellationToken,
    policy: QueuePolicy,
}

impl Channel {
    /// `closed` is usually a child of the comet's shutdown token.
    pub fn new(
        conn: u64,
        ip: IpAddr,
        session: Session,
        policy: QueuePolicy,
        closed: CancellationToken,
    ) -> Channel {
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
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            closed,
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

    /// Queues `frame` for the writer without blocking. A full queue closes the channel or
    /// drops the frame, per the policy, and counts it.
    pub fn push(&self, frame: Frame) -> Pushed {
        if self.is_closed() {
            return Pushed::Closed;
        }
        let mut queue = lock(&self.queue);
        if queue.len() >= self.policy.capacity {
            drop(queue);
            metrics::counter!("goim_comet_slow_consumer_total", "policy" => self.policy.slow.label())
                .increment(1);
            return match self.policy.slow {
                SlowConsumer::Close => {
                    tracing::debug!(key = %self.key, conn = self.conn, "slow consumer closed");
                    self.close();
                    Pushed::Closed
                }
                SlowConsumer::Drop => Pushed::Dropped,
            };
        }
        queue.push_back(frame);
        drop(queue);
        self.ready.notify_one();
        Pushed::Queued
    }

    /// Everything queued so far, in order.
    pub fn take_all(&self) -> VecDeque<Frame> {
        std::mem::take(&mut *lock(&self.queue))
    }

    /// Resolves once something was pushed since the last `take_all` (or right away if a
    /// push happened while nobody waited).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Closes the connection: the reader and writer tasks see it and end. Idempotent.
    pub fn close(&self) {
        self.closed.cancel();
        lock(&self.queue).clear();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub async fn closed(&self) {
        self.closed.cancelled().await
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
        Channel::new(7, ip, session, policy, CancellationToken::new())
    }

    fn frame(n: u8) -> Frame {
        Frame::Packet(Bytes::from(vec![n]))
    }

    #[test]
    fn batch_frames_lose_their_outer_header_on_tcp() {
        let batch = goim_net::packet::encode_batch(&[goim_net::packet::Packet::new(1000, 3, "x")]);
        let frame = Frame::Batch(batch.clone());
        assert_eq!(frame.ws_bytes(), batch);
        assert_eq!(frame.tcp_bytes(), batch.slice(HEADER_LEN..));
        let single = Frame::Packet(batch.clone());
        assert_eq!(single.tcp_bytes(), batch);
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

    #[tokio::test]
    async fn ready_fires_for_a_push_made_before_waiting() {
        let ch = channel(4, SlowConsumer::Close);
        ch.push(frame(1));
        tokio::time::timeout(Duration::from_secs(1), ch.ready()).await.unwrap();
        assert_eq!(ch.take_all().len(), 1);
    }
}
