//! Calls to logic with failover, shared by comets and jobs: requests go to the logic node
//! that answered last; on a transport error or `Unavailable` the next configured node is
//! tried, once round the list. Any other answer (a refusal included) is final.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::logic::{LogicRequest, LogicResult};
use super::{RpcError, Service};
use crate::quic::QuicEndpoint;

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

    /// The logic node currently preferred.
    pub fn current_addr(&self) -> Option<&str> {
        let n = self.addrs.len();
        (n > 0).then(|| self.addrs[self.current.load(Ordering::Relaxed) % n].as_str())
    }

    /// Moves past `addr` if it is still the preferred node (after a failure outside
    /// `call`, e.g. a tail stream that ended).
    pub fn fail_over_from(&self, addr: &str) {
        let n = self.addrs.len();
        if let Some(at) = self.addrs.iter().position(|a| a == addr) {
            let _ = self.current.compare_exchange(at, (at + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// One attempt per configured node at most; the last error is returned.
    pub async fn call(&self, req: &LogicRequest) -> LogicResult {
        self.call_within(req, self.timeout).await
    }

    /// As `call`, each attempt bounded by `timeout` (for calls that must fail over faster
    /// than the default, e.g. lease renewals inside their TTL).
    ///
    /// Concurrent calls share the preferred node: a call that fails moves the preference
    /// past the node it tried only if nobody moved it meanwhile, so many calls failing on
    /// one dead node advance it once (not once each, which could wrap back to the dead one).
    pub async fn call_within(&self, req: &LogicRequest, timeout: Duration) -> LogicResult {
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
            let _ = self.current.compare_exchange(at, (at + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
        }
        Err(last)
    }
}
