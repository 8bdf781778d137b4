//! A minimal HTTP/1.1 keep-alive client for the push hot path and the servers' health
//! checks: one request in flight per connection, replies framed by Content-Length (what
//! the node's server sends). A full client (reqwest) costs several times the CPU per
//! request, and the publisher shares the two cores with the servers it measures.
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest reply accepted (head + body).
const MAX_REPLY: usize = 1 << 20;

pub struct Http1 {
    stream: TcpStream,
    host: String,
    request: Vec<u8>,
    reply: Vec<u8>,
    /// The server said `Connection: close`: this connection takes no more requests.
    pub closed: bool,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Http1 {
    pub async fn connect(addr: SocketAddr) -> io::Result<Http1> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Http1 { stream, host: addr.to_string(), request: Vec::new(), reply: Vec::new(), closed: false })
    }

    /// Sends one request and reads its reply: (status, body).
    pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<(u16, &[u8])> {
        if self.closed {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "server closed the connection"));
        }
        self.request.clear();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.request.extend_from_slice(head.as_bytes());
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await?;

        self.reply.clear();
        let head_len = loop {
            if let Some(i) = self.reply.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more().await?;
        };
        let head = std::str::from_utf8(&self.reply[..head_len])
            .map_err(|_| bad("reply head is not UTF-8".into()))?;
        let status: u16 =
            head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
                bad(format!("bad status line: {}", head.lines().next().unwrap_or_default()))
            })?;
        let (mut length, mut chunked) = (None, false);
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                self.closed = true;
            }
        }
        let length = match (length, chunked) {
            (Some(n), false) if head_len + n <= MAX_REPLY => n,
            (Some(n), false) => return Err(bad(format!("reply body of {n} bytes"))),
            _ => return Err(bad("reply without Content-Length (not supported)".into())),
        };
        while self.reply.len() < head_len + length {
            self.read_more().await?;
        }
        Ok((status, &self.reply[head_len..head_len + length]))
    }

    async fn read_more(&mut self) -> io::Result<()> {
        if self.reply.len() >= MAX_REPLY {
            return Err(bad("reply too long".into()));
        }
        self.reply.reserve(4096);
        if self.stream.read_buf(&mut self.reply).await? == 0 {
            self.closed = true;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        Ok(())
    }
}

/// One GET on a fresh connection: (status, body as text).
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut c = Http1::connect(addr).await?;
    let (status, body) = c.request("GET", path, b"").await?;
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn keep_alive_requests_read_their_replies() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            for reply in [
                "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"code\":0}\n",
                "HTTP/1.1 503 No\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
            ] {
                let _ = s.read(&mut buf).await;
                // Split the reply in two writes: the client must read until it has all.
                let (a, b) = reply.split_at(20);
                s.write_all(a.as_bytes()).await.expect("write");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                s.write_all(b.as_bytes()).await.expect("write");
            }
        });
        let mut c = Http1::connect(addr).await.expect("connect");
        let (status, body) = c.request("POST", "/goim/push/room?x=1", b"body").await.expect("first");
        assert_eq!((status, body), (200, &b"{\"code\":0}\n"[..]));
        let (status, body) = c.request("GET", "/health", b"").await.expect("second");
        assert_eq!((status, body), (503, &b"no"[..]));
        assert!(c.closed);
    }
}
