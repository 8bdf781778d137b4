//! The NATS client protocol as a subscriber reads it (`INFO`, `MSG`, `PING`, `PONG`,
//! `+OK`, `-ERR` lines), walked in place like the goim stream: a short line buffer per
//! connection, payloads skipped after their first bytes (the send stamp).
use super::body::Body;

/// Bytes of a control line kept (an `INFO` line is longer; only its start matters).
const LINE_MAX: usize = 128;

pub enum NatsEvent<'a> {
    /// A message, by the first bytes of its payload.
    Msg(&'a [u8]),
    Ping,
    Pong,
    /// `-ERR …` (the server closes after most of them, e.g. a slow consumer).
    Err(&'a [u8]),
}

#[derive(Debug, thiserror::Error)]
#[error("bad NATS line: {0}")]
pub struct BadLine(String);

pub struct NatsStream {
    line: [u8; LINE_MAX],
    line_len: usize,
    in_payload: bool,
    /// The payload, its closing CRLF included.
    payload: Body,
}

impl Default for NatsStream {
    fn default() -> Self {
        NatsStream { line: [0; LINE_MAX], line_len: 0, in_payload: false, payload: Body::default() }
    }
}

impl NatsStream {
    pub fn feed(&mut self, mut data: &[u8], on: &mut impl FnMut(NatsEvent)) -> Result<(), BadLine> {
        while !data.is_empty() {
            if self.in_payload {
                if self.payload.take(&mut data) {
                    self.in_payload = false;
                    on(NatsEvent::Msg(self.payload.prefix()));
                }
                continue;
            }
            let (piece, end) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            let keep = (LINE_MAX - self.line_len).min(piece.len());
            self.line[self.line_len..self.line_len + keep].copy_from_slice(&piece[..keep]);
            self.line_len += keep;
            data = &data[piece.len() + usize::from(end)..];
            if end {
                self.end_line(on)?;
            }
        }
        Ok(())
    }

    fn end_line(&mut self, on: &mut impl FnMut(NatsEvent)) -> Result<(), BadLine> {
        let mut len = std::mem::take(&mut self.line_len);
        if len > 0 && self.line[len - 1] == b'\r' {
            len -= 1;
        }
        let line = &self.line[..len];
        if line.starts_with(b"MSG ") {
            let size = line
                .rsplit(|&b| b == b' ')
                .next()
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| BadLine(String::from_utf8_lossy(line).into_owned()))?;
            self.in_payload = true;
            self.payload.start(size + 2, size);
        } else if line.starts_with(b"PING") {
            on(NatsEvent::Ping);
        } else if line.starts_with(b"PONG") {
            on(NatsEvent::Pong);
        } else if line.starts_with(b"-ERR") {
            on(NatsEvent::Err(line));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_control_lines_whatever_the_read_sizes() {
        let info = format!("INFO {{\"server_id\":\"{}\"}}\r\n", "x".repeat(300));
        let body = "0123456789abcdef".repeat(5);
        let stream = format!("{info}PONG\r\nMSG bench 1 80\r\n{body}\r\nPING\r\nMSG bench 1 3\r\nabc\r\n-ERR 'Slow Consumer'\r\n");
        for chunk in [1, 2, 7, 64, 10_000] {
            let mut seen = Vec::new();
            let mut s = NatsStream::default();
            for piece in stream.as_bytes().chunks(chunk) {
                s.feed(piece, &mut |e| {
                    seen.push(match e {
                        NatsEvent::Msg(p) => format!("msg {}", String::from_utf8_lossy(p)),
                        NatsEvent::Ping => "ping".into(),
                        NatsEvent::Pong => "pong".into(),
                        NatsEvent::Err(l) => String::from_utf8_lossy(l).into_owned(),
                    })
                })
                .expect("valid stream");
            }
            assert_eq!(seen[1], format!("msg {}", &body[..64]), "chunk {chunk}");
            assert_eq!(
                seen,
                ["pong", seen[1].as_str(), "ping", "msg abc", "-ERR 'Slow Consumer'"],
                "chunk {chunk}"
            );
        }
        assert!(NatsStream::default().feed(b"MSG bench 1 x\r\n", &mut |_| {}).is_err());
    }
}
