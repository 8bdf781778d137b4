//! Op-9 batches: one packet whose body is inner packets back to back. WebSocket clients
//! get a batch as one message; TCP clients get the inner packets, as goim does.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{put_header, take_packet, Packet, PacketError, HEADER_LEN};
use super::op;

/// Encodes a whole batch frame: an outer header (op 9, ver 1, seq 0), then each inner
/// packet encoded in order.
pub fn encode_batch<'a>(inner: impl IntoIterator<Item = &'a Packet>) -> Bytes {
    let mut dst = BytesMut::with_capacity(HEADER_LEN);
    dst.put_bytes(0, HEADER_LEN);
    for packet in inner {
        packet.encode(&mut dst);
    }
    let pack_len = dst.len();
    let mut outer_header: &mut [u8] = &mut dst[..HEADER_LEN];
    put_header(&mut outer_header, pack_len, 1, op::RAW, 0);
    dst.freeze()
}

/// Splits an op-9 body into its inner packets, each allowed a body of up to `max_body`.
/// A body that ends inside an inner packet is `Truncated`.
pub fn split_batch(mut body: Bytes, max_body: usize) -> Result<Vec<Packet>, PacketError> {
    let mut inner = Vec::new();
    while !body.is_empty() {
        inner.push(take_packet(&mut body, max_body)?);
    }
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{decode_ws, DEFAULT_MAX_BODY};

    fn sample() -> Vec<Packet> {
        vec![Packet::new(1000, 5, "first"), Packet::new(1001, 6, ""), Packet::new(1000, 7, vec![9u8; 100])]
    }

    #[test]
    fn batch_round_trips_through_a_ws_message() {
        let inner = sample();
        let frame = encode_batch(&inner);
        let inner_len: usize = inner.iter().map(Packet::encoded_len).sum();
        assert_eq!(frame.len(), HEADER_LEN + inner_len);

        let outer = decode_ws(&frame, DEFAULT_MAX_BODY).unwrap();
        assert_eq!((outer.ver, outer.op, outer.seq), (1, op::RAW, 0));
        assert_eq!(split_batch(outer.body, 100).unwrap(), inner);
    }

    #[test]
    fn empty_batch_is_a_bare_header() {
        let frame = encode_batch(&[]);
        assert_eq!(frame, Packet::new(op::RAW, 0, "").to_bytes());
        assert!(split_batch(Bytes::new(), DEFAULT_MAX_BODY).unwrap().is_empty());
    }

    #[test]
    fn truncated_inner_packet_is_an_error() {
        let frame = encode_batch(&sample());
        let body = frame.slice(HEADER_LEN..frame.len() - 1);
        let err = split_batch(body, DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 116, have: 115 }));

        let mut body = Packet::new(1000, 0, "x").to_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0]);
        let err = split_batch(Bytes::from(body), DEFAULT_MAX_BODY).unwrap_err();
        assert!(matches!(err, PacketError::Truncated { need: 16, have: 3 }));
    }

    #[test]
    fn inner_packets_are_checked_against_max_body() {
        let body = encode_batch(&sample()).slice(HEADER_LEN..);
        let err = split_batch(body, 99).unwrap_err();
        assert!(matches!(err, PacketError::PackLenTooLarge { pack_len: 116, max: 99 }));
    }
}
