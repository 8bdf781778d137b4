//! The snapshot file format. A snapshot is the whole state tree, too big to hold in memory
//! at once, so it is written and read as a stream of chunks, each checked on its own, and
//! the whole file is checked once more at its end:
//!
//! ```text
//! header  "GOIMSNP1" | u32 meta length | meta (serial codec) | u32 crc32 of the header so far
//! chunk*  u32 body length (> 0) | body | u32 crc32 of the body
//!         body: pairs, each u32 key length | key | u32 value length | value
//! end     u32 0 | u64 chunks | u64 pairs | u32 crc32 of every byte of the file before it
//! ```
//!
//! Integers are little-endian. A bad checksum, a short file, bytes after the end or counts
//! that do not match are damage (`StorageError::Damaged` naming the file): such a snapshot
//! is refused, never installed or served.
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::tables::RawPairs;
use crate::StorageError;

const MAGIC: &[u8; 8] = b"GOIMSNP1";
/// A chunk is written once its pairs reach this many bytes.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// Header fields no snapshot of ours comes near: a damaged length is refused before it
/// is read.
const MAX_META: u32 = 1 << 20;

/// Writes a snapshot file: the header, then `pair` for every pair, then `finish`.
pub(crate) struct Writer<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    body: Vec<u8>,
    chunks: u64,
    pairs: u64,
}

fn len32(n: usize) -> io::Result<[u8; 4]> {
    u32::try_from(n).map(u32::to_le_bytes).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{n} bytes: too long for a snapshot"))
    })
}

impl<W: Write> Writer<W> {
    /// Starts the file with its header, holding `meta` (the encoded `SnapshotMeta`).
    pub(crate) fn new(out: W, meta: &[u8]) -> io::Result<Writer<W>> {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&len32(meta.len())?);
        header.extend_from_slice(meta);
        header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
        let mut writer = Writer { out, crc: crc32fast::Hasher::new(), body: Vec::new(), chunks: 0, pairs: 0 };
        writer.put(&header)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    pub(crate) fn pair(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.body.extend_from_slice(&len32(key.len())?);
        self.body.extend_from_slice(key);
        self.body.extend_from_slice(&len32(value.len())?);
        self.body.extend_from_slice(value);
        self.pairs += 1;
        if self.body.len() >= CHUNK_BYTES {
            self.end_chunk()?;
        }
        Ok(())
    }

    fn end_chunk(&mut self) -> io::Result<()> {
        if self.body.is_empty() {
            return Ok(());
        }
        let body = std::mem::take(&mut self.body);
        self.put(&len32(body.len())?)?;
        self.put(&body)?;
        self.put(&crc32fast::hash(&body).to_le_bytes())?;
        self.chunks += 1;
        self.body = body;
        self.body.clear();
        Ok(())
    }

    /// Writes the last chunk and the end; returns the output (not flushed or synced).
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.end_chunk()?;
        self.put(&0u32.to_le_bytes())?;
        self.put(&self.chunks.to_le_bytes())?;
        self.put(&self.pairs.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        Ok(self.out)
    }
}

/// Reads a snapshot file chunk by chunk, checking everything on the way.
pub(crate) struct Reader<R: Read> {
    input: R,
    path: PathBuf,
    crc: crc32fast::Hasher,
    chunks: u64,
    pairs: u64,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header of the file at `path` (named in errors); returns the
    /// reader, positioned at the first chunk, and the encoded meta.
    pub(crate) fn open(input: R, path: &Path) -> Result<(Reader<R>, Vec<u8>), StorageError> {
        let mut reader =
            Reader { input, path: path.to_path_buf(), crc: crc32fast::Hasher::new(), chunks: 0, pairs: 0 };
        let magic = reader.bytes(MAGIC.len())?;
        if magic != MAGIC {
            return Err(reader.damaged("not a goim snapshot (bad magic)"));
        }
        let len = reader.u32()?;
        if len > MAX_META {
            return Err(reader.damaged(format!("header claims {len} bytes of meta")));
        }
        let meta = reader.bytes(len as usize)?;
        let expected = reader.crc.clone().finalize();
        if reader.u32()? != expected {
            return Err(reader.damaged("header checksum mismatch"));
        }
        Ok((reader, meta))
    }

    /// The next chunk's pairs; `None` at the end, once the end record, the file's
    /// checksum and that nothing follows are checked.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<RawPairs>, StorageError> {
        let len = self.u32()?;
        if len == 0 {
            self.end()?;
            return Ok(None);
        }
        let body = self.bytes(len as usize)?;
        if self.u32()? != crc32fast::hash(&body) {
            return Err(self.damaged(format!("chunk {} checksum mismatch", self.chunks)));
        }
        let pairs = self.split(&body)?;
        self.chunks += 1;
        self.pairs += pairs.len() as u64;
        Ok(Some(pairs))
    }

    fn end(&mut self) -> Result<(), StorageError> {
        let chunks = self.u64()?;
        let pairs = self.u64()?;
        let expected = self.crc.clone().finalize();
        let mut crc = [0u8; 4];
        self.read_exact(&mut crc)?;
        if u32::from_le_bytes(crc) != expected {
            return Err(self.damaged("file checksum mismatch"));
        }
        if (chunks, pairs) != (self.chunks, self.pairs) {
            return Err(self.damaged(format!(
                "the end counts {chunks} chunks, {pairs} pairs; the file holds {}, {}",
                self.chunks, self.pairs
            )));
        }
        let mut after = [0u8; 1];
        match self.input.read(&mut after) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.damaged("bytes after the end")),
            Err(e) => Err(StorageError::io(&self.path, e)),
        }
    }

    fn split(&self, body: &[u8]) -> Result<RawPairs, StorageError> {
        let mut pairs = RawPairs::new();
        let mut rest = body;
        while !rest.is_empty() {
            let key = self.field(&mut rest)?;
            let value = self.field(&mut rest)?;
            pairs.push((key, value));
        }
        Ok(pairs)
    }

    /// One length-prefixed field off the front of `rest`.
    fn field(&self, rest: &mut &[u8]) -> Result<Vec<u8>, StorageError> {
        let bad = || self.damaged(format!("chunk {} holds a torn pair", self.chunks));
        let (len, after) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_le_bytes(*len) as usize;
        let field = after.get(..len).ok_or_else(bad)?;
        *rest = &after[len..];
        Ok(field.to_vec())
    }

    fn damaged(&self, what: impl Into<String>) -> StorageError {
        StorageError::damaged(&self.path, format!("snapshot: {}", what.into()))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StorageError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.damaged("truncated"),
            _ => StorageError::io(&self.path, e),
        })
    }

    /// `n` bytes, counted in the file's checksum. Memory grows only with bytes actually
    /// read, so a damaged length cannot make it allocate more than the file holds.
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = Vec::new();
        let read = (&mut self.input)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| StorageError::io(&self.path, e))?;
        if read < n {
            return Err(self.damaged("truncated"));
        }
        self.crc.update(&buf);
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, StorageError> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        self.crc.update(&b);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, StorageError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        self.crc.update(&b);
        Ok(u64::from_le_bytes(b))
    }
}
