//! The damage `corrupt` does to a stopped node's files: bytes flipped, a page zeroed, or a
//! tail cut off, in sled's log most of the time, in any other data file otherwise.
use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;
use rand::Rng;

/// Flips bytes in, zeroes a page of, or truncates one of the node's data files; says which.
pub fn damage_files(dir: &Path, rng: &mut impl Rng) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.retain(|(p, len)| *len > 0 && !p.ends_with("goim.log"));
    // sled's log file (the largest) most of the time, any other file otherwise.
    files.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let Some((path, len)) = (if rng.random_bool(0.7) { files.first() } else { files.choose(rng) }).cloned()
    else {
        return Ok("no data files to damage".into());
    };
    let name = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
    let mut bytes = std::fs::read(&path)?;
    let what = match rng.random_range(0..3) {
        0 => {
            let n = rng.random_range(1..=32);
            for _ in 0..n {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= rng.random_range(1..=255u8);
            }
            std::fs::write(&path, &bytes)?;
            format!("flipped {n} bytes in {name} ({len} bytes)")
        }
        1 => {
            let at = rng.random_range(0..bytes.len());
            let end = (at + 4096).min(bytes.len());
            bytes[at..end].fill(0);
            std::fs::write(&path, &bytes)?;
            format!("zeroed {} bytes at {at} in {name}", end - at)
        }
        _ => {
            let cut = if rng.random_bool(0.5) {
                rng.random_range(1..=len.min(4096))
            } else {
                rng.random_range(1..=len)
            };
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(len - cut)?;
            format!("truncated {name} by {cut} of {len} bytes")
        }
    };
    Ok(what)
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            collect_files(&entry.path(), out)?;
        } else if meta.is_file() {
            out.push((entry.path(), meta.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_kind_of_damage_changes_a_file_and_says_which() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..40u64 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("db")).unwrap();
            let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 + 1).collect();
            std::fs::write(dir.path().join("db/db"), &big).unwrap();
            std::fs::write(dir.path().join("db/conf"), b"segment_size: 524288").unwrap();
            std::fs::write(dir.path().join("goim.log"), b"not data").unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let what = damage_files(dir.path(), &mut rng).unwrap();
            let db = std::fs::read(dir.path().join("db/db")).unwrap();
            let conf = std::fs::read(dir.path().join("db/conf")).unwrap();
            assert!(db != big || conf != b"segment_size: 524288", "{what}: nothing changed");
            assert_eq!(std::fs::read(dir.path().join("goim.log")).unwrap(), b"not data", "logs are not data");
            assert!(what.contains("db/db") || what.contains("db/conf"), "{what}");
            kinds.insert(what.split_whitespace().next().unwrap_or_default().to_string());
        }
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["flipped", "truncated", "zeroed"]);
    }
}
