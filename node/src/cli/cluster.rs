//! `goim cluster status --http A`: the node's view of the cluster, as JSON.
pub async fn status(http: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let data = super::get_data(&client, http, "/cluster/status").await?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}
