//! Calls to logic with failover, shared by comets and jobs: requests go to the logic node
//! that answered last; on a transport error or `Unavailable` the next configured node is
//! tried, once round the list. Any other answer (a refusal included) is final. One method
//! per call, each returning its own type: the reply is matched here, once.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::logic::{
    AuthBody, CometInfo, Connected, HistoryPage, Joined, Lease, LiveSession, LogicReply, LogicRequest,
    LogicResult, Online,
};
use super::{RpcError, Service};
use crate::quic::QuicEndpoint;

/// The reply picker of a call answered by one newtype variant: its value, or the reply
/// given back.
macro_rules! pick {
    ($variant:path) => {
        |reply| match reply {
            $variant(value) => Ok(value),
            other => Err(other),
        }
    };
}

pub struct LogicClient {
    endpoint: Arc<QuicEndpoint>,
    addrs: Vec<String>,
    current: AtomicUsize,
    timeout: Duration,
}

impl LogicClient {
    pub fn new(endpoint: Arc<QuicEndpoint>, addrs: Vec<String>, timeout: Duration) -> LogicClient {
        LogicClient { endpoint, addrs, current: AtomicUsize::new(0), timeout }
    }

    pub fn endpoint(&self) -> &Arc<QuicEndpoint> {
        &self.endpoint
    }

    /// How long one attempt of a call may take, unless the call says otherwise.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The logic node currently preferred.
    pub fn current_addr(&self) -> Option<&str> {
        let n = self.addrs.len();
        (n > 0).then(|| self.addrs[self.current.load(Ordering::Relaxed) % n].as_str())
    }

    /// Moves past `addr` if it is still the preferred node (after a failure outside
    /// `call`, e.g. a tail stream that ended).
    pub fn fail_over_from(&self, addr: &str) {
        if let Some(at) = self.addrs.iter().position(|a| a == addr) {
            self.advance_from(at);
        }
    }

    /// Moves the preference from node `at` to the next, unless another call moved it.
    fn advance_from(&self, at: usize) {
        let next = (at + 1) % self.addrs.len();
        let _ = self.current.compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records a session (auth, op 7).
    pub async fn connect(
        &self,
        comet: &str,
        conn: u64,
        ip: String,
        auth: AuthBody,
    ) -> Result<Connected, RpcError> {
        let req = LogicRequest::Connect { comet: comet.to_string(), conn, ip, auth };
        self.call_as(&req, self.timeout, pick!(LogicReply::Connected)).await
    }

    /// Drops a session (the connection closed).
    pub async fn disconnect(&self, comet: &str, key: String, conn: u64) -> Result<(), RpcError> {
        let req = LogicRequest::Disconnect { comet: comet.to_string(), key, conn };
        self.call_as(&req, self.timeout, done).await
    }

    /// Moves a session to `room` (op 12).
    pub async fn change_room(
        &self,
        comet: &str,
        key: String,
        conn: u64,
        room: String,
    ) -> Result<Joined, RpcError> {
        let req = LogicRequest::ChangeRoom { comet: comet.to_string(), key, conn, room };
        self.call_as(&req, self.timeout, pick!(LogicReply::Joined)).await
    }

    /// A comet's registration and room counts; each attempt bounded by `within`.
    pub async fn renew_online(
        &self,
        comet: CometInfo,
        rooms: BTreeMap<String, u32>,
        conn_count: u32,
        ip_count: u32,
        within: Duration,
    ) -> Result<Online, RpcError> {
        let req = LogicRequest::RenewOnline { comet, rooms, conn_count, ip_count };
        self.call_as(&req, within, |r| match r {
            LogicReply::RoomCounts(counts) => Ok(Online { counts, known: true }),
            LogicReply::Reregistered(counts) => Ok(Online { counts, known: false }),
            other => Err(other),
        })
        .await
    }

    /// Re-registers a comet's live connections; returns those (key, conn) superseded.
    pub async fn resync(
        &self,
        comet: &str,
        sessions: Vec<LiveSession>,
    ) -> Result<Vec<(String, u64)>, RpcError> {
        let req = LogicRequest::Resync { comet: comet.to_string(), sessions };
        self.call_as(&req, self.timeout, pick!(LogicReply::Stale)).await
    }

    /// An uplink message (op 4), applied once per `id`; returns its push-log seq.
    pub async fn receive(
        &self,
        id: String,
        comet: &str,
        key: String,
        mid: i64,
        op: i32,
        body: Bytes,
    ) -> Result<u64, RpcError> {
        let req = LogicRequest::Receive { id, comet: comet.to_string(), key, mid, op, body };
        self.call_as(&req, self.timeout, |r| match r {
            LogicReply::Pushed { seq } => Ok(seq),
            other => Err(other),
        })
        .await
    }

    /// Registered comets (for jobs).
    pub async fn comets(&self) -> Result<Vec<CometInfo>, RpcError> {
        self.call_as(&LogicRequest::Comets, self.timeout, pick!(LogicReply::Comets)).await
    }

    /// Retained messages of `room` in `(after, until]`, at most `limit`.
    pub async fn history(
        &self,
        room: &str,
        after: u64,
        until: u64,
        limit: u32,
    ) -> Result<HistoryPage, RpcError> {
        let req = LogicRequest::History { room: room.to_string(), after, until, limit };
        self.call_as(&req, self.timeout, pick!(LogicReply::History)).await
    }

    /// Takes or keeps a push-log partition for `ttl_ms`; each attempt bounded by `within`.
    pub async fn acquire_lease(
        &self,
        partition: u32,
        job: &str,
        ttl_ms: u64,
        within: Duration,
    ) -> Result<Lease, RpcError> {
        let req = LogicRequest::AcquireLease { partition, job: job.to_string(), ttl_ms };
        self.call_as(&req, within, pick!(LogicReply::Lease)).await
    }

    /// Gives a partition up (graceful stop).
    pub async fn release_lease(&self, partition: u32, job: &str) -> Result<(), RpcError> {
        let req = LogicRequest::ReleaseLease { partition, job: job.to_string() };
        self.call_as(&req, self.timeout, done).await
    }

    /// Commits the partition's offset; returns it as stored.
    pub async fn commit_offset(&self, partition: u32, job: &str, seq: u64) -> Result<u64, RpcError> {
        let req = LogicRequest::CommitOffset { partition, job: job.to_string(), seq };
        self.call_as(&req, self.timeout, pick!(LogicReply::Offset)).await
    }

    /// One call, its reply matched once by `pick`; a reply of another kind (a version
    /// mismatch or a bug) is an `UnexpectedReply` error.
    async fn call_as<T>(
        &self,
        req: &LogicRequest,
        within: Duration,
        pick: impl FnOnce(LogicReply) -> Result<T, LogicReply>,
    ) -> Result<T, RpcError> {
        pick(self.call_within(req, within).await?).map_err(|other| RpcError::unexpected(&other))
    }

    /// One request, the wire reply as is: one attempt per configured node at most, each
    /// bounded by `timeout` (shorter than the default for calls that must fail over
    /// faster, e.g. lease renewals inside their TTL); the last error is returned.
    ///
    /// Concurrent calls share the preferred node: a call that fails moves the preference
    /// past the node it tried only if nobody moved it meanwhile, so many calls failing on
    /// one dead node advance it once (not once each, which could wrap back to the dead one).
    async fn call_within(&self, req: &LogicRequest, timeout: Duration) -> LogicResult {
        let n = self.addrs.len();
        let mut last = RpcError::Unavailable("no logic nodes configured".into());
        let start = self.current.load(Ordering::Relaxed) % n.max(1);
        for i in 0..n {
            let at = (start + i) % n;
            let addr = &self.addrs[at];
            match self.endpoint.call::<_, LogicResult>(addr, Service::Logic, req, timeout).await {
                Ok(Err(RpcError::Unavailable(m))) => last = RpcError::Unavailable(format!("{addr}: {m}")),
                Ok(result) => return result,
                Err(e) => last = RpcError::Unavailable(format!("{addr}: {e}")),
            }
            self.advance_from(at);
        }
        Err(last)
    }
}

fn done(reply: LogicReply) -> Result<(), LogicReply> {
    match reply {
        LogicReply::Done => Ok(()),
        other => Err(other),
    }
}
