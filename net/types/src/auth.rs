//! The bodies a client writes after the handshake, parsed sans-IO: op 7's auth JSON, op 12's
//! room change (goim's bare room id, or [ext] JSON with an offset to resume from) and the op
//! lists of op 14/16. The comet and the fuzz targets (net/fuzz) share these parsers.

use serde::{Deserialize, Serialize};

/// The auth body a client sent with op 7 (docs/PROTOCOL.md §3.2), parsed from its JSON as is:
/// unknown fields are ignored, missing ones take their default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthBody {
    pub mid: i64,
    pub key: String,
    pub room_id: String,
    pub platform: String,
    pub accepts: Vec<i32>,
    pub token: Option<String>,
    /// **[ext]** The last room offset the client saw: recover what came after it.
    pub room_seq: Option<u64>,
    /// **[ext]** The epoch that offset belongs to, as an earlier auth reply gave it.
    pub epoch: Option<String>,
}

impl AuthBody {
    /// Parses an op-7 body; anything but a JSON object of the right field types is an error.
    pub fn parse(body: &[u8]) -> Result<AuthBody, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// An op-12 body: a bare room id (goim), or [ext] JSON with an offset to resume from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChangeRoom {
    pub room_id: String,
    pub room_seq: Option<u64>,
    pub epoch: Option<String>,
    /// **[ext]** With `--auth jwt`: a fresh token (same mid and key) replacing the one given
    /// at auth, e.g. one naming more rooms or expiring later.
    pub token: Option<String>,
}

impl ChangeRoom {
    /// Whether the body is the [ext] JSON form (it starts with `{`), answered with JSON.
    pub fn is_json(body: &[u8]) -> bool {
        body.first() == Some(&b'{')
    }

    /// Parses an op-12 body: JSON when `is_json`, else the whole body is the room id (invalid
    /// UTF-8 replaced, as goim reads it). Only the JSON form can fail.
    pub fn parse(body: &[u8]) -> Result<ChangeRoom, serde_json::Error> {
        if Self::is_json(body) {
            return serde_json::from_slice(body);
        }
        Ok(ChangeRoom { room_id: String::from_utf8_lossy(body).into_owned(), ..ChangeRoom::default() })
    }
}

/// `"1000, 1001"` → `[1000, 1001]` (an op-14/16 body); pieces that are not numbers are skipped.
pub fn parse_ops(body: &[u8]) -> Vec<i32> {
    String::from_utf8_lossy(body).split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_json_tolerates_missing_and_unknown_fields() {
        let a = AuthBody::parse(br#"{"mid":7,"x":1,"room_seq":3}"#).unwrap();
        assert_eq!((a.mid, a.key.as_str(), a.accepts.len(), a.room_seq), (7, "", 0, Some(3)));
        assert!(AuthBody::parse(b"nope").is_err());
        assert!(AuthBody::parse(br#"{"mid":"7"}"#).is_err());
        assert!(AuthBody::parse(b"").is_err());
    }

    #[test]
    fn auth_json_round_trips() {
        let a = AuthBody {
            mid: -1,
            key: "k".into(),
            room_id: "live://1".into(),
            platform: "web".into(),
            accepts: vec![1000, -3],
            token: Some("a.b.c".into()),
            room_seq: Some(u64::MAX),
            epoch: Some("1f".into()),
        };
        assert_eq!(AuthBody::parse(&serde_json::to_vec(&a).unwrap()).unwrap(), a);
    }

    #[test]
    fn change_room_bare_id_or_json() {
        let bare = ChangeRoom::parse(b"live://2").unwrap();
        assert_eq!(bare, ChangeRoom { room_id: "live://2".into(), ..ChangeRoom::default() });
        assert!(!ChangeRoom::is_json(b"live://2"));
        assert_eq!(ChangeRoom::parse(b"").unwrap(), ChangeRoom::default());
        assert_eq!(ChangeRoom::parse(b"a\xffb").unwrap().room_id, "a\u{fffd}b");

        let json = br#"{"room_id":"live://3","room_seq":9,"epoch":"a","token":"t","x":[]}"#;
        assert!(ChangeRoom::is_json(json));
        let target = ChangeRoom::parse(json).unwrap();
        assert_eq!((target.room_id.as_str(), target.room_seq), ("live://3", Some(9)));
        assert_eq!((target.epoch.as_deref(), target.token.as_deref()), (Some("a"), Some("t")));
        assert!(ChangeRoom::parse(b"{room").is_err());
        assert!(ChangeRoom::parse(br#"{"room_seq":-1}"#).is_err());
    }

    #[test]
    fn ops_parse_skipping_junk() {
        assert_eq!(parse_ops(b"1000, 1001,x,,-3"), [1000, 1001, -3]);
        assert_eq!(parse_ops(b"1\xff,2,99999999999"), [2]);
        assert!(parse_ops(b"").is_empty());
    }
}
