//! Length-prefixed frames on a QUIC stream: u32 big-endian length, then one value encoded by
//! `crate::serial`. A length over the decode limit is refused before any allocation. The
//! byte-level rules (`encode_frame`, `body_len`, `decode_frame`) are sans-IO, so they are
//! unit-tested and fuzzed (net/fuzz) without a stream.
use quinn::{RecvStream, SendStream};
use serde::{de::DeserializeOwned, Serialize};

use super::QuicError;
use crate::serial::{self, MAX_DECODE};

/// Bytes in a frame's length prefix.
pub const LEN_PREFIX: usize = 4;

/// One whole frame: the length prefix, then `value` encoded.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, QuicError> {
    let body = serial::encode(value)?;
    let len = u32::try_from(body.len()).ok().filter(|&n| n as usize <= MAX_DECODE);
    let Some(len) = len else {
        return Err(QuicError::FrameTooLarge(body.len()));
    };
    let mut buf = Vec::with_capacity(LEN_PREFIX + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// The body length a prefix announces, refused past `MAX_DECODE` (before reading the body).
pub fn body_len(prefix: [u8; LEN_PREFIX]) -> Result<usize, QuicError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_DECODE {
        return Err(QuicError::FrameTooLarge(len));
    }
    Ok(len)
}

/// Decodes the frame at the front of `buf` whose body is complete; `Ok(None)` when more bytes
/// are needed. Returns the value and the bytes the frame took.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, QuicError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = body_len(*prefix)?;
    let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    Ok(Some((serial::decode(body)?, LEN_PREFIX + len)))
}

pub async fn write_frame<T: Serialize + ?Sized>(send: &mut SendStream, value: &T) -> Result<(), QuicError> {
    send.write_all(&encode_frame(value)?).await?;
    Ok(())
}

/// Reads the next frame. `Ok(None)` when the peer finished the stream cleanly between frames.
pub async fn read_frame<T: DeserializeOwned>(recv: &mut RecvStream) -> Result<Option<T>, QuicError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; body_len(prefix)?];
    recv.read_exact(&mut body).await?;
    Ok(Some(serial::decode(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::tail::TailRequest;

    #[test]
    fn frame_round_trips_and_waits_for_its_body() {
        let req = TailRequest { partition: 0, from_seq: 7, max_batch: 100 };
        let frame = encode_frame(&req).unwrap();
        let body_len_field = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(body_len_field, frame.len() - LEN_PREFIX);
        assert_eq!(decode_frame::<TailRequest>(&frame).unwrap(), Some((req.clone(), frame.len())));
        for cut in 0..frame.len() {
            assert!(decode_frame::<TailRequest>(&frame[..cut]).unwrap().is_none(), "at {cut}");
        }
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(decode_frame::<TailRequest>(&two).unwrap(), Some((req, frame.len())));
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_body() {
        let too_long = (MAX_DECODE as u32 + 1).to_be_bytes();
        assert!(matches!(body_len(too_long), Err(QuicError::FrameTooLarge(n)) if n == MAX_DECODE + 1));
        assert!(matches!(decode_frame::<u8>(&too_long), Err(QuicError::FrameTooLarge(_))));
        assert_eq!(body_len((MAX_DECODE as u32).to_be_bytes()).unwrap(), MAX_DECODE);
    }

    #[test]
    fn garbage_body_is_a_codec_error() {
        let frame = [0, 0, 0, 2, 0xff, 0xff];
        assert!(matches!(decode_frame::<TailRequest>(&frame), Err(QuicError::Serial(_))));
    }
}
