//! Serves the HTTP router with bounds `axum::serve` does not offer: hyper's server per
//! connection, behind the shared accept loop (`listen`), speaking HTTP/1.1 or HTTP/2: to a
//! plain TCP client that opens with HTTP/2's preface (h2c prior knowledge), or a TLS client
//! whose handshake chose `h2` in ALPN. A producer
//! can then keep many one-message pushes in flight on one connection, their replies
//! sharing writes. Bounds:
//! - a cap on concurrent connections (`--http-max-connections`): past it a connection is
//!   answered 503 and closed, and counted;
//! - a header timeout (`--http-header-timeout-ms`): a request head must arrive in full
//!   within it, counted from when the server starts waiting for one (a new connection, or
//!   the end of the previous response on a kept-alive one: so it is also the keep-alive
//!   idle timeout, and a client dripping its headers is cut off); the preface that tells
//!   the protocol must come within it too, and an HTTP/2 connection takes at most
//!   `H2_MAX_STREAMS` requests at once;
//! - request bodies read in full before any handler runs, within `--max-push-body` bytes
//!   (a batch push: its own limit, `BATCH_MAX_BYTES`) and `--http-body-timeout-ms`;
//! - an idle timeout (`--http-idle-timeout-ms`): a connection moving no byte either way for
//!   that long (a response the client does not read, a request that never ends) is closed.
//!
//! On shutdown it stops accepting, lets requests in flight finish and closes connections.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::listen::{self, Refuser};
use crate::logic::http::{ApiError, BATCH_MAX_BYTES, BATCH_PATH};
use crate::tls::ClientTls;
use goim_net::LogEvery;

/// How long connections get to finish their requests once the node shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Bytes of an oversized body read (and discarded) before answering, so the client can
/// read the answer instead of a connection reset.
const OVERSIZE_DRAIN: usize = 1 << 20;
/// Requests one HTTP/2 connection may have in flight (more wait in the client).
const H2_MAX_STREAMS: u32 = 256;
/// Largest HTTP/2 request head, decoded (HTTP/1.1's is bounded by hyper's read buffer).
const H2_MAX_HEADER_LIST: u32 = 64 << 10;
/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How often a preface that arrived in part is looked at again.
const PREFACE_POLL: Duration = Duration::from_millis(5);

/// The HTTP server's bounds (`goim run` flags).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    /// Largest request body (`--max-push-body`); a batch push (`BATCH_PATH`) has its own,
    /// `BATCH_MAX_BYTES`, refused with 413.
    pub max_body: usize,
}

impl From<&Config> for HttpLimits {
    /// The settings' bounds; the connection cap is at most a quarter of the open-file limit.
    fn from(cfg: &Config) -> HttpLimits {
        let max_connections = listen::http_share(listen::open_files_limit(), cfg.http_max_connections);
        if max_connections < cfg.http_max_connections {
            tracing::warn!(
                configured = cfg.http_max_connections,
                max_connections,
                "HTTP connection cap lowered to a quarter of the open-file limit"
            );
        }
        HttpLimits {
            max_connections,
            header_timeout: Duration::from_millis(cfg.http_header_timeout_ms),
            body_timeout: Duration::from_millis(cfg.http_body_timeout_ms),
            idle_timeout: Duration::from_millis(cfg.http_idle_timeout_ms),
            max_body: cfg.max_push_body,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then waits for the open connections to
/// finish (each gets `SHUTDOWN_GRACE`).
/// With `tls` every connection is HTTPS: its handshake must complete within the header
/// timeout, and a failed one is counted and closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<ClientTls>,
    shutdown: CancellationToken,
) {
    let label = if tls.is_some() { "https" } else { "http" };
    let app =
        app.layer(middleware::from_fn_with_state(limits, bound_body)).layer(DefaultBodyLimit::disable());
    let slots = Arc::new(Semaphore::new(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let tracker = TaskTracker::new();
    let refuser = Refuser::default();
    let refusals_log = LogEvery::new(listen::LOG_INTERVAL);
    let accepting = shutdown.clone();
    let tasks = tracker.clone();
    listen::accept_loop(listener, label, accepting, move |stream, peer| {
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tasks.spawn(serve_conn(stream, app.clone(), limits, tls.clone(), shutdown.clone(), slot));
            }
            Err(_) => {
                metrics::counter!("goim_http_refused_total", "reason" => "max_connections").increment(1);
                listen::note_refusal(&refusals_log, label, "max_connections", peer);
                match &tls {
                    // A TLS client cannot read a plain answer: closed without a word.
                    Some(_) => drop(stream),
                    None => refuser.refuse(stream, too_many_connections()),
                }
            }
        }
    })
    .await;
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_millis(500), tracker.wait()).await;
}

/// The 503 a connection over the cap reads, in goim's reply shape.
fn too_many_connections() -> Bytes {
    let body = json!({ "code": -503, "message": "too many connections", "data": null }).to_string();
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

async fn serve_conn(
    stream: TcpStream,
    app: Router,
    limits: HttpLimits,
    tls: Option<ClientTls>,
    shutdown: CancellationToken,
    slot: OwnedSemaphorePermit,
) {
    metrics::gauge!("goim_http_connections").increment(1.0);
    let _ = stream.set_nodelay(true);
    let progress = Arc::new(Progress::new());
    match tls {
        None => match tokio::time::timeout(limits.header_timeout, opens_with_h2_preface(&stream)).await {
            Ok(Ok(h2)) => {
                let watched = Watched { inner: stream, progress: progress.clone() };
                serve_http(watched, h2, app, limits, &shutdown, &progress).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "http connection failed before its first request"),
            Err(_) => {
                metrics::counter!("goim_http_timeouts_total", "kind" => "header").increment(1);
            }
        },
        Some(tls) => {
            let watched = Watched { inner: stream, progress: progress.clone() };
            if let Some(secured) = tls.accept(watched, "https", limits.header_timeout, &shutdown).await {
                let h2 = ClientTls::chose_h2(&secured);
                serve_http(secured, h2, app, limits, &shutdown, &progress).await;
            }
        }
    }
    metrics::gauge!("goim_http_connections").decrement(1.0);
    drop(slot);
}

/// Whether `stream` opens with HTTP/2's preface, looked at without reading it: false as
/// soon as a byte differs (or the client closes), true once all of it is there.
async fn opens_with_h2_preface(stream: &TcpStream) -> io::Result<bool> {
    let mut head = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut head).await?;
        if n == 0 || head[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface: peek returns it again at once until more arrives.
        tokio::time::sleep(PREFACE_POLL).await;
    }
}

/// Serves HTTP/2 (`h2`) or HTTP/1.1 requests on `io` until the connection ends, times out
/// or the node stops.
async fn serve_http<S>(
    io: S,
    h2: bool,
    app: Router,
    limits: HttpLimits,
    shutdown: &CancellationToken,
    progress: &Progress,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let service = TowerToHyperService::new(app);
    let version = if h2 { "h2" } else { "http/1.1" };
    metrics::counter!("goim_http_connections_total", "version" => version).increment(1);
    if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(H2_MAX_HEADER_LIST);
        let conn = builder.serve_connection(io, service);
        bound(conn, http2::Connection::graceful_shutdown, limits, shutdown, progress).await;
    } else {
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
        let conn = builder.serve_connection(io, service);
        bound(conn, http1::Connection::graceful_shutdown, limits, shutdown, progress).await;
    }
}

/// Runs `conn`, a hyper connection of either version, within the idle timeout and the
/// shutdown grace (`graceful_shutdown` is its version's).
async fn bound<C: Future<Output = Result<(), hyper::Error>>>(
    conn: C,
    graceful_shutdown: fn(Pin<&mut C>),
    limits: HttpLimits,
    shutdown: &CancellationToken,
    progress: &Progress,
) {
    tokio::pin!(conn);
    let mut draining: Option<Instant> = None;
    loop {
        let grace_over = async {
            match draining {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    if e.is_timeout() {
                        metrics::counter!("goim_http_timeouts_total", "kind" => "header").increment(1);
                    } else {
                        tracing::debug!(error = %e, "http connection ended with an error");
                    }
                }
                break;
            }
            _ = shutdown.cancelled(), if draining.is_none() => {
                graceful_shutdown(conn.as_mut());
                draining = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            _ = grace_over => break,
            _ = progress.stalled(limits.idle_timeout) => {
                metrics::counter!("goim_http_timeouts_total", "kind" => "idle").increment(1);
                break;
            }
        }
    }
}

/// The `from_fn` middleware reading every request body in full, within the size and time
/// limits, before the handler sees it; refusals in goim's reply shape, counted.
async fn bound_body(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let batch = parts.uri.path() == BATCH_PATH;
    let max_body = if batch { BATCH_MAX_BYTES } else { limits.max_body };
    let deadline = Instant::now() + limits.body_timeout;
    let mut chunks = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) => {
                metrics::counter!("goim_http_timeouts_total", "kind" => "body").increment(1);
                let why = format!("body: not received within {} ms", limits.body_timeout.as_millis());
                return refusal(StatusCode::REQUEST_TIMEOUT, -408, why);
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return bad_request(format!("body: {e}")),
            Ok(Some(Ok(chunk))) => {
                total = total.saturating_add(chunk.len());
                if total <= max_body {
                    buf.extend_from_slice(&chunk);
                } else if total > max_body.saturating_add(OVERSIZE_DRAIN) {
                    break;
                }
            }
        }
    }
    if total > max_body {
        return oversized(batch, max_body);
    }
    next.run(Request::from_parts(parts, Body::from(buf.freeze()))).await
}

/// A body over `max` bytes: goim's -400; [ext] a batch push is refused whole with HTTP 413.
fn oversized(batch: bool, max: usize) -> Response {
    if !batch {
        return bad_request(format!("body: more than {max} bytes, the limit"));
    }
    ApiError::too_large(format!("body: more than {max} bytes, the limit of a batch request")).into_response()
}

/// goim's -400: HTTP 200, the code in the body (as every `/goim/*` error).
fn bad_request(message: String) -> Response {
    metrics::counter!("goim_http_bad_requests_total").increment(1);
    refusal(StatusCode::OK, -400, message)
}

fn refusal(status: StatusCode, code: i32, message: String) -> Response {
    (status, Json(json!({ "code": code, "message": message, "data": null }))).into_response()
}

/// When a connection last moved a byte, as milliseconds since `start`.
struct Progress {
    start: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no byte moved for `idle`.
    async fn stalled(&self, idle: Duration) {
        loop {
            let due = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A TCP stream that notes each byte it moves in its `Progress`.
struct Watched {
    inner: TcpStream,
    progress: Arc<Progress>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.progress.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.progress.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.progress.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// What the server side of a connection makes of the bytes `send` writes in turn.
    async fn sniffed(send: &[&'static [u8]]) -> bool {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let parts = send.to_vec();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            for part in parts {
                c.write_all(part).await.expect("write");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            c
        });
        let (server, _) = listener.accept().await.expect("accept");
        let h2 = opens_with_h2_preface(&server).await.expect("peek");
        let mut first = [0u8; 3];
        server.peek(&mut first).await.expect("peek again");
        drop(client.await);
        assert_eq!(first, send[0][..3], "the sniff consumed nothing");
        h2
    }

    #[tokio::test]
    async fn the_preface_is_told_from_http1_even_when_it_comes_in_parts() {
        assert!(sniffed(&[H2_PREFACE]).await);
        assert!(sniffed(&[&H2_PREFACE[..5], &H2_PREFACE[5..]]).await, "in two parts");
        assert!(!sniffed(&[b"GET /health HTTP/1.1\r\n\r\n"]).await);
        assert!(!sniffed(&[b"PRI /x HTTP/1.1\r\n\r\n"]).await, "a method named PRI is not the preface");
    }
}
