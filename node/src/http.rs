//! The node's HTTP server: `/health` and `/metrics` on every node whatever its roles, the
//! logic API when it runs logic, the web demo (web-demo/, embedded) at `/`, and goim's JSON
//! 404 elsewhere.
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::logic::{http as logic_http, Logic};

/// What `/health` looks at.
#[derive(Clone)]
pub struct Health {
    pub roles: String,
    pub logic: Option<Arc<Logic>>,
}

impl Health {
    fn check(&self) -> (StatusCode, serde_json::Value) {
        if let Some(logic) = &self.logic {
            let m = logic.cluster.raft.metrics().borrow().clone();
            let member = m.membership_config.membership().get_node(&m.id).is_some();
            let leader = logic.cluster.leader();
            let status = match (member, leader) {
                (false, _) => "not a cluster member (yet)",
                (true, None) => "no leader",
                (true, Some(_)) => "ok",
            };
            let code = if status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            return (code, json!({ "status": status, "roles": self.roles, "leader": leader }));
        }
        (StatusCode::OK, json!({ "status": "ok", "roles": self.roles }))
    }
}

pub fn router(health: Health, prometheus: Option<PrometheusHandle>) -> Router {
    let logic = health.logic.clone();
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let health = health.clone();
                async move {
                    let (code, body) = health.check();
                    (code, Json(body))
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = prometheus.as_ref().map(PrometheusHandle::render).unwrap_or_default();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
        .route("/", get(|| async { Html(include_str!("../../web-demo/index.html")) }))
        .route("/goim.js", get(|| async { asset("text/javascript", include_str!("../../web-demo/goim.js")) }))
        .route("/app.js", get(|| async { asset("text/javascript", include_str!("../../web-demo/app.js")) }))
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", include_str!("../../web-demo/favicon.svg")) }),
        )
        .fallback(not_found);
    match logic {
        Some(logic) => app.merge(logic_http::routes(logic)),
        None => app,
    }
}

/// A web-demo file (embedded: the demo works offline).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn not_found() -> Response {
    metrics::counter!("goim_http_not_found_total").increment(1);
    (StatusCode::NOT_FOUND, Json(json!({ "code": -404, "message": "no such route", "data": null })))
        .into_response()
}
