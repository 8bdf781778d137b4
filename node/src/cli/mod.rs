//! Client-side subcommands: they talk to a running node's HTTP API and print JSON.
pub mod cluster;
pub mod log;

use anyhow::{bail, Context};
use serde_json::Value;

/// GETs `path` on `http` (HOST:PORT or a URL) and returns goim's `data`, or the error.
pub async fn get_data(client: &reqwest::Client, http: &str, path: &str) -> anyhow::Result<Value> {
    let base = if http.starts_with("http://") || http.starts_with("https://") {
        http.trim_end_matches('/').to_string()
    } else {
        format!("http://{http}")
    };
    let url = format!("{base}{path}");
    let reply: Value = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: reply is not JSON"))?;
    match reply.get("code").and_then(Value::as_i64) {
        Some(0) => Ok(reply.get("data").cloned().unwrap_or(Value::Null)),
        _ => bail!(
            "GET {url}: {}",
            reply
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("bad reply")
        ),
    }
}
