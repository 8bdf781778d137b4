//! `goim log tail --http A [--from SEQ] [--follow]`: prints push-log records as JSON lines,
//! like Kafka's console consumer.
use std::io::Write;
use std::time::Duration;

use serde_json::Value;

const PAGE: usize = 1000;

pub async fn tail(target: &super::Target, from: u64, follow: bool) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut next = from.max(1);
    let stdout = std::io::stdout();
    loop {
        let data = super::get_data(&client, target, &format!("/goim/log?from={next}&limit={PAGE}")).await?;
        let records = data.get("records").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut out = stdout.lock();
        for r in &records {
            writeln!(out, "{r}")?;
            if let Some(seq) = r.get("seq").and_then(Value::as_u64) {
                next = seq + 1;
            }
        }
        out.flush()?;
        drop(out);
        if records.len() < PAGE {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
