//! Who may connect and who may call the API. goim trusts whatever `mid` and `key` a client
//! claims and has no API auth; this module adds both, off by default:
//! - client auth (`ClientAuth`, `--auth none|jwt`): with `jwt` the comet verifies the auth
//!   body's `token` (`jwt`) and keeps what it grants for room changes;
//! - the HTTP API's bearer token (`api`, `--api-token`).
//!
//! That a key can be taken over only by its own mid is enforced where it is deterministic,
//! when Raft applies `Connect` (goim_raft::command::connect), in both modes.
pub mod api;
pub mod jwt;
#[cfg(test)]
mod test_keys;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use goim_net::rpc::logic::AuthBody;

pub use api::ApiAuth;
pub use jwt::{Grant, JwtVerifier};

use crate::config::{Config, Role};

/// Why a client was refused: `why` goes to the client (`{"error":"…"}`), `reason` labels
/// `goim_comet_auth_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub why: String,
    pub reason: &'static str,
}

impl Refusal {
    pub fn new(reason: &'static str, why: impl Into<String>) -> Refusal {
        Refusal { why: why.into(), reason }
    }
}

/// How a comet authenticates clients.
#[derive(Clone, Default)]
pub enum ClientAuth {
    /// goim's behaviour: a client is whoever its auth body says.
    #[default]
    None,
    /// The auth body's `token` must be a valid JWT for its mid, key and room.
    Jwt(Arc<JwtVerifier>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::None => f.write_str("None"),
            ClientAuth::Jwt(v) => write!(f, "Jwt({:?})", v.algorithm()),
        }
    }
}

impl ClientAuth {
    /// Checks the shape of the auth settings (without reading any file).
    pub fn check_settings(cfg: &Config) -> anyhow::Result<()> {
        let keys = [
            ("--jwt-secret", !cfg.jwt_secret.is_empty()),
            ("--jwt-secret-file", !cfg.jwt_secret_file.as_os_str().is_empty()),
            ("--jwt-public-key", !cfg.jwt_public_key.as_os_str().is_empty()),
        ];
        let given: Vec<&str> = keys.iter().filter(|(_, set)| *set).map(|(name, _)| *name).collect();
        match cfg.auth.as_str() {
            "none" if given.is_empty() => Ok(()),
            "none" => bail!("{} is set but --auth is none: add --auth jwt (or drop it)", given.join(", ")),
            "jwt" if given.len() == 1 => Ok(()),
            "jwt" if given.is_empty() => {
                bail!("--auth jwt needs one of --jwt-secret, --jwt-secret-file, --jwt-public-key")
            }
            "jwt" => bail!("--auth jwt takes one key, got {}", given.join(" and ")),
            other => bail!("auth must be none or jwt, not {other:?}"),
        }
    }

    /// Builds the verifier, reading the secret or key file.
    pub fn from_config(cfg: &Config) -> anyhow::Result<ClientAuth> {
        Self::check_settings(cfg)?;
        if cfg.auth == "none" {
            return Ok(ClientAuth::None);
        }
        let verifier = if !cfg.jwt_secret.is_empty() {
            JwtVerifier::hs256(cfg.jwt_secret.as_bytes())?
        } else if !cfg.jwt_secret_file.as_os_str().is_empty() {
            let path = &cfg.jwt_secret_file;
            let secret = std::fs::read_to_string(path)
                .with_context(|| format!("reading --jwt-secret-file {}", path.display()))?;
            JwtVerifier::hs256(secret.trim().as_bytes())
                .with_context(|| format!("--jwt-secret-file {}", path.display()))?
        } else {
            let path = &cfg.jwt_public_key;
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --jwt-public-key {}", path.display()))?;
            JwtVerifier::from_public_key_pem(&pem)
                .with_context(|| format!("--jwt-public-key {}", path.display()))?
        };
        Ok(ClientAuth::Jwt(Arc::new(verifier)))
    }

    /// Checks an auth body (op 7): with `jwt`, its token must verify and allow its mid, key
    /// and room; the grant is kept for room changes. `None` when auth is off.
    pub fn admit(&self, body: &AuthBody) -> Result<Option<Grant>, Refusal> {
        let ClientAuth::Jwt(verifier) = self else {
            return Ok(None);
        };
        let token = body.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let token = token.ok_or_else(|| Refusal::new("token_missing", "token required"))?;
        let grant = verifier.verify(token, jwt::now_secs())?;
        grant.admits(body.mid, &body.key, &body.room_id)?;
        Ok(Some(grant))
    }

    /// Verifies a fresh token (carried by a JSON room change); `None` when auth is off.
    pub fn verify(&self, token: &str) -> Result<Option<Grant>, Refusal> {
        match self {
            ClientAuth::None => Ok(None),
            ClientAuth::Jwt(verifier) => verifier.verify(token.trim(), jwt::now_secs()).map(Some),
        }
    }
}

/// Start-up log lines on who may connect and call the API. With auth off on loopback only
/// (the no-argument dev mode) it says so; client auth off, or an open API, on another
/// address is a warning.
pub fn log_posture(cfg: &Config) {
    let api = if cfg.api_token.trim().is_empty() { "open" } else { "bearer token" };
    let comet = cfg.has(Role::Comet);
    let tls = cfg.client_tls();
    let clients: Vec<SocketAddr> = [Some(cfg.tcp_addr), Some(cfg.ws_addr), tls.then_some(cfg.wss_addr)]
        .into_iter()
        .flatten()
        .filter(|a| comet && !a.ip().is_loopback())
        .collect();
    let https_exposed = tls && !cfg.https_addr.ip().is_loopback();
    let http_exposed = !cfg.http_addr.ip().is_loopback() || https_exposed;
    if clients.is_empty() && !http_exposed {
        match cfg.auth.as_str() {
            "none" => tracing::info!(
                api,
                "client auth is off (--auth none): any client may claim any mid; dev mode, \
                 bound to loopback only"
            ),
            mode => tracing::info!(auth = mode, api, "client auth on, bound to loopback only"),
        }
        return;
    }
    if comet && cfg.auth == "none" {
        tracing::warn!(
            exposed = ?clients,
            "client auth is off (--auth none) on a non-loopback address: any client may claim \
             any mid (use --auth jwt)"
        );
    } else if comet {
        tracing::info!(auth = %cfg.auth, "client auth on");
    }
    if http_exposed && api == "open" {
        tracing::warn!(
            http = %cfg.http_addr,
            https = %if tls { cfg.https_addr.to_string() } else { "off".into() },
            "the push and cluster API is open (no --api-token) on a non-loopback address"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn config(f: impl FnOnce(&mut Settings)) -> anyhow::Result<Config> {
        let mut s = Settings::default();
        f(&mut s);
        s.load()
    }

    #[test]
    fn settings_need_exactly_one_key_for_jwt_and_none_for_none() {
        assert!(config(|_| {}).is_ok());
        let e = config(|s| s.jwt_secret = Some("s".into())).unwrap_err();
        assert!(e.to_string().contains("--auth is none"), "{e}");
        let e = config(|s| s.auth = Some("jwt".into())).unwrap_err();
        assert!(e.to_string().contains("needs one of"), "{e}");
        let e = config(|s| {
            s.auth = Some("jwt".into());
            s.jwt_secret = Some("s".into());
            s.jwt_public_key = Some("k.pem".into());
        })
        .unwrap_err();
        assert!(e.to_string().contains("takes one key"), "{e}");
        let e = config(|s| s.auth = Some("oauth".into())).unwrap_err();
        assert!(e.to_string().contains("none or jwt"), "{e}");
        let cfg = config(|s| {
            s.auth = Some("jwt".into());
            s.jwt_secret = Some("s".into());
        })
        .unwrap();
        assert!(matches!(ClientAuth::from_config(&cfg).unwrap(), ClientAuth::Jwt(_)));
        let e = config(|s| s.api_token_reads = Some(true)).unwrap_err();
        assert!(e.to_string().contains("needs --api-token"), "{e}");
    }

    #[test]
    fn secret_and_key_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "  file-secret\n").unwrap();
        let cfg = config(|s| {
            s.auth = Some("jwt".into());
            s.jwt_secret_file = Some(secret.clone());
        })
        .unwrap();
        let ClientAuth::Jwt(v) = ClientAuth::from_config(&cfg).unwrap() else { panic!("jwt") };
        let token = jwt::mint_hs256(b"file-secret", &jwt::Claims::new(7, jwt::now_secs() + 60)).unwrap();
        assert_eq!(v.verify(&token, jwt::now_secs()).unwrap().mid, 7);

        let key = dir.path().join("ed.pem");
        std::fs::write(&key, test_keys::ED25519_PUBLIC).unwrap();
        let cfg = config(|s| {
            s.auth = Some("jwt".into());
            s.jwt_public_key = Some(key.clone());
        })
        .unwrap();
        assert!(matches!(ClientAuth::from_config(&cfg).unwrap(), ClientAuth::Jwt(_)));

        let cfg = config(|s| {
            s.auth = Some("jwt".into());
            s.jwt_public_key = Some(dir.path().join("missing.pem"));
        })
        .unwrap();
        let e = ClientAuth::from_config(&cfg).unwrap_err();
        assert!(format!("{e:#}").contains("missing.pem"), "{e:#}");
    }

    #[test]
    fn admit_checks_the_body_against_the_token() {
        let auth = ClientAuth::Jwt(Arc::new(JwtVerifier::hs256(b"k").unwrap()));
        let mut claims = jwt::Claims::new(5, jwt::now_secs() + 60);
        claims.rooms = Some(vec!["live://1".into()]);
        let token = jwt::mint_hs256(b"k", &claims).unwrap();
        let body = |mid, room: &str, token: Option<&str>| AuthBody {
            mid,
            room_id: room.into(),
            token: token.map(String::from),
            ..AuthBody::default()
        };
        assert_eq!(auth.admit(&body(5, "live://1", Some(&token))).unwrap().unwrap().mid, 5);
        assert_eq!(auth.admit(&body(5, "", Some(&token))).unwrap().unwrap().mid, 5);
        let reason = |b| auth.admit(&b).unwrap_err().reason;
        assert_eq!(reason(body(5, "live://1", None)), "token_missing");
        assert_eq!(reason(body(5, "live://1", Some(" "))), "token_missing");
        assert_eq!(reason(body(6, "live://1", Some(&token))), "token_mid");
        assert_eq!(reason(body(5, "live://2", Some(&token))), "token_room");
        assert_eq!(ClientAuth::None.admit(&body(1, "x", None)), Ok(None));
    }
}
