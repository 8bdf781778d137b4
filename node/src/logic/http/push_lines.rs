//! The body of `POST /goim/push/batch`, sans-IO: JSON lines, one push per line, e.g.
//! `{"to":"room","room":"live://1000","op":1000,"body":"text","id":"key-1"}`. Each line is
//! checked as the single routes check their query (same limits, same messages, named as
//! the line names them), and a bad line is that line's error, not the request's.
use base64::Engine;
use goim_net::api::{self, ParamError, TargetLimits};
use goim_raft::command::PushTo;
use serde::Deserialize;

use super::ApiError;
use crate::logic::Message;

/// Most lines (blank ones aside) one request may carry.
pub const MAX_LINES: usize = 1000;
/// Largest body one request may carry (the HTTP server refuses more before parsing).
pub const MAX_BYTES: usize = 1 << 20;

/// What each line may carry: its targets, and its message's size.
#[derive(Debug, Clone, Copy)]
pub struct LineLimits {
    pub targets: TargetLimits,
    pub body: usize,
}

/// One line as written; every field but `to` optional, any other field an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    to: String,
    room: Option<String>,
    keys: Option<Vec<String>>,
    mids: Option<Vec<i64>>,
    op: Option<i32>,
    body: Option<String>,
    body_b64: Option<String>,
    id: Option<String>,
}

/// Every non-blank line of `body`, in order: its message, or why it is refused (naming the
/// line by its number in `body`, from 1). More than `MAX_LINES` refuses the whole request.
pub fn parse(body: &[u8], limits: &LineLimits) -> Result<Vec<Result<Message, ParamError>>, ApiError> {
    let lines: Vec<(usize, &[u8])> = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_ascii()))
        .filter(|(_, line)| !line.is_empty())
        .collect();
    if lines.len() > MAX_LINES {
        return Err(ApiError::too_large(format!(
            "{} lines, more than the limit of {MAX_LINES} per request",
            lines.len()
        )));
    }
    Ok(lines
        .into_iter()
        .map(|(n, line)| message(line, limits).map_err(|e| ParamError(format!("line {n}: {e}"))))
        .collect())
}

fn message(line: &[u8], limits: &LineLimits) -> Result<Message, ParamError> {
    let Line { to, room, keys, mids, op, body, body_b64, id } =
        serde_json::from_slice(line).map_err(json_error)?;
    let to = target(&to, Targets { room, keys, mids }, &limits.targets)?;
    let op = api::app_op("op", op.ok_or_else(|| ParamError("op: missing".into()))?)?;
    let body = match (body, body_b64) {
        (Some(_), Some(_)) => return Err(ParamError("body, body_b64: give one of them".into())),
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| ParamError(format!("body_b64: not base64: {e}")))?,
        (None, None) => Vec::new(),
    };
    api::body_len("body", body.len(), limits.body)?;
    let key = id.map(|id| api::idempotency_key("id", &id).map(str::to_owned)).transpose()?;
    Ok(Message { to, op, body: body.into(), key })
}

/// The line's target; a target field the target does not use is an error (a mistake, not
/// something to ignore).
fn target(to: &str, t: Targets, limits: &TargetLimits) -> Result<PushTo, ParamError> {
    let given = [("room", t.room.is_some()), ("keys", t.keys.is_some()), ("mids", t.mids.is_some())];
    let (target, uses) = match to {
        "room" => (PushTo::Room(limits.room("room", t.room.unwrap_or_default())?), "room"),
        "keys" => (PushTo::Keys(limits.keys("keys", t.keys.unwrap_or_default())?), "keys"),
        "mids" => (PushTo::Mids(limits.mids("mids", t.mids.unwrap_or_default())?), "mids"),
        "all" => (PushTo::All, ""),
        other => return Err(ParamError(format!("to: {other:?} is none of room, keys, mids, all"))),
    };
    match given.into_iter().find(|&(field, set)| set && field != uses) {
        Some((field, _)) => Err(ParamError(format!("{field}: not used with \"to\":{to:?}"))),
        None => Ok(target),
    }
}

/// A line's target fields, moved out of it.
struct Targets {
    room: Option<String>,
    keys: Option<Vec<String>>,
    mids: Option<Vec<i64>>,
}

/// serde_json's message without its position in the line, then the column (the line is
/// named by the caller).
fn json_error(e: serde_json::Error) -> ParamError {
    let text = e.to_string();
    let what = text.rsplit_once(" at line ").map_or(text.as_str(), |(what, _)| what);
    ParamError(format!("bad JSON: {what} (column {})", e.column()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: LineLimits =
        LineLimits { targets: TargetLimits { targets: 2, key_len: 4, room_len: 12 }, body: 5 };

    fn parsed(body: &str) -> Vec<Result<Message, String>> {
        let lines = parse(body.as_bytes(), &LIMITS).unwrap_or_else(|e| panic!("refused whole: {e:?}"));
        lines.into_iter().map(|l| l.map_err(|e| e.0)).collect()
    }

    fn msg(to: PushTo, op: i32, body: &[u8], key: Option<&str>) -> Message {
        Message { to, op, body: bytes::Bytes::copy_from_slice(body), key: key.map(String::from) }
    }

    #[test]
    fn every_target_and_both_body_forms() {
        let body = concat!(
            r#"{"to":"room","room":"live://1","op":1000,"body":"hi","id":"k-1"}"#,
            "\n\r\n   \n",
            r#"{"to":"keys","keys":["a","b"],"op":1001,"body_b64":"AP8="}"#,
            "\r\n",
            r#"{"to":"mids","mids":[7,-1],"op":-5}"#,
            "\n",
            r#"{"to":"all","op":2000,"body":"é"}"#,
        );
        assert_eq!(
            parsed(body),
            [
                Ok(msg(PushTo::Room("live://1".into()), 1000, b"hi", Some("k-1"))),
                Ok(msg(PushTo::Keys(vec!["a".into(), "b".into()]), 1001, &[0, 255], None)),
                Ok(msg(PushTo::Mids(vec![7, -1]), -5, b"", None)),
                Ok(msg(PushTo::All, 2000, "é".as_bytes(), None)),
            ]
        );
        assert!(parsed("").is_empty() && parsed("\n \n").is_empty());
    }

    #[test]
    fn a_bad_line_is_its_own_error_named_by_its_number() {
        let body = [
            r#"{"to":"room","room":"live://1","op":1000}"#,
            r#"{"to":"room","room":"live://1","op":1000"#,
            "",
            r#"{"to":"rooms","op":1000}"#,
            r#"{"to":"room","op":1000}"#,
            r#"{"to":"room","room":"live://123456","op":1000}"#,
            r#"{"to":"room","room":"live://1","op":1000,"body":"123456"}"#,
            r#"{"to":"room","room":"live://1","op":1000,"colour":"red"}"#,
            r#"{"to":"room","room":"live://1"}"#,
            r#"{"to":"room","room":"live://1","op":9}"#,
            r#"{"to":"keys","keys":[],"op":1000}"#,
            r#"{"to":"keys","keys":["a","b","c"],"op":1000}"#,
            r#"{"to":"keys","keys":["abcde"],"op":1000}"#,
            r#"{"to":"mids","mids":[1],"room":"live://1","op":1000}"#,
            r#"{"to":"all","op":1000,"body":"a","body_b64":"YQ=="}"#,
            r#"{"to":"all","op":1000,"body_b64":"!!"}"#,
            r#"{"to":"all","op":1000,"id":""}"#,
            r#"{"to":"all","op":1000,"id":"tab\t"}"#,
            r#"{"to":"mids","mids":["1"],"op":1000}"#,
            r#""text""#,
        ]
        .join("\n");
        let got = parsed(&body);
        let errors: Vec<&str> = got.iter().skip(1).map(|r| r.as_ref().unwrap_err().as_str()).collect();
        assert!(got[0].is_ok());
        assert_eq!(errors[0], "line 2: bad JSON: EOF while parsing an object (column 40)");
        assert_eq!(
            errors[1..],
            [
                r#"line 4: to: "rooms" is none of room, keys, mids, all"#,
                "line 5: room: missing",
                "line 6: room: 13 bytes exceeds the limit of 12",
                "line 7: body: 6 bytes exceeds the limit of 5",
                "line 8: bad JSON: unknown field `colour`, expected one of `to`, `room`, `keys`, `mids`, `op`, `body`, `body_b64`, `id` (column 49)",
                "line 9: op: missing",
                "line 10: op: 9 is reserved by the protocol (use 1000 and up)",
                "line 11: keys: missing",
                "line 12: keys: 3 given, at most 2 per push",
                "line 13: keys: 5 bytes exceeds the limit of 4",
                r#"line 14: room: not used with "to":"mids""#,
                "line 15: body, body_b64: give one of them",
                "line 16: body_b64: not base64: Invalid symbol 33, offset 0.",
                "line 17: id: 1 to 256 visible ASCII characters",
                "line 18: id: 1 to 256 visible ASCII characters",
                r#"line 19: bad JSON: invalid type: string "1", expected i64 (column 24)"#,
                r#"line 20: bad JSON: invalid type: string "text", expected struct Line (column 6)"#,
            ]
        );
    }

    #[test]
    fn more_lines_than_the_limit_refuse_the_request_whole() {
        let line = r#"{"to":"all","op":1000}"#;
        let at_limit = vec![line; MAX_LINES].join("\n") + "\n\n";
        assert_eq!(parsed(&at_limit).len(), MAX_LINES);
        let over = vec![line; MAX_LINES + 1].join("\n");
        let err = parse(over.as_bytes(), &LIMITS).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (-413, "1001 lines, more than the limit of 1000 per request")
        );
    }
}
