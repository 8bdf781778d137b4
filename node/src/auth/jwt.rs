//! Client tokens (`--auth jwt`): a JWT in the auth body's `token`, signed HS256 with a
//! shared secret or RS256 / EdDSA with a private key whose public half the comets hold.
//! Claims: `sub` = the mid (string or number), `exp` (required), optional `rooms` (the
//! rooms it may join; absent = any) and `key` (the only key it may hold). `goim token`
//! mints HS256 tokens with `mint_hs256`.
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Refusal;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// Seconds since the Unix epoch (the unit of `exp`).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `sub` as tokens carry it: JWT says a string, but issuers also put the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Subject {
    Number(i64),
    Text(String),
}

impl Subject {
    fn mid(&self) -> Option<i64> {
        match self {
            Subject::Number(n) => Some(*n),
            Subject::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// The claims goim reads (others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Option<Subject>,
    /// Required (checked by `Validation`); optional here so that a token without it is
    /// refused as such rather than as unreadable.
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Claims {
    /// A token for `mid` expiring at `exp` (Unix seconds), any room, any key.
    pub fn new(mid: i64, exp: u64) -> Claims {
        Claims { sub: Some(Subject::Text(mid.to_string())), exp: Some(exp), rooms: None, key: None }
    }
}

/// What a verified token allows one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub mid: i64,
    pub exp: u64,
    /// `None`: any room.
    pub rooms: Option<Vec<String>>,
    /// `None`: any key.
    pub key: Option<String>,
}

impl Grant {
    /// The auth body's `mid`, `key` and `room` against the claims. An empty key is allowed
    /// (the comet then uses the token's key, or logic generates one), so is no room.
    pub fn admits(&self, mid: i64, key: &str, room: &str) -> Result<(), Refusal> {
        if mid != self.mid {
            return Err(Refusal::new("token_mid", "token is for another mid"));
        }
        if let Some(allowed) = &self.key {
            if !key.is_empty() && key != allowed {
                return Err(Refusal::new("token_key", "token does not allow this key"));
            }
        }
        self.allows_room(room)
    }

    /// A room the connection may join (`""`, no room, always).
    pub fn allows_room(&self, room: &str) -> Result<(), Refusal> {
        match &self.rooms {
            Some(rooms) if !room.is_empty() && !rooms.iter().any(|r| r == room) => {
                Err(Refusal::new("token_room", format!("token does not allow room {room:?}")))
            }
            _ => Ok(()),
        }
    }

    /// The token has not expired by `now` (Unix seconds, with the leeway).
    pub fn still_valid(&self, now: u64) -> Result<(), Refusal> {
        if self.exp.saturating_add(LEEWAY_SECS) < now {
            return Err(Refusal::new("token_expired", "token expired"));
        }
        Ok(())
    }
}

/// Checks tokens: signature (one algorithm, fixed by the key), `exp`, `nbf` when present.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn hs256(secret: &[u8]) -> anyhow::Result<JwtVerifier> {
        if secret.is_empty() {
            bail!("the JWT secret is empty");
        }
        let key = DecodingKey::from_secret(secret).context("JWT secret")?;
        Ok(JwtVerifier { key, validation: validation(Algorithm::HS256) })
    }

    /// An RSA public key (PKCS#1 or SPKI PEM: RS256) or an Ed25519 one (SPKI PEM: EdDSA).
    pub fn from_public_key_pem(pem: &[u8]) -> anyhow::Result<JwtVerifier> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(JwtVerifier { key, validation: validation(Algorithm::RS256) });
        }
        match DecodingKey::from_ed_pem(pem) {
            Ok(key) => Ok(JwtVerifier { key, validation: validation(Algorithm::EdDSA) }),
            Err(e) => bail!("not an RSA or Ed25519 public key in PEM: {e}"),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms.first().copied().unwrap_or(Algorithm::HS256)
    }

    /// Verifies `token` and returns what it grants; `now` (Unix seconds) is only checked
    /// against our own copy of `exp`, the library checks it against its clock too.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, Refusal> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(refusal)?;
        let claims = data.claims;
        let mid = match &claims.sub {
            Some(sub) => sub.mid().ok_or_else(|| Refusal::new("token_claims", "token sub is not a mid"))?,
            None => return Err(Refusal::new("token_claims", "token has no sub")),
        };
        let exp = claims.exp.ok_or_else(|| Refusal::new("token_claims", "token has no exp"))?;
        let grant = Grant { mid, exp, rooms: claims.rooms, key: claims.key };
        grant.still_valid(now)?;
        Ok(grant)
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp"]);
    v
}

/// The client-facing refusal for a token the library rejected.
fn refusal(e: jsonwebtoken::errors::Error) -> Refusal {
    match e.kind() {
        ErrorKind::ExpiredSignature => Refusal::new("token_expired", "token expired"),
        ErrorKind::ImmatureSignature => Refusal::new("token_expired", "token not valid yet"),
        ErrorKind::InvalidSignature => Refusal::new("token_signature", "token signature does not verify"),
        ErrorKind::InvalidAlgorithm => Refusal::new("token_invalid", "token algorithm not accepted"),
        ErrorKind::MissingRequiredClaim(c) => Refusal::new("token_claims", format!("token has no {c}")),
        ErrorKind::InvalidClaimFormat(c) => Refusal::new("token_claims", format!("token {c} is malformed")),
        ErrorKind::InvalidAudience => Refusal::new("token_claims", "token has an audience (aud)"),
        _ => Refusal::new("token_invalid", "invalid token"),
    }
}

/// An HS256 token for `claims`.
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> anyhow::Result<String> {
    if secret.is_empty() {
        bail!("the secret is empty");
    }
    let key = EncodingKey::from_secret(secret).context("JWT secret")?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).context("signing the token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_keys;

    const SECRET: &[u8] = b"test-secret";

    fn hs() -> JwtVerifier {
        JwtVerifier::hs256(SECRET).unwrap()
    }

    fn token(claims: &Claims) -> String {
        mint_hs256(SECRET, claims).unwrap()
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &impl Serialize) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    }

    fn reason(v: &JwtVerifier, token: &str) -> &'static str {
        v.verify(token, now_secs()).unwrap_err().reason
    }

    #[test]
    fn a_valid_token_grants_its_claims() {
        let now = now_secs();
        let mut claims = Claims::new(42, now + 3600);
        claims.rooms = Some(vec!["live://1".into(), "live://2".into()]);
        claims.key = Some("k1".into());
        let grant = hs().verify(&token(&claims), now).unwrap();
        assert_eq!(grant.mid, 42);
        assert_eq!(grant.exp, now + 3600);
        assert_eq!(grant.key.as_deref(), Some("k1"));
        assert!(grant.admits(42, "k1", "live://2").is_ok());
        assert!(grant.admits(42, "", "").is_ok(), "no key (the token's is used) and no room");
    }

    #[test]
    fn sub_may_be_a_number_or_a_string() {
        let exp = now_secs() + 60;
        let numeric = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET).unwrap(),
            &serde_json::json!({ "sub": 7, "exp": exp }),
        );
        assert_eq!(hs().verify(&numeric, now_secs()).unwrap().mid, 7);
        let text = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET).unwrap(),
            &serde_json::json!({ "sub": "-3", "exp": exp }),
        );
        assert_eq!(hs().verify(&text, now_secs()).unwrap().mid, -3);
        let name = token(&Claims { sub: Some(Subject::Text("alice".into())), ..Claims::new(0, exp) });
        assert_eq!(reason(&hs(), &name), "token_claims");
        let none = token(&Claims { sub: None, ..Claims::new(0, exp) });
        assert_eq!(reason(&hs(), &none), "token_claims");
    }

    #[test]
    fn forged_expired_and_malformed_tokens_are_refused() {
        let now = now_secs();
        let good = token(&Claims::new(1, now + 60));
        // Another secret, and a flipped signature byte.
        let other = mint_hs256(b"other", &Claims::new(1, now + 60)).unwrap();
        assert_eq!(reason(&hs(), &other), "token_signature");
        let mut tampered = good.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(reason(&hs(), std::str::from_utf8(&tampered).unwrap()), "token_signature");
        // Claims changed under the same signature (mid 1 → 2).
        let parts: Vec<&str> = good.split('.').collect();
        let forged_claims = token(&Claims::new(2, now + 60));
        let swapped = format!("{}.{}.{}", parts[0], forged_claims.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(reason(&hs(), &swapped), "token_signature");
        // alg "none" and an algorithm other than the key's.
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert_eq!(reason(&hs(), &unsigned), "token_invalid");
        let hs512 =
            sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET).unwrap(), &Claims::new(1, now + 60));
        assert_eq!(reason(&hs(), &hs512), "token_invalid");
        // Expired beyond the leeway; exp missing; nbf in the future.
        let expired = token(&Claims::new(1, now - LEEWAY_SECS - 10));
        assert_eq!(reason(&hs(), &expired), "token_expired");
        assert!(hs().verify(&token(&Claims::new(1, now - 5)), now).is_ok(), "within the leeway");
        let no_exp = token(&Claims { exp: None, ..Claims::new(1, 0) });
        assert_eq!(reason(&hs(), &no_exp), "token_claims");
        let key = EncodingKey::from_secret(SECRET).unwrap();
        let early = sign(Algorithm::HS256, &key, &serde_json::json!({"sub":"1","exp":now+600,"nbf":now+300}));
        assert_eq!(reason(&hs(), &early), "token_expired");
        let string_exp = sign(Algorithm::HS256, &key, &serde_json::json!({"sub":"1","exp":"never"}));
        assert_eq!(reason(&hs(), &string_exp), "token_invalid");
        for junk in ["", "x", "a.b", "a.b.c", "...."] {
            assert_eq!(reason(&hs(), junk), "token_invalid", "{junk:?}");
        }
    }

    #[test]
    fn claims_restrict_mid_key_and_room() {
        let grant = Grant {
            mid: 9,
            exp: now_secs() + 60,
            rooms: Some(vec!["live://1".into()]),
            key: Some("mine".into()),
        };
        assert_eq!(grant.admits(10, "mine", "live://1").unwrap_err().reason, "token_mid");
        assert_eq!(grant.admits(9, "theirs", "live://1").unwrap_err().reason, "token_key");
        assert_eq!(grant.admits(9, "mine", "live://2").unwrap_err().reason, "token_room");
        assert!(grant.allows_room("live://1").is_ok());
        assert!(grant.allows_room("").is_ok(), "leaving every room is always allowed");
        assert_eq!(grant.allows_room("live://10").unwrap_err().reason, "token_room");
        let any = Grant { rooms: None, key: None, ..grant.clone() };
        assert!(any.admits(9, "whatever", "live://77").is_ok());
        let none = Grant { rooms: Some(Vec::new()), ..grant.clone() };
        assert_eq!(none.allows_room("live://1").unwrap_err().reason, "token_room");
        assert!(grant.still_valid(grant.exp + LEEWAY_SECS).is_ok());
        assert_eq!(grant.still_valid(grant.exp + LEEWAY_SECS + 1).unwrap_err().reason, "token_expired");
    }

    #[test]
    fn rs256_and_eddsa_with_a_public_key() {
        let now = now_secs();
        let claims = Claims::new(3, now + 60);
        let rsa = JwtVerifier::from_public_key_pem(test_keys::RSA_PUBLIC.as_bytes()).unwrap();
        assert_eq!(rsa.algorithm(), Algorithm::RS256);
        let rsa_key = EncodingKey::from_rsa_pem(test_keys::RSA_PRIVATE.as_bytes()).unwrap();
        assert_eq!(rsa.verify(&sign(Algorithm::RS256, &rsa_key, &claims), now).unwrap().mid, 3);

        let ed = JwtVerifier::from_public_key_pem(test_keys::ED25519_PUBLIC.as_bytes()).unwrap();
        assert_eq!(ed.algorithm(), Algorithm::EdDSA);
        let ed_key = EncodingKey::from_ed_pem(test_keys::ED25519_PRIVATE.as_bytes()).unwrap();
        assert_eq!(ed.verify(&sign(Algorithm::EdDSA, &ed_key, &claims), now).unwrap().mid, 3);

        // Each verifier takes its own algorithm only: no HS256 signed with the public key
        // (algorithm confusion), no token of the other key type.
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(test_keys::RSA_PUBLIC.as_bytes()).unwrap(),
            &claims,
        );
        assert_eq!(reason(&rsa, &confused), "token_invalid");
        assert_eq!(reason(&rsa, &sign(Algorithm::EdDSA, &ed_key, &claims)), "token_invalid");
        assert_eq!(reason(&ed, &sign(Algorithm::RS256, &rsa_key, &claims)), "token_invalid");
        assert_eq!(reason(&rsa, &token(&claims)), "token_invalid");
        assert!(JwtVerifier::from_public_key_pem(b"not a key").is_err());
        assert!(JwtVerifier::hs256(b"").is_err());
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}
