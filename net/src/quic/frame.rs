//! Length-prefixed frames on a QUIC stream: u32 big-endian length, then one value encoded by
//! `crate::serial`. A length over the decode limit is refused before any allocation.
use quinn::{RecvStream, SendStream};
use serde::{de::DeserializeOwned, Serialize};

use super::QuicError;
use crate::serial::{self, MAX_DECODE};

pub async fn write_frame<T: Serialize + ?Sized>(send: &mut SendStream, value: &T) -> Result<(), QuicError> {
    let body = serial::encode(value)?;
    if body.len() > MAX_DECODE {
        return Err(QuicError::FrameTooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    send.write_all(&buf).await?;
    Ok(())
}

/// Reads the next frame. `Ok(None)` when the peer finished the stream cleanly between frames.
pub async fn read_frame<T: DeserializeOwned>(recv: &mut RecvStream) -> Result<Option<T>, QuicError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_DECODE {
        return Err(QuicError::FrameTooLarge(len));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Some(serial::decode(&body)?))
}
