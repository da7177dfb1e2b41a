//! `otlp-lb-tools sink`: an OTLP receiver for tests and demos that counts what it receives without decoding it.
//!
//! Requests are walked with `dataplane::wire` (`walk`), merged into shared counters once per request (`state`),
//! answered as the current fault mode says (`mode`), and served over gRPC, HTTP and an admin API (`servers`).
//! On start it prints one JSON line with its bound addresses (ports may be given as 0).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::serve::ListenerExt;
use dataplane::signal::Signal;
use tokio::net::TcpListener;

mod mode;
mod servers;
mod state;
mod walk;

use mode::{Mode, ModeSwitch, Reply};
use state::Totals;
use walk::WalkOpts;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// OTLP/gRPC listen address.
    #[arg(long, default_value = "0.0.0.0:4317")]
    grpc: String,
    /// OTLP/HTTP listen address (off when absent).
    #[arg(long)]
    http: Option<String>,
    /// Admin API listen address (`/report`, `/reset`, `/mode`, `/healthz`).
    #[arg(long, default_value = "127.0.0.1:4320")]
    admin: String,
    /// Label included in the report.
    #[arg(long, default_value = "sink")]
    name: String,
    /// Initial reply mode.
    #[arg(long, value_enum, default_value = "ok")]
    reply: Reply,
    /// Initial delay before every answer.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Initially fail every Nth request with UNAVAILABLE.
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Append `{trace_id, span_id, service}` JSON lines for every span received.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Count only totals: no per-trace counts, no duplicate detection (constant memory).
    #[arg(long)]
    no_ids: bool,
}

/// The sink's shared state.
pub struct Sink {
    name: String,
    started: Instant,
    opts: WalkOpts,
    totals: Mutex<Totals>,
    mode: ModeSwitch,
    out: Option<Mutex<File>>,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reset(&self) {
        *self.lock() = Totals::default();
    }

    /// Answers one export request: `Ok` when accepted and counted, else the reply to send.
    async fn handle(&self, signal: Signal, body: &[u8]) -> Result<(), Reply> {
        let reply = self.mode.decide().await;
        if reply != Reply::Ok {
            self.lock().rejected(reply.code());
            return Err(reply);
        }
        let Ok(mut summary) = walk::walk(signal, body, self.opts) else {
            self.lock().malformed();
            return Err(Reply::InvalidArgument);
        };
        if let Some(out) = &self.out {
            let mut lines = String::new();
            for (trace, span, service) in summary.spans.drain(..) {
                let line = serde_json::json!({"trace_id": hex(trace), "span_id": hex(span), "service": service});
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
            let mut file = out.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(err) = file.write_all(lines.as_bytes()) {
                tracing::warn!(%err, "writing --out file");
            }
        }
        self.lock().merge(signal, body.len(), summary);
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn run(args: Args) -> Result<()> {
    let out = match &args.out {
        Some(path) => Some(Mutex::new(
            File::options().create(true).append(true).open(path).with_context(|| format!("{}", path.display()))?,
        )),
        None => None,
    };
    let sink = Arc::new(Sink {
        name: args.name.clone(),
        started: Instant::now(),
        opts: WalkOpts { ids: !args.no_ids, spans: out.is_some() },
        totals: Mutex::new(Totals::default()),
        mode: ModeSwitch::new(Mode { reply: args.reply, delay_ms: args.delay_ms, fail_every: args.fail_every }),
        out,
    });
    let grpc = TcpListener::bind(&args.grpc).await.with_context(|| format!("binding --grpc {}", args.grpc))?;
    let admin = TcpListener::bind(&args.admin).await.with_context(|| format!("binding --admin {}", args.admin))?;
    let http = match &args.http {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding --http {addr}"))?),
        None => None,
    };
    let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).ok();
    let bound = serde_json::json!({
        "name": args.name, "grpc": addr(&grpc), "http": http.as_ref().and_then(addr), "admin": addr(&admin),
    });
    println!("{bound}");
    std::io::stdout().flush()?;
    tracing::info!(%bound, "sink listening");

    // axum (hyper, HTTP/2 prior knowledge) rather than tonic's server, whose deadline layer would answer hanging
    // requests with CANCELLED: in `hang` mode the sink must stay silent until the client gives up.
    let grpc_server = axum::serve(grpc.tap_io(|tcp| drop(tcp.set_nodelay(true))), servers::grpc_router(sink.clone()));
    let admin_server = axum::serve(admin, servers::admin_router(sink.clone()));
    let http_router = servers::http_router(sink.clone());
    let http_server = async move {
        match http {
            Some(l) => axum::serve(l.tap_io(|tcp| drop(tcp.set_nodelay(true))), http_router).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = grpc_server.into_future() => r.context("gRPC server")?,
        r = admin_server.into_future() => r.context("admin server")?,
        r = http_server => r.context("HTTP server")?,
        () = shutdown_signal() => tracing::info!(name = %args.name, "shutting down"),
    }
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
