//! The one serde codec: everything that crosses a process boundary or lands on disk is
//! encoded here (bincode 2, standard config), so the format and its size limit live in one
//! place. Decoding is bounded: a hostile length prefix cannot make us allocate more than
//! `MAX_DECODE` bytes.
use serde::{de::DeserializeOwned, Serialize};

/// Upper bound of one decoded message (Raft snapshot chunks and tail batches included).
pub const MAX_DECODE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE>()
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, SerialError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Decodes exactly one value; trailing bytes are an error (a framing bug or garbage).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SerialError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(SerialError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Probe {
        a: u64,
        b: String,
        c: Vec<i32>,
    }

    #[test]
    fn round_trip() {
        let p = Probe { a: 7, b: "x".into(), c: vec![1, -2] };
        let bytes = encode(&p).unwrap();
        assert_eq!(decode::<Probe>(&bytes).unwrap(), p);
    }

    #[test]
    fn garbage_and_trailing_are_errors() {
        let p = Probe { a: 7, b: "x".into(), c: vec![] };
        let mut bytes = encode(&p).unwrap();
        bytes.push(0);
        assert!(matches!(decode::<Probe>(&bytes), Err(SerialError::Trailing(1))));
        assert!(decode::<Probe>(&[0xff; 3]).is_err());
        // A length prefix claiming 2^60 elements must fail, not allocate.
        assert!(decode::<Vec<u64>>(&[0xff, 0, 0, 0, 0, 0, 0, 0x10, 0]).is_err());
    }
}
