//! The WebSocket framing a subscriber needs, written for the hot path: the upgrade
//! request, masked client frames, and a deframer that hands data-frame payloads straight
//! to the goim walker from the shared read buffer. tokio-tungstenite would allocate a
//! message per push and keep a read buffer per socket; with 15,000 sockets a process and
//! millions of deliveries a second the load generator must not be what is measured.

/// Most payload a control frame may carry (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;
/// The client's masking key (any value is valid; the server only unmasks).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// What the deframer found.
pub enum WsEvent<'a> {
    /// Part of a data frame's payload, in order.
    Data(&'a [u8]),
    /// A whole ping; answer it with a pong of the same payload.
    Ping(&'a [u8]),
    /// The server closes.
    Close,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadFrame {
    #[error("server frame is masked")]
    Masked,
    #[error("control frame of {0} bytes")]
    LongControl(u64),
}

pub struct WsFrames {
    header: [u8; 14],
    have: usize,
    need: usize,
    in_payload: bool,
    payload_left: u64,
    opcode: u8,
    control: [u8; MAX_CONTROL],
    control_len: usize,
}

impl Default for WsFrames {
    fn default() -> Self {
        WsFrames {
            header: [0; 14],
            have: 0,
            need: 2,
            in_payload: false,
            payload_left: 0,
            opcode: 0,
            control: [0; MAX_CONTROL],
            control_len: 0,
        }
    }
}

impl WsFrames {
    pub fn feed(&mut self, mut data: &[u8], on: &mut impl FnMut(WsEvent)) -> Result<(), BadFrame> {
        while !data.is_empty() {
            if self.in_payload {
                let n = self.payload_left.min(data.len() as u64) as usize;
                if self.opcode < OP_CLOSE {
                    on(WsEvent::Data(&data[..n]));
                } else {
                    self.control[self.control_len..self.control_len + n].copy_from_slice(&data[..n]);
                    self.control_len += n;
                }
                self.payload_left -= n as u64;
                data = &data[n..];
                if self.payload_left == 0 {
                    self.end_frame(on);
                }
                continue;
            }
            let take = (self.need - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == 2 && self.need == 2 {
                if self.header[1] & 0x80 != 0 {
                    return Err(BadFrame::Masked);
                }
                self.need += match self.header[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
            }
            if self.have < self.need {
                continue;
            }
            let len = match self.need {
                4 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.header[2..10]);
                    u64::from_be_bytes(b)
                }
                _ => u64::from(self.header[1] & 0x7f),
            };
            self.opcode = self.header[0] & 0x0f;
            (self.have, self.need, self.control_len) = (0, 2, 0);
            if self.opcode >= OP_CLOSE && len > MAX_CONTROL as u64 {
                return Err(BadFrame::LongControl(len));
            }
            self.payload_left = len;
            if len == 0 {
                self.end_frame(on);
            } else {
                self.in_payload = true;
            }
        }
        Ok(())
    }

    fn end_frame(&mut self, on: &mut impl FnMut(WsEvent)) {
        self.in_payload = false;
        match self.opcode {
            OP_CLOSE => on(WsEvent::Close),
            OP_PING => on(WsEvent::Ping(&self.control[..self.control_len])),
            _ => {}
        }
    }
}

/// Appends one masked client frame (FIN set) to `out`.
pub fn client_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// The upgrade request for `path` on `host`.
pub fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Where the upgrade response ends in `buf` (the length of its head), once it has.
pub fn response_head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Whether a response head accepts the upgrade.
pub fn is_switching(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.1 101")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn payloads_pings_and_close_come_through_any_read_sizes() {
        let big = vec![7u8; 70_000];
        let mut stream = server_frame(OP_BINARY, b"hello");
        stream.extend(server_frame(OP_PING, b"p"));
        stream.extend(server_frame(OP_BINARY, &vec![1u8; 300]));
        stream.extend(server_frame(OP_BINARY, &big));
        stream.extend(server_frame(OP_CLOSE, b""));
        for chunk in [1, 2, 5, 1000, 100_000] {
            let (mut frames, mut data, mut pings, mut closed) =
                (WsFrames::default(), Vec::new(), Vec::new(), false);
            for piece in stream.chunks(chunk) {
                frames
                    .feed(piece, &mut |e| match e {
                        WsEvent::Data(d) => data.extend_from_slice(d),
                        WsEvent::Ping(p) => pings.push(p.to_vec()),
                        WsEvent::Close => closed = true,
                    })
                    .expect("valid frames");
            }
            assert_eq!(data.len(), 5 + 300 + 70_000, "chunk {chunk}");
            assert_eq!(&data[..5], b"hello");
            assert_eq!(pings, vec![b"p".to_vec()]);
            assert!(closed);
        }
    }

    #[test]
    fn client_frames_are_masked_and_server_frames_must_not_be() {
        let mut out = Vec::new();
        client_frame(OP_BINARY, b"abcd", &mut out);
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1], 0x84);
        let unmasked: Vec<u8> = out[6..].iter().enumerate().map(|(i, b)| b ^ out[2 + i % 4]).collect();
        assert_eq!(unmasked, b"abcd");
        assert_eq!(WsFrames::default().feed(&out, &mut |_| {}), Err(BadFrame::Masked));
        assert_eq!(response_head_len(b"HTTP/1.1 101 Switching\r\nA: b\r\n\r\nrest"), Some(32));
    }
}
