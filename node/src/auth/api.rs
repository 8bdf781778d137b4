//! The HTTP API's bearer token (`--api-token`): when set, the push and cluster routes (and
//! with `--api-token-reads` the `/goim/*` reads) need `Authorization: Bearer <token>`,
//! compared in constant time; anything else is HTTP 401 in goim's JSON shape, counted in
//! `goim_http_unauthorized_total{reason}`. `/health`, `/metrics` and the demo never need it.
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

/// The configured API token, if any.
#[derive(Clone, Default)]
pub struct ApiAuth {
    token: Option<Arc<[u8]>>,
    /// The `/goim/*` reads need the token too.
    pub reads: bool,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth").field("on", &self.is_on()).field("reads", &self.reads).finish()
    }
}

impl ApiAuth {
    /// `token` empty (after trimming): the API is open.
    pub fn new(token: &str, reads: bool) -> ApiAuth {
        let token = token.trim();
        ApiAuth { token: (!token.is_empty()).then(|| Arc::from(token.as_bytes())), reads }
    }

    pub fn is_on(&self) -> bool {
        self.token.is_some()
    }

    /// `Ok` if the request may pass; else the `reason` label of the refusal.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().as_bytes());
        match given {
            None => Err("missing"),
            Some(given) if bool::from(given.ct_eq(expected)) => Ok(()),
            Some(_) => Err("wrong"),
        }
    }
}

/// Middleware: lets the request through if `auth` allows it, else answers 401.
pub async fn require(State(auth): State<ApiAuth>, request: Request, next: Next) -> Response {
    match auth.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => unauthorized(reason),
    }
}

fn unauthorized(reason: &'static str) -> Response {
    metrics::counter!("goim_http_unauthorized_total", "reason" => reason).increment(1);
    let message = match reason {
        "missing" => "this route needs Authorization: Bearer <api token>",
        _ => "wrong api token",
    };
    let body = json!({ "code": -401, "message": message, "data": null });
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_token_checks() {
        let off = ApiAuth::new("  ", false);
        assert!(!off.is_on());
        assert_eq!(off.check(&headers(None)), Ok(()));
        let on = ApiAuth::new("s3cret", false);
        assert_eq!(on.check(&headers(Some("Bearer s3cret"))), Ok(()));
        assert_eq!(on.check(&headers(Some("bearer  s3cret "))), Ok(()));
        assert_eq!(on.check(&headers(None)), Err("missing"));
        assert_eq!(on.check(&headers(Some("s3cret"))), Err("missing"));
        assert_eq!(on.check(&headers(Some("Basic s3cret"))), Err("missing"));
        assert_eq!(on.check(&headers(Some("Bearer s3cre"))), Err("wrong"));
        assert_eq!(on.check(&headers(Some("Bearer s3cret2"))), Err("wrong"));
        assert_eq!(on.check(&headers(Some("Bearer "))), Err("wrong"));
        assert!(!format!("{on:?}").contains("s3cret"), "the token is never printed");
    }
}
