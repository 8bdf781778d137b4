//! What one push may carry, checked the same way whichever route brings it: the query of
//! `/goim/push/{keys,mids,room,all}` (`params`) or a line of `/goim/push/batch`. Errors
//! name the field as the caller wrote it (`operation` in a query, `op` in a line).
use super::ParamError;

/// Longest idempotency key (the `Idempotency-Key` header, a batch line's `id`).
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// Bounds on what one push may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLimits {
    /// Keys or mids.
    pub targets: usize,
    pub key_len: usize,
    pub room_len: usize,
}

impl TargetLimits {
    /// Keys: at least one, at most `targets`, none longer than `key_len` bytes.
    pub fn keys(&self, field: &str, keys: Vec<String>) -> Result<Vec<String>, ParamError> {
        self.count(field, keys.len())?;
        if let Some(long) = keys.iter().find(|k| k.len() > self.key_len) {
            let max = self.key_len;
            return Err(ParamError::new(format!("{field}: {} bytes exceeds the limit of {max}", long.len())));
        }
        Ok(keys)
    }

    /// Mids: at least one, at most `targets`.
    pub fn mids(&self, field: &str, mids: Vec<i64>) -> Result<Vec<i64>, ParamError> {
        self.count(field, mids.len())?;
        Ok(mids)
    }

    /// A room name (`type://id`): not empty, at most `room_len` bytes.
    pub fn room(&self, field: &str, room: String) -> Result<String, ParamError> {
        if room.is_empty() {
            return Err(ParamError::new(format!("{field}: missing")));
        }
        if room.len() > self.room_len {
            let max = self.room_len;
            return Err(ParamError::new(format!("{field}: {} bytes exceeds the limit of {max}", room.len())));
        }
        Ok(room)
    }

    fn count(&self, field: &str, n: usize) -> Result<(), ParamError> {
        let max = self.targets;
        match n {
            0 => Err(ParamError::new(format!("{field}: missing"))),
            n if n > max => Err(ParamError::new(format!("{field}: {n} given, at most {max} per push"))),
            _ => Ok(()),
        }
    }
}

/// A push's op: any i32 outside the ops the protocol itself uses (0..=17).
pub fn app_op(field: &str, op: i32) -> Result<i32, ParamError> {
    if (0..=17).contains(&op) {
        return Err(ParamError::new(format!("{field}: {op} is reserved by the protocol (use 1000 and up)")));
    }
    Ok(op)
}

/// An idempotency key: 1 to `MAX_IDEMPOTENCY_KEY` visible ASCII characters (space included).
pub fn idempotency_key<'a>(field: &str, key: &'a str) -> Result<&'a str, ParamError> {
    let visible = key.bytes().all(|b| (b' '..=b'~').contains(&b));
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
        return Err(ParamError::new(format!("{field}: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters")));
    }
    Ok(key)
}

/// A push's message: at most `max` bytes.
pub fn body_len(field: &str, len: usize, max: usize) -> Result<(), ParamError> {
    if len > max {
        return Err(ParamError::new(format!("{field}: {len} bytes exceeds the limit of {max}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TargetLimits = TargetLimits { targets: 2, key_len: 3, room_len: 8 };

    #[test]
    fn targets_within_limits() {
        assert_eq!(LIMITS.keys("k", vec!["a".into(), "abc".into()]), Ok(vec!["a".into(), "abc".into()]));
        assert_eq!(LIMITS.keys("k", vec![]).unwrap_err().0, "k: missing");
        assert_eq!(LIMITS.keys("k", vec!["abcd".into()]).unwrap_err().0, "k: 4 bytes exceeds the limit of 3");
        assert_eq!(LIMITS.mids("m", vec![1, 2, 3]).unwrap_err().0, "m: 3 given, at most 2 per push");
        assert_eq!(LIMITS.room("r", "live://1".into()), Ok("live://1".into()));
        assert_eq!(LIMITS.room("r", String::new()).unwrap_err().0, "r: missing");
        assert_eq!(LIMITS.room("r", "live://12".into()).unwrap_err().0, "r: 9 bytes exceeds the limit of 8");
    }

    #[test]
    fn ops_keys_and_bodies() {
        assert_eq!(app_op("op", 1000), Ok(1000));
        assert_eq!(app_op("op", -1), Ok(-1));
        assert_eq!(app_op("op", 17).unwrap_err().0, "op: 17 is reserved by the protocol (use 1000 and up)");
        assert_eq!(idempotency_key("id", "a b~"), Ok("a b~"));
        let long = "x".repeat(MAX_IDEMPOTENCY_KEY + 1);
        for bad in ["", "tab\t", "é", long.as_str()] {
            assert_eq!(idempotency_key("id", bad).unwrap_err().0, "id: 1 to 256 visible ASCII characters");
        }
        assert_eq!(body_len("body", 4, 4), Ok(()));
        assert_eq!(body_len("body", 5, 4).unwrap_err().0, "body: 5 bytes exceeds the limit of 4");
    }
}
