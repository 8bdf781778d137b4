//! The TCP path: bytes off a client socket through `PacketCodec` (the sans-IO
//! `packet::decode` and, at end of stream, `decode_eof`), read whole and in small pieces, and
//! every op-9 body through `split_batch`.
//!
//! Input: one control byte (bit 7: a 32-byte max body instead of goim's 4096; bits 0-3: the
//! read size, 1 to 16 bytes), then the stream. Properties: split reads decode exactly what one
//! whole read does; every packet re-encodes to the bytes it was read from and decodes the same
//! as a WebSocket message; the stream is one WebSocket message exactly when it is one packet;
//! a batch's inner packets re-encode to its body; no body exceeds the max.
#![no_main]

use bytes::{Bytes, BytesMut};
use goim_net::packet::{decode_ws_bytes, op, split_batch, Packet, PacketCodec, DEFAULT_MAX_BODY};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// What a stream decoded to: its packets, then how it ended (`None`: cleanly).
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<Packet>,
    error: Option<String>,
}

/// Feeds `stream` to a codec `chunk` bytes at a time, draining packets after each read, as
/// `FramedRead` does, then `decode_eof`.
fn decode_stream(stream: &[u8], max_body: usize, chunk: usize) -> Outcome {
    let mut codec = PacketCodec::new(max_body);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(e) => return Outcome { packets, error: Some(format!("{e:?}")) },
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(p)) => packets.push(p),
            Ok(None) => return Outcome { packets, error: None },
            Err(e) => return Outcome { packets, error: Some(format!("{e:?}")) },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let max_body = if ctl & 0x80 != 0 { 32 } else { DEFAULT_MAX_BODY };
    let chunk = usize::from(ctl & 0x0f) + 1;

    let whole = decode_stream(stream, max_body, stream.len().max(1));
    let split = decode_stream(stream, max_body, chunk);
    assert_eq!(whole, split, "split reads decode differently");

    let mut at = 0;
    for p in &whole.packets {
        assert!(p.body.len() <= max_body);
        let wire = p.to_bytes();
        assert_eq!(&stream[at..at + wire.len()], &wire[..], "re-encoding differs");
        at += wire.len();
        assert_eq!(&decode_ws_bytes(wire, max_body).expect("a decoded packet is a valid message"), p);
        if p.op == op::RAW {
            if let Ok(inner) = split_batch(p.body.clone(), max_body) {
                let mut again = BytesMut::new();
                for q in &inner {
                    assert!(q.body.len() <= max_body);
                    q.encode(&mut again);
                }
                assert_eq!(again.freeze(), p.body, "batch re-encoding differs");
            }
        }
    }

    let one_packet = whole.error.is_none() && whole.packets.len() == 1;
    match decode_ws_bytes(Bytes::copy_from_slice(stream), max_body) {
        Ok(p) => assert!(one_packet && whole.packets[0] == p, "message accepted, stream not one packet"),
        Err(_) => assert!(!one_packet, "one packet refused as a message"),
    }
});
