//! `percore-operator`: reconciles `PercoreApp` resources into percore hosts.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use percore_operator::admin::HttpAdmin;
use percore_operator::hosts::HostsService;
use percore_operator::reconcile::{Context, run};

/// A Kubernetes operator for percore.
#[derive(Debug, Parser)]
#[command(name = "percore-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The headless Service in front of the percore hosts.
    #[arg(long, default_value = "percore-hosts")]
    hosts_service: String,
    /// Its namespace (default: the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "percore-system")]
    hosts_namespace: String,
    /// The name of the hosts' admin API port in that Service.
    #[arg(long, default_value = "admin")]
    admin_port: String,
    /// The hosts' admin API token.
    #[arg(long, env = "PERCORE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// How long one call to a host may take (a deploy pulls and compiles), seconds.
    #[arg(long, default_value_t = 300)]
    admin_timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the PercoreApp CustomResourceDefinition (for `kubectl apply -f -`).
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        println!("{}", percore_operator::crd_json());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await?;
        let admin = HttpAdmin::new(
            cli.admin_token.filter(|t| !t.is_empty()),
            Duration::from_secs(cli.admin_timeout),
        )
        .map_err(anyhow::Error::msg)?;
        let ctx = Arc::new(Context {
            client,
            admin,
            hosts: HostsService {
                namespace: cli.hosts_namespace,
                service: cli.hosts_service,
                admin_port: cli.admin_port,
            },
            manager: "percore-operator".into(),
        });
        tracing::info!(hosts = %ctx.hosts.service, namespace = %ctx.hosts.namespace, "watching PercoreApps");
        run(ctx).await;
        anyhow::Ok(())
    })
}
