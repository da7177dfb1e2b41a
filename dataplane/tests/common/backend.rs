//! A real OTLP/gRPC backend on loopback (opentelemetry-proto's generated services) that records every request
//! it accepts and can be told to fail.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::sync::oneshot;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

/// What a backend accepted.
#[derive(Default)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
}

#[derive(Default)]
pub struct State {
    pub received: Mutex<Received>,
    /// Fail this many of the next requests with UNAVAILABLE.
    pub fail_next: AtomicU32,
    /// While non-zero, every request fails with this gRPC code.
    pub fail_code: AtomicU32,
    /// Requests answered with an error.
    pub failed: AtomicU32,
    /// Delay before answering, in ms.
    pub delay_ms: AtomicU32,
    /// The request headers (gRPC metadata) of every trace export accepted.
    pub trace_headers: Mutex<Vec<tonic::metadata::MetadataMap>>,
}

impl State {
    async fn check(&self) -> Result<(), Status> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(u64::from(delay))).await;
        }
        let code = self.fail_code.load(Ordering::SeqCst);
        if code != 0 {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(Status::new(tonic::Code::from_i32(code as i32), "backend told to fail"));
        }
        if self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable("backend briefly unavailable"));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Svc(Arc<State>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        r: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0.check().await?;
        self.0.trace_headers.lock().expect("lock").push(r.metadata().clone());
        self.0.received.lock().expect("lock").traces.push(r.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        r: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.0.check().await?;
        self.0.received.lock().expect("lock").metrics.push(r.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        r: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.0.check().await?;
        self.0.received.lock().expect("lock").logs.push(r.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A running backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
}

impl Backend {
    pub async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        Backend::serve(listener, Arc::new(State::default()))
    }

    /// Serves `state` on `listener` (used to restart a backend on the same address).
    pub fn serve(listener: tokio::net::TcpListener, state: Arc<State>) -> Backend {
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel();
        let svc = Svc(Arc::clone(&state));
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let result = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(svc.clone())
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd),
                )
                .add_service(MetricsServiceServer::new(svc.clone()).accept_compressed(CompressionEncoding::Gzip))
                .add_service(LogsServiceServer::new(svc).accept_compressed(CompressionEncoding::Gzip))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("test backend stopped: {e}");
            }
        });
        Backend { addr, state, stop: Some(tx) }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// (trace id, span name) of every span received.
    pub fn spans(&self) -> Vec<(Vec<u8>, String)> {
        let r = self.state.received.lock().expect("lock");
        r.traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| (s.trace_id.clone(), s.name.clone()))
            .collect()
    }

    pub fn requests(&self) -> usize {
        let r = self.state.received.lock().expect("lock");
        r.traces.len() + r.metrics.len() + r.logs.len()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}
