//! `goim cluster status|add|remove --http A`: cluster health and online membership change,
//! through any logic node's HTTP API (`--token` when it has an API token); prints JSON.
//! `goim cluster certs` writes the cluster mTLS certificates (offline).
use std::path::PathBuf;

use anyhow::Context;

use super::Target;

#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Directory to write into (created if missing; existing files are overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Node names, comma-separated: one `<name>.pem` / `<name>.key` each.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Validity of every certificate, in days.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
}

/// Writes the CA and the node certificates and prints the files written.
pub fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    let nodes: Vec<String> =
        args.nodes.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    let written = goim_net::quic::write_cluster_certs(&args.out, &nodes, args.days)
        .with_context(|| format!("writing cluster certificates to {}", args.out.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

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
