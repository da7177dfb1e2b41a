//! `otlp-lb-operator`: `run` the operator, or print the `crd`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use operator::telemetry::{self, LogFormat};
use operator::{Config, LeaderElectionConfig};

#[derive(Parser)]
#[command(
    name = "otlp-lb-operator",
    version,
    about = "Runs load-balanced pools of OpenTelemetry Collectors from LoadBalancedCollector resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch LoadBalancedCollectors and reconcile them.
    Run(RunArgs),
    /// Print the LoadBalancedCollector CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespace to watch (repeat for several); none watches all namespaces.
    #[arg(long = "namespace", value_name = "NAMESPACE", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "METRICS_ADDRESS")]
    metrics_address: SocketAddr,

    /// Elect a leader with a Lease so several replicas can run; disable for a single local run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "LEADER_ELECT")]
    leader_elect: bool,

    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "otlp-lb-operator-leader")]
    leader_election_id: String,

    /// Seconds a lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,

    /// This replica's identity (its pod name); defaults to the host name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "LOG_FORMAT")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match operator::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("could not render the CRD: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let identity = args
                .identity
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("otlp-lb-operator-{}", std::process::id()));
            let leader_election = args.leader_elect.then(|| {
                let mut config = LeaderElectionConfig::new(
                    args.leader_election_namespace,
                    args.leader_election_id,
                    identity.clone(),
                );
                config.lease_duration = Duration::from_secs(args.lease_duration_seconds.max(3));
                config
            });
            let config = Config {
                namespaces: args.namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
                metrics_address: args.metrics_address,
                leader_election,
                instance: Some(identity),
            };
            match operator::run(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
