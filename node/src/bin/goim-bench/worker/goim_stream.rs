//! A goim packet stream walked in place: the subscriber hot path reads into one scratch
//! buffer shared by every socket of the process, and this walker keeps only a header's
//! worth of state per connection, so a delivered message costs no allocation and no copy
//! beyond its first bytes (the send stamp). An op-9 batch header is stepped over and its
//! inner packets walked like any others, so the same walker reads TCP streams and the
//! payloads of WebSocket messages.
use goim_net::packet::{op, HEADER_LEN};

use super::body::Body;
/// Largest packLen accepted (the client's limit; the server's is far lower).
const MAX_PACK_LEN: usize = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad goim header: packLen {pack_len}, headerLen {header_len}")]
pub struct BadHeader {
    pack_len: u32,
    header_len: u16,
}

pub struct GoimStream {
    header: [u8; HEADER_LEN],
    header_have: usize,
    in_body: bool,
    op: i32,
    body: Body,
}

impl Default for GoimStream {
    fn default() -> Self {
        GoimStream { header: [0; HEADER_LEN], header_have: 0, in_body: false, op: 0, body: Body::default() }
    }
}

impl GoimStream {
    /// Walks `data`, calling `on_packet(op, first bytes of the body)` for every complete
    /// packet (op-9 batches are looked through, never reported).
    pub fn feed(&mut self, mut data: &[u8], on_packet: &mut impl FnMut(i32, &[u8])) -> Result<(), BadHeader> {
        while !data.is_empty() {
            if self.in_body {
                if self.body.take(&mut data) {
                    self.in_body = false;
                    on_packet(self.op, self.body.prefix());
                }
                continue;
            }
            let take = (HEADER_LEN - self.header_have).min(data.len());
            self.header[self.header_have..self.header_have + take].copy_from_slice(&data[..take]);
            self.header_have += take;
            data = &data[take..];
            if self.header_have < HEADER_LEN {
                continue;
            }
            self.header_have = 0;
            let h = &self.header;
            let pack_len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            let header_len = u16::from_be_bytes([h[4], h[5]]);
            if usize::from(header_len) != HEADER_LEN
                || (pack_len as usize) < HEADER_LEN
                || pack_len as usize > MAX_PACK_LEN
            {
                return Err(BadHeader { pack_len, header_len });
            }
            let op = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
            if op == op::RAW {
                continue; // a batch: its inner packets follow
            }
            self.op = op;
            let len = pack_len as usize - HEADER_LEN;
            self.body.start(len, len);
            if len == 0 {
                on_packet(op, &[]);
            } else {
                self.in_body = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goim_net::packet::{encode_batch, Packet};

    fn walk(stream: &[u8], chunk: usize) -> Vec<(i32, Vec<u8>)> {
        let (mut walker, mut seen) = (GoimStream::default(), Vec::new());
        for piece in stream.chunks(chunk) {
            walker.feed(piece, &mut |op, prefix| seen.push((op, prefix.to_vec()))).expect("valid stream");
        }
        seen
    }

    #[test]
    fn packets_and_batches_come_out_whole_whatever_the_read_sizes() {
        let push = |n: u8| Packet::new(1000, 0, vec![b'a' + n; 64]);
        let mut stream = Packet::new(op::AUTH_REPLY, 1, &b"{\"key\":\"k\"}"[..]).to_bytes().to_vec();
        stream.extend_from_slice(&Packet::new(op::HEARTBEAT_REPLY, 1, vec![0, 0, 0, 5]).to_bytes());
        stream.extend_from_slice(&encode_batch(&[push(0), push(1)]));
        stream.extend_from_slice(&Packet::new(1001, 0, &b""[..]).to_bytes());
        for chunk in [1, 3, 16, 17, 1000] {
            let seen = walk(&stream, chunk);
            let ops: Vec<i32> = seen.iter().map(|s| s.0).collect();
            assert_eq!(ops, [op::AUTH_REPLY, op::HEARTBEAT_REPLY, 1000, 1000, 1001], "chunk {chunk}");
            assert_eq!(seen[0].1, b"{\"key\":\"k\"}");
            assert_eq!(seen[2].1, vec![b'a'; 64]);
            assert_eq!(seen[3].1, vec![b'b'; 64]);
            assert!(seen[4].1.is_empty());
        }
    }

    #[test]
    fn a_bad_header_is_an_error() {
        let mut walker = GoimStream::default();
        let bad = [0, 0, 0, 16, 0, 15, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0];
        assert!(walker.feed(&bad, &mut |_, _| {}).is_err());
        let short = [0, 0, 0, 8, 0, 16, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0];
        assert!(GoimStream::default().feed(&short, &mut |_, _| {}).is_err());
    }
}
