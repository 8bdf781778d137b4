//! The push bench's HTTP/2 client (`goim-bench push --http2`): h2c prior knowledge, a few
//! connections shared by every pusher, each push a stream of its own, so that many
//! one-message pushes are in flight on one connection and their replies share reads and
//! writes, as a JetStream publisher's acks do.
use std::io;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::Request;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Largest reply body accepted.
const MAX_REPLY: usize = 1 << 20;

/// One HTTP/2 connection to `target`, opened on first use and again after it fails.
pub struct Http2 {
    target: SocketAddr,
    /// The open connection's handle, cloned for each request (a lock held for no await).
    sender: std::sync::Mutex<Option<SendRequest<Body>>>,
    /// Held while (re)connecting, so one task makes the connection the others wait for.
    connecting: Mutex<()>,
}

fn failed(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Http2 {
    pub fn new(target: SocketAddr) -> Http2 {
        Http2 { target, sender: std::sync::Mutex::new(None), connecting: Mutex::new(()) }
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    fn open(&self) -> Option<SendRequest<Body>> {
        let slot = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    async fn sender(&self) -> io::Result<SendRequest<Body>> {
        if let Some(sender) = self.open() {
            return Ok(sender);
        }
        let _one = self.connecting.lock().await;
        if let Some(sender) = self.open() {
            return Ok(sender);
        }
        let stream = TcpStream::connect(self.target).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(failed)?;
        tokio::spawn(conn);
        *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    /// POSTs `body` to `path` and reads the reply: (status, body).
    pub async fn post(&self, path: &str, body: Vec<u8>) -> io::Result<(u16, Bytes)> {
        let mut sender = self.sender().await?;
        sender.ready().await.map_err(failed)?;
        let request =
            Request::post(format!("http://{}{path}", self.target)).body(Body::from(body)).map_err(failed)?;
        let reply = sender.send_request(request).await.map_err(failed)?;
        let status = reply.status().as_u16();
        let body = axum::body::to_bytes(Body::new(reply.into_body()), MAX_REPLY).await.map_err(failed)?;
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use std::sync::Arc;

    #[tokio::test]
    async fn many_posts_share_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/echo", post(|body: Bytes| async move { body }));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        let client = Arc::new(Http2::new(addr));
        let posts: Vec<_> = (0..50)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.post("/echo", format!("m{i}").into_bytes()).await })
            })
            .collect();
        for (i, p) in posts.into_iter().enumerate() {
            let (status, body) = p.await.expect("task").expect("post");
            assert_eq!((status, &body[..]), (200, format!("m{i}").as_bytes()));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 1, "one connection for all");
    }
}
