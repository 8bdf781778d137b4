//! `goim token --secret S --mid M [--room R]... [--key K] [--ttl 1h]`: mints an HS256 client
//! token for a cluster run with `--auth jwt --jwt-secret S` and prints it, for tests, demos
//! and small deployments without a token service of their own.
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::auth::jwt::{self, Claims};

#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The shared secret (the node's --jwt-secret).
    #[arg(long, env = "GOIM_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A file holding the shared secret (surrounding whitespace ignored).
    #[arg(long, conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,
    /// The mid the token is for (its `sub`).
    #[arg(long, allow_hyphen_values = true)]
    pub mid: i64,
    /// A room the token may join (repeat for more); none given = any room.
    #[arg(long = "room")]
    pub rooms: Vec<String>,
    /// The only key the token may hold.
    #[arg(long)]
    pub key: Option<String>,
    /// Lifetime: seconds, or a number with s, m, h or d (e.g. 90s, 30m, 1h, 7d).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

/// Prints the token on stdout.
pub fn mint(args: &TokenArgs) -> anyhow::Result<()> {
    let secret = match (&args.secret, &args.secret_file) {
        (_, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --secret-file {}", path.display()))?
            .trim()
            .to_string(),
        (Some(secret), None) => secret.clone(),
        (None, None) => bail!("give --secret (or GOIM_JWT_SECRET) or --secret-file"),
    };
    let ttl = parse_ttl(&args.ttl)?;
    let mut claims = Claims::new(args.mid, jwt::now_secs().saturating_add(ttl));
    claims.rooms = (!args.rooms.is_empty()).then(|| args.rooms.clone());
    claims.key = args.key.clone();
    println!("{}", jwt::mint_hs256(secret.as_bytes(), &claims)?);
    Ok(())
}

/// `"90"`, `"90s"`, `"30m"`, `"1h"`, `"7d"` → seconds (more than 0).
pub fn parse_ttl(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("--ttl {text:?}: the unit is s, m, h or d"),
    };
    let n: u64 = number.trim().parse().with_context(|| format!("--ttl {text:?} is not a duration"))?;
    match n.checked_mul(scale) {
        Some(0) => bail!("--ttl must be more than 0"),
        Some(secs) => Ok(secs),
        None => bail!("--ttl {text:?} is too long"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("2D").unwrap(), 172_800);
        for bad in ["", "h", "1w", "-1h", "0", "1.5h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
