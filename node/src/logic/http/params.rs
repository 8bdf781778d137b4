//! Query parameters the goim way: repeated keys form lists (`mids=1&mids=2`), and, as an
//! extension, comma-separated values do too (`mids=1,2`). Parse errors become -400 replies.
use std::str::FromStr;

use super::ApiError;

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<String>) -> Params {
        let q = query.unwrap_or_default();
        Params(form_urlencoded::parse(q.as_bytes()).into_owned().collect())
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.one(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::bad(format!("{name}: missing"))),
        }
    }

    pub fn parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.one(name) {
            None | Some("") => Ok(None),
            Some(v) => {
                v.trim().parse().map(Some).map_err(|_| ApiError::bad(format!("{name}: invalid value {v:?}")))
            }
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
    pub fn operation(&self) -> Result<i32, ApiError> {
        let op: i32 = self.parsed("operation")?.ok_or_else(|| ApiError::bad("operation: missing"))?;
        if (0..=17).contains(&op) {
            return Err(ApiError::bad(format!(
                "operation: {op} is reserved by the protocol (use 1000 and up)"
            )));
        }
        Ok(op)
    }
}
