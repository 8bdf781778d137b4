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

    /// Moves on to the next logic node (after a failure outside `call`, e.g. a tail stream).
    pub fn fail_over(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    /// One attempt per configured node at most; the last error is returned.
    pub async fn call(&self, req: &LogicRequest) -> LogicResult {
        self.call_within(req, self.timeout).await
    }

    /// As `call`, each attempt bounded by `timeout` (for calls that must fail over faster
    /// than the default, e.g. lease renewals inside their TTL).
    pub async fn call_within(&self, req: &LogicRequest, timeout: Duration) -> LogicResult {
        let mut last = RpcError::Unavailable("no logic nodes configured".into());
        for _ in 0..self.addrs.len() {
            let Some(addr) = self.current_addr() else {
                break;
            };
            match self.endpoint.call::<_, LogicResult>(addr, Service::Logic, req, timeout).await {
                Ok(Err(RpcError::Unavailable(m))) => last = RpcError::Unavailable(format!("{addr}: {m}")),
                Ok(result) => return result,
                Err(e) => last = RpcError::Unavailable(format!("{addr}: {e}")),
            }
            self.fail_over();
        }
        Err(last)
    }
}
