//! Client-side subcommands: they talk to a running node's HTTP API and print JSON (and
//! `goim token` mints a client token offline); `goim demo` runs a demo cluster of child processes.
pub mod cluster;
pub mod demo;
pub mod log;
pub mod token;

use anyhow::{bail, Context};
use serde_json::Value;

/// Which node a client subcommand calls, and with what API token.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// A logic node's HTTP address (HOST:PORT or a URL).
    #[arg(long, default_value = "127.0.0.1:3111")]
    pub http: String,
    /// The API bearer token, for a node run with --api-token.
    #[arg(long, env = "GOIM_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Target {
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// GETs `path` on `target` and returns goim's `data`, or the error.
pub async fn get_data(client: &reqwest::Client, target: &Target, path: &str) -> anyhow::Result<Value> {
    let request = target.authorized(client.get(url(&target.http, path)));
    call(request, &target.http, path).await
}

/// POSTs to `path` (no body) and returns goim's `data`, or the error.
pub async fn post_data(client: &reqwest::Client, target: &Target, path: &str) -> anyhow::Result<Value> {
    let request = target.authorized(client.post(url(&target.http, path)));
    call(request, &target.http, path).await
}

fn url(http: &str, path: &str) -> String {
    if http.starts_with("http://") || http.starts_with("https://") {
        format!("{}{path}", http.trim_end_matches('/'))
    } else {
        format!("http://{http}{path}")
    }
}

async fn call(request: reqwest::RequestBuilder, http: &str, path: &str) -> anyhow::Result<Value> {
    let url = url(http, path);
    let reply: Value = request
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: reply is not JSON"))?;
    match reply.get("code").and_then(Value::as_i64) {
        Some(0) => Ok(reply.get("data").cloned().unwrap_or(Value::Null)),
        _ => bail!("GET {url}: {}", reply.get("message").and_then(Value::as_str).unwrap_or("bad reply")),
    }
}
