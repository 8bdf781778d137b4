//! The goim v2 packet (a 16-byte big-endian header, then the body) and the strict header
//! checks every transport shares: a violation is an error and the caller closes the
//! connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes in a packet header; also the only headerLen the protocol allows.
pub const HEADER_LEN: usize = 16;
/// goim's default `maxBody` (`1 << 12`).
pub const DEFAULT_MAX_BODY: usize = 4096;
/// The largest packet whose packLen fits the signed 32-bit field.
pub const MAX_PACK_LEN: usize = i32::MAX as usize;

/// The headerLen field as written on the wire.
const WIRE_HEADER_LEN: i16 = HEADER_LEN as i16;
/// The ver of packets we originate (server pushes use 1).
const DEFAULT_VER: i16 = 1;

/// One goim packet. `seq` is echoed in replies; on room pushes it carries the room offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub ver: i16,
    pub op: i32,
    pub seq: i32,
    pub body: Bytes,
}

impl Packet {
    /// A packet with ver 1.
    pub fn new(op: i32, seq: i32, body: impl Into<Bytes>) -> Self {
        Packet { ver: DEFAULT_VER, op, seq, body: body.into() }
    }

    /// The answer to `self`: same ver and seq, the given op and body.
    pub fn reply(&self, op: i32, body: impl Into<Bytes>) -> Packet {
        Packet { ver: self.ver, op, seq: self.seq, body: body.into() }
    }

    /// packLen: header plus body.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends the header and body to `dst`. A body too long for the 32-bit packLen
    /// (over 2 GiB) is written with a saturated packLen; `PacketCodec` refuses it instead.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        put_header(dst, self.encoded_len(), self.ver, self.op, self.seq);
        dst.extend_from_slice(&self.body);
    }

    /// The packet as one contiguous frame.
    pub fn to_bytes(&self) -> Bytes {
        let mut dst = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut dst);
        dst.freeze()
    }
}

/// A protocol violation (or, from the TCP codec, an I/O failure). Every variant means the
/// connection can no longer be trusted and should be closed.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("headerLen is {0}, must be 16")]
    HeaderLen(i16),
    #[error("packLen {0} is smaller than the 16-byte header")]
    PackLenTooSmall(i32),
    #[error("packLen {pack_len} exceeds 16 + max body {max}")]
    PackLenTooLarge { pack_len: i32, max: usize },
    #[error("packet truncated: needs {need} bytes, only {have} available")]
    Truncated { need: usize, have: usize },
    #[error("message is {len} bytes but its packLen is {pack_len}")]
    TrailingBytes { pack_len: usize, len: usize },
    #[error("packet of {0} bytes does not fit the 32-bit packLen")]
    TooLongToEncode(usize),
}

/// A header that passed every check.
#[derive(Debug, Clone, Copy)]
struct Header {
    pack_len: usize,
    ver: i16,
    op: i32,
    seq: i32,
}

impl Header {
    fn into_packet(self, body: Bytes) -> Packet {
        Packet { ver: self.ver, op: self.op, seq: self.seq, body }
    }
}

/// Writes a header for a packet of `pack_len` bytes.
pub(crate) fn put_header(dst: &mut impl BufMut, pack_len: usize, ver: i16, op: i32, seq: i32) {
    dst.put_i32(i32::try_from(pack_len).unwrap_or(i32::MAX));
    dst.put_i16(WIRE_HEADER_LEN);
    dst.put_i16(ver);
    dst.put_i32(op);
    dst.put_i32(seq);
}

fn read_i16(buf: &[u8], at: usize) -> Option<i16> {
    let field = buf.get(at..at + 2)?;
    field.try_into().ok().map(i16::from_be_bytes)
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let field = buf.get(at..at + 4)?;
    field.try_into().ok().map(i32::from_be_bytes)
}

/// Checks as much of the header as `buf` holds, so garbage is refused after 4 bytes
/// rather than after a full packet; returns the header once all 16 bytes are there.
fn peek_header(buf: &[u8], max_body: usize) -> Result<Option<Header>, PacketError> {
    let Some(raw_pack_len) = read_i32(buf, 0) else {
        return Ok(None);
    };
    let pack_len = usize::try_from(raw_pack_len)
        .ok()
        .filter(|&len| len >= HEADER_LEN)
        .ok_or(PacketError::PackLenTooSmall(raw_pack_len))?;
    if pack_len > HEADER_LEN.saturating_add(max_body) {
        return Err(PacketError::PackLenTooLarge { pack_len: raw_pack_len, max: max_body });
    }
    let Some(header_len) = read_i16(buf, 4) else {
        return Ok(None);
    };
    if header_len != WIRE_HEADER_LEN {
        return Err(PacketError::HeaderLen(header_len));
    }
    let (Some(ver), Some(op), Some(seq)) = (read_i16(buf, 6), read_i32(buf, 8), read_i32(buf, 12)) else {
        return Ok(None);
    };
    Ok(Some(Header { pack_len, ver, op, seq }))
}

/// Sans-IO: decodes one packet from the front of `buf` if it is complete. `Ok(None)` means
/// more bytes are needed (and `buf` has room reserved for them); `Err` is a protocol
/// violation, after which the caller closes the connection.
pub fn decode(buf: &mut BytesMut, max_body: usize) -> Result<Option<Packet>, PacketError> {
    let Some(header) = peek_header(buf, max_body)? else {
        buf.reserve(HEADER_LEN.saturating_sub(buf.len()));
        return Ok(None);
    };
    if buf.len() < header.pack_len {
        buf.reserve(header.pack_len - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(header.pack_len);
    frame.advance(HEADER_LEN);
    Ok(Some(header.into_packet(frame.freeze())))
}

/// Takes one packet off the front of `buf`, which must hold all of it: a short packet is
/// `Truncated`. Used where the packet boundary is known (a WebSocket message, a batch).
pub(crate) fn take_packet(buf: &mut Bytes, max_body: usize) -> Result<Packet, PacketError> {
    let have = buf.len();
    let header = peek_header(buf, max_body)?.ok_or(PacketError::Truncated { need: HEADER_LEN, have })?;
    if have < header.pack_len {
        return Err(PacketError::Truncated { need: header.pack_len, have });
    }
    let mut frame = buf.split_to(header.pack_len);
    frame.advance(HEADER_LEN);
    Ok(header.into_packet(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn decode_all(bytes: &[u8], max_body: usize) -> Result<Option<Packet>, PacketError> {
        decode(&mut BytesMut::from(bytes), max_body)
    }

    /// A header with arbitrary packLen / headerLen, for the error cases.
    fn raw_header(pack_len: i32, header_len: i16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&pack_len.to_be_bytes());
        v.extend_from_slice(&header_len.to_be_bytes());
        v.extend_from_slice(&1i16.to_be_bytes());
        v.extend_from_slice(&2i32.to_be_bytes());
        v.extend_from_slice(&1i32.to_be_bytes());
        v
    }

    #[test]
    fn heartbeat_matches_protocol_example() {
        let wire = hex("00000010 0010 0001 00000002 00000001");
        let hb = Packet::new(crate::packet::op::HEARTBEAT, 1, Bytes::new());
        assert_eq!(hb.to_bytes().as_ref(), wire.as_slice());
        assert_eq!(decode_all(&wire, DEFAULT_MAX_BODY).unwrap(), Some(hb));
    }

    #[test]
    fn heartbeat_reply_matches_protocol_example() {
        let wire = hex("00000014 0010 0001 00000003 00000001 00000005");
        let hb = Packet::new(crate::packet::op::HEARTBEAT, 1, Bytes::new());
        let reply = hb.reply(crate::packet::op::HEARTBEAT_REPLY, 5i32.to_be_bytes().to_vec());
        assert_eq!(reply.encoded_len(), 20);
        assert_eq!(reply.to_bytes().as_ref(), wire.as_slice());
        assert_eq!(decode_all(&wire, DEFAULT_MAX_BODY).unwrap(), Some(reply));
    }

    #[test]
    fn reply_keeps_ver_and_seq() {
        let req = Packet { ver: 7, op: 12, seq: -3, body: Bytes::from_static(b"x") };
        let reply = req.reply(13, "y");
        assert_eq!((reply.ver, reply.op, reply.seq), (7, 13, -3));
        assert_eq!(reply.body, "y");
    }

    #[test]
    fn round_trips_signed_fields_and_bodies() {
        for p in [
            Packet::new(1000, 0, Bytes::new()),
            Packet::new(-1, i32::MIN, "negative"),
            Packet { ver: -2, op: i32::MAX, seq: i32::MAX, body: Bytes::from(vec![0xff; DEFAULT_MAX_BODY]) },
        ] {
            let mut buf = BytesMut::new();
            p.encode(&mut buf);
            assert_eq!(buf.len(), p.encoded_len());
            assert_eq!(decode(&mut buf, DEFAULT_MAX_BODY).unwrap(), Some(p));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn decodes_back_to_back_packets_and_keeps_the_rest() {
        let a = Packet::new(1000, 1, "a");
        let b = Packet::new(1001, 2, "bb");
        let mut buf = BytesMut::new();
        a.encode(&mut buf);
        b.encode(&mut buf);
        buf.extend_from_slice(&[0, 0]);
        assert_eq!(decode(&mut buf, 16).unwrap(), Some(a));
        assert_eq!(decode(&mut buf, 16).unwrap(), Some(b));
        assert_eq!(decode(&mut buf, 16).unwrap(), None);
        assert_eq!(buf.as_ref(), &[0, 0]);
    }

    #[test]
    fn partial_input_fed_byte_by_byte() {
        let p = Packet::new(1000, 42, "hello goim");
        let wire = p.to_bytes();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            assert_eq!(decode(&mut buf, DEFAULT_MAX_BODY).unwrap(), None, "at {i}");
            buf.extend_from_slice(&[*byte]);
        }
        assert_eq!(decode(&mut buf, DEFAULT_MAX_BODY).unwrap(), Some(p));
        assert!(buf.is_empty());
    }

    #[test]
    fn body_exactly_max_is_accepted() {
        let p = Packet::new(1000, 0, vec![1u8; 10]);
        assert_eq!(decode_all(&p.to_bytes(), 10).unwrap(), Some(p));
    }

    #[test]
    fn pack_len_over_max_is_refused_from_four_bytes() {
        let err = decode_all(&27i32.to_be_bytes(), 10).unwrap_err();
        assert!(matches!(err, PacketError::PackLenTooLarge { pack_len: 27, max: 10 }));
        assert_eq!(err.to_string(), "packLen 27 exceeds 16 + max body 10");
    }

    #[test]
    fn pack_len_below_header_is_refused() {
        for bad in [15, 0, -1, i32::MIN] {
            let err = decode_all(&raw_header(bad, 16), DEFAULT_MAX_BODY).unwrap_err();
            assert!(matches!(err, PacketError::PackLenTooSmall(n) if n == bad));
        }
        assert_eq!(
            PacketError::PackLenTooSmall(15).to_string(),
            "packLen 15 is smaller than the 16-byte header"
        );
    }

    #[test]
    fn header_len_other_than_16_is_refused_from_six_bytes() {
        for bad in [0, 15, 17, -16] {
            let wire = raw_header(16, bad);
            let err = decode_all(&wire[..6], DEFAULT_MAX_BODY).unwrap_err();
            assert!(matches!(err, PacketError::HeaderLen(n) if n == bad));
        }
        assert_eq!(PacketError::HeaderLen(17).to_string(), "headerLen is 17, must be 16");
    }

    #[test]
    fn take_packet_reports_truncation() {
        let wire = Packet::new(1000, 0, "abcd").to_bytes();
        let err = take_packet(&mut wire.slice(..10), DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 16, have: 10 }));
        let err = take_packet(&mut wire.slice(..18), DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 20, have: 18 }));
        assert_eq!(err.to_string(), "packet truncated: needs 20 bytes, only 18 available");
    }

    #[test]
    fn saturates_impossible_pack_len() {
        let mut head = Vec::new();
        put_header(&mut head, MAX_PACK_LEN + 1, 1, 2, 3);
        assert_eq!(read_i32(&head, 0), Some(i32::MAX));
    }
}
