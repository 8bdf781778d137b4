//! The one serde codec: everything that crosses a process boundary or lands on disk is
//! encoded here (bincode 2, standard config), so the format and its size limit live in one
//! place. Decoding is bounded: a hostile length prefix cannot make us allocate more than
//! `MAX_DECODE` bytes, and a value cannot nest deeper than `MAX_DEPTH` (`depth`), which
//! bincode does not check: a deep enough value would overflow the stack.
mod depth;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};

/// Upper bound of one decoded message (Raft snapshot chunks and tail batches included).
pub const MAX_DECODE: usize = 64 << 20;
/// How deeply a decoded value may nest (each struct, enum, sequence, map, option and newtype
/// is a level; goim's deepest messages, Raft appends of batched pushes, take about a dozen).
pub const MAX_DEPTH: u32 = 128;

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
    let (DepthBounded(value), used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(SerialError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// `T` decoded through the `depth` adapter, at most `MAX_DEPTH` levels deep.
struct DepthBounded<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for DepthBounded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(depth::Bounded::new(deserializer, MAX_DEPTH)).map(DepthBounded)
    }
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

    /// Recursive shapes: a tree of enums and sequences, a chain of boxed options.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Tree {
        Leaf(u8),
        Node(Vec<Tree>),
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Chain {
        name: String,
        next: Option<Box<Chain>>,
    }

    /// The wire form of `levels` values each holding the next, from the encodings of one
    /// level and of two (the inner value last in both); a value that deep would overflow the
    /// stack being built.
    fn nested_wire(one: &[u8], two: &[u8], levels: usize) -> Vec<u8> {
        let mut wire = two[..two.len() - one.len()].repeat(levels - 1);
        wire.extend_from_slice(one);
        wire
    }

    fn tree_wire(levels: usize) -> Vec<u8> {
        let one = encode(&Tree::Node(vec![])).unwrap();
        let two = encode(&Tree::Node(vec![Tree::Node(vec![])])).unwrap();
        nested_wire(&one, &two, levels)
    }

    fn chain_wire(levels: usize) -> Vec<u8> {
        let one = encode(&Chain { name: String::new(), next: None }).unwrap();
        let two = encode(&Chain {
            name: String::new(),
            next: Some(Box::new(Chain { name: String::new(), next: None })),
        })
        .unwrap();
        nested_wire(&one, &two, levels)
    }

    #[test]
    fn nesting_within_the_depth_decodes() {
        let tree = Tree::Node(vec![Tree::Leaf(1), Tree::Node(vec![Tree::Leaf(2)])]);
        assert_eq!(decode::<Tree>(&encode(&tree).unwrap()).unwrap(), tree);
        // Each tree level is an enum and a sequence: two levels of depth.
        let deepest = MAX_DEPTH as usize / 2;
        assert!(decode::<Tree>(&tree_wire(deepest)).is_ok());
        assert!(decode::<Chain>(&chain_wire(deepest)).is_ok());
    }

    /// Regression (net/fuzz `rpc`): nested values decoded until the stack overflowed.
    #[test]
    fn nesting_past_the_depth_is_an_error_not_a_stack_overflow() {
        let too_deep = MAX_DEPTH as usize / 2 + 1;
        let err = decode::<Tree>(&tree_wire(too_deep)).unwrap_err();
        assert!(err.to_string().contains("nested too deep"), "{err}");
        assert!(decode::<Chain>(&chain_wire(too_deep)).is_err());
        assert!(decode::<Tree>(&tree_wire(1_000_000)).is_err());
        assert!(decode::<Chain>(&chain_wire(1_000_000)).is_err());
    }
}
