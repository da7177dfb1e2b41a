//! `otlp-lb`: the OTLP load balancer.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dataplane::config::Config;

/// Load-balance OTLP traffic over a pool of OpenTelemetry Collectors by consistent hashing.
#[derive(Debug, Parser)]
#[command(name = "otlp-lb", version)]
struct Cli {
    /// The configuration file (YAML).
    #[arg(long, short = 'c', env = "OTLP_LB_CONFIG")]
    config: PathBuf,
    /// Check the configuration file and exit.
    #[arg(long)]
    validate: bool,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text", env = "OTLP_LB_LOG_FORMAT")]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: log files and `kubectl logs` get plain lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if cli.log_format == "json" {
        subscriber.json().init()
    } else {
        subscriber.init()
    }

    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otlp-lb: invalid configuration {}: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    if cli.validate {
        for w in config.warnings() {
            eprintln!("warning: {w}");
        }
        println!("{}: valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otlp-lb: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dataplane::app::run(cli.config, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
