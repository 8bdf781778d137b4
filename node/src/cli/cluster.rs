//! `goim cluster status|add|remove --http A`: cluster health and online membership change,
//! through any logic node's HTTP API (`--token` when it has an API token); prints JSON.
use super::Target;

pub async fn status(target: &Target) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let data = super::get_data(&client, target, "/cluster/status").await?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

/// Adds logic node `id` (QUIC address `addr`) as a learner, then a voter once caught up.
pub async fn add(target: &Target, id: u64, addr: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build()?;
    let path = format!(
        "/cluster/add?id={id}&addr={}",
        form_urlencoded::byte_serialize(addr.as_bytes()).collect::<String>()
    );
    let data = super::post_data(&client, target, &path).await?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

pub async fn remove(target: &Target, id: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build()?;
    let data = super::post_data(&client, target, &format!("/cluster/remove?id={id}")).await?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}
