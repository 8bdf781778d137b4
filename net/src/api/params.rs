//! Query parameters the goim way: repeated keys form lists (`mids=1&mids=2`), and, as an
//! extension, comma-separated values do too (`mids=1,2`). Parse errors carry the message the
//! API replies with (-400), naming the parameter.
use std::str::FromStr;

use super::limits::{self, TargetLimits};

/// A bad or missing parameter; the text names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

impl ParamError {
    pub(crate) fn new(message: impl Into<String>) -> ParamError {
        ParamError(message.into())
    }
}

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<String>) -> Params {
        let q = query.unwrap_or_default();
        Params(form_urlencoded::parse(q.as_bytes()).into_owned().collect())
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn required(&self, name: &str) -> Result<&str, ParamError> {
        match self.one(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ParamError::new(format!("{name}: missing"))),
        }
    }

    pub fn parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, ParamError> {
        match self.one(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ParamError::new(format!("{name}: invalid value {v:?}"))),
        }
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect()
    }

    /// `operation`: required, an i32 outside the ops the protocol itself uses (0..=17).
    pub fn operation(&self) -> Result<i32, ParamError> {
        let op: i32 = self.parsed("operation")?.ok_or_else(|| ParamError::new("operation: missing"))?;
        limits::app_op("operation", op)
    }

    /// `keys` of `/goim/push/keys`: at least one, at most `limits.targets`, none longer than
    /// `limits.key_len` bytes.
    pub fn keys(&self, limits: &TargetLimits) -> Result<Vec<String>, ParamError> {
        limits.keys("keys", self.list("keys"))
    }

    /// `mids` of `/goim/push/mids`: i64s, at least one, at most `limits.targets`.
    pub fn mids(&self, limits: &TargetLimits) -> Result<Vec<i64>, ParamError> {
        let mids = self
            .list("mids")
            .iter()
            .map(|m| m.parse::<i64>().map_err(|_| ParamError::new(format!("mids: invalid value {m:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        limits.mids("mids", mids)
    }

    /// `type` and `room` of `/goim/push/room`, as the stored room name `type://room`, at most
    /// `limits.room_len` bytes.
    pub fn room(&self, limits: &TargetLimits) -> Result<String, ParamError> {
        limits.room("room", format!("{}://{}", self.required("type")?, self.required("room")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TargetLimits = TargetLimits { targets: 3, key_len: 4, room_len: 12 };

    fn params(q: &str) -> Params {
        Params::parse(Some(q.to_string()))
    }

    #[test]
    fn one_required_and_parsed() {
        let p = params("a=1&a=2&b=&c=%20x%2B&n=+42+&bad=4x");
        assert_eq!(p.one("a"), Some("1"));
        assert_eq!(p.one("c"), Some(" x+"));
        assert_eq!(p.required("a"), Ok("1"));
        assert_eq!(p.required("b"), Err(ParamError::new("b: missing")));
        assert_eq!(p.required("z").unwrap_err().to_string(), "z: missing");
        assert_eq!(p.parsed::<u32>("n"), Ok(Some(42)));
        assert_eq!(p.parsed::<u32>("b"), Ok(None));
        assert_eq!(p.parsed::<u32>("z"), Ok(None));
        assert_eq!(p.parsed::<u32>("bad").unwrap_err().to_string(), r#"bad: invalid value "4x""#);
        assert!(Params::parse(None).one("a").is_none());
    }

    #[test]
    fn lists_repeat_or_split_on_commas() {
        let p = params("mids=1,2&mids=3&mids=&mids=%2C4%2C%20,5");
        assert_eq!(p.list("mids"), ["1", "2", "3", "4", "5"]);
        assert!(p.list("keys").is_empty());
    }

    #[test]
    fn operation_is_required_and_not_a_protocol_op() {
        assert_eq!(params("operation=1000").operation(), Ok(1000));
        assert_eq!(params("operation=-1").operation(), Ok(-1));
        assert_eq!(params("").operation().unwrap_err().to_string(), "operation: missing");
        assert_eq!(
            params("operation=abc").operation().unwrap_err().to_string(),
            r#"operation: invalid value "abc""#
        );
        let err = params("operation=9").operation().unwrap_err();
        assert_eq!(err.to_string(), "operation: 9 is reserved by the protocol (use 1000 and up)");
    }

    #[test]
    fn push_keys_within_limits() {
        assert_eq!(params("keys=a,b&keys=c").keys(&LIMITS), Ok(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(params("keys=,").keys(&LIMITS).unwrap_err().to_string(), "keys: missing");
        let err = params("keys=a,b,c,d").keys(&LIMITS).unwrap_err();
        assert_eq!(err.to_string(), "keys: 4 given, at most 3 per push");
        let err = params("keys=a,abcde").keys(&LIMITS).unwrap_err();
        assert_eq!(err.to_string(), "keys: 5 bytes exceeds the limit of 4");
    }

    #[test]
    fn push_mids_within_limits() {
        assert_eq!(params("mids=1,-2&mids=9223372036854775807").mids(&LIMITS), Ok(vec![1, -2, i64::MAX]));
        assert_eq!(params("mids=x1").mids(&LIMITS).unwrap_err().to_string(), r#"mids: invalid value "x1""#);
        assert_eq!(
            params("mids=9223372036854775808").mids(&LIMITS).unwrap_err().0,
            r#"mids: invalid value "9223372036854775808""#
        );
        assert_eq!(params("").mids(&LIMITS).unwrap_err().to_string(), "mids: missing");
        assert_eq!(
            params("mids=1,2,3,4").mids(&LIMITS).unwrap_err().to_string(),
            "mids: 4 given, at most 3 per push"
        );
    }

    #[test]
    fn push_room_is_type_and_id_within_limits() {
        assert_eq!(params("type=live&room=7").room(&LIMITS), Ok("live://7".to_string()));
        assert_eq!(params("room=7").room(&LIMITS).unwrap_err().to_string(), "type: missing");
        assert_eq!(params("type=live").room(&LIMITS).unwrap_err().to_string(), "room: missing");
        let err = params("type=live&room=123456").room(&LIMITS).unwrap_err();
        assert_eq!(err.to_string(), "room: 13 bytes exceeds the limit of 12");
    }
}
