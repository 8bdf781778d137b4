//! Client-side subcommands: they talk to a running node's HTTP API and print JSON.
pub mod cluster;
pub mod log;

use anyhow::{bail, Context};
use serde_json::Value;

/// GETs `path` on `http` (HOST:PORT or a URL) and returns goim's `data`, or the error.
pub async fn get_data(client: &reqwest::Client, http: &str, path: &str) -> anyhow::Result<Value> {
    call(client.get(url(http, path)), http, path).await
}

/// POSTs to `path` (no body) and returns goim's `data`, or the error.
pub async fn post_data(client: &reqwest::Client, http: &str, path: &str) -> anyhow::Result<Value> {
    call(client.post(url(http, path)), http, path).await
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
