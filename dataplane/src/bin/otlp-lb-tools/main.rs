//! `otlp-lb-tools`: the tools a user verifies an OTLP load balancer with.
//!
//! * `loadgen` sends pre-encoded OTLP traces, metrics or logs (gRPC or HTTP) at a controlled rate and reports what
//!   was acknowledged, errors by code and latency; it can record every trace id it delivered.
//! * `sink` is a cheap OTLP receiver that counts what it receives (per signal, per trace id, per service,
//!   duplicates) and can be switched into failure modes at run time, for tests and demos.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod loadgen;
mod sink;

#[derive(Debug, Parser)]
#[command(name = "otlp-lb-tools", version, about = "Load generator and test sink for OTLP load balancers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send OTLP traffic and report throughput, errors and latency.
    Loadgen(loadgen::Args),
    /// Receive OTLP traffic, count it, and serve a JSON report.
    Sink(sink::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("otlp-lb-tools: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Loadgen(args) => loadgen::run(args).await,
            Command::Sink(args) => sink::run(args).await,
        }
    });
    // Do not wait for tasks stuck on hung connections: everything worth keeping has been written already.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("otlp-lb-tools: {err:#}");
            ExitCode::from(2)
        }
    }
}
