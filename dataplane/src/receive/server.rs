//! The connection server both receivers run on: accepts TCP connections, serves HTTP/1.1 and HTTP/2 (gRPC: HTTP/2
//! only), optionally over TLS, closes connections older than `max_connection_age` with a GOAWAY (±10% jitter, so that clients reconnect
//! and spread over load-balancer replicas), and on shutdown stops accepting and lets open requests finish.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service a listener can serve: both receivers' services (tonic's gRPC and axum's HTTP) are.
pub trait HttpService<B>:
    tower::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
where
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
}

impl<S, B> HttpService<B> for S
where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
}

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    pub http2_only: bool,
    /// `None`: connections live as long as the client keeps them.
    pub max_connection_age: Option<Duration>,
    /// How long a connection closed for age or shutdown may finish its requests.
    pub grace: Duration,
    pub tls: Option<TlsAcceptor>,
}

/// Serves `service` on `listener` until `shutdown` turns true, then waits (up to `grace`) for open connections.
pub fn spawn<S, B>(
    listener: TcpListener,
    service: S,
    opts: ServeOptions,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    S: HttpService<B>,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    tokio::spawn(accept_loop(listener, service, opts, shutdown))
}

async fn accept_loop<S, B>(listener: TcpListener, service: S, opts: ServeOptions, mut shutdown: watch::Receiver<bool>)
where
    S: HttpService<B>,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    let local: Option<SocketAddr> = listener.local_addr().ok();
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (service, opts, shutdown) = (service.clone(), opts.clone(), shutdown.clone());
        connections.spawn(async move {
            match &opts.tls {
                None => serve_connection(stream, service, &opts, shutdown, peer).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => serve_connection(tls, service, &opts, shutdown, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    tracing::debug!(listener = ?local, open = connections.len(), "stopped accepting; draining connections");
    let drained = tokio::time::timeout(opts.grace + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(listener = ?local, open = connections.len(), "connections still open after the drain timeout; closing them");
        connections.abort_all();
    }
}

async fn serve_connection<IO, S, B>(
    stream: IO,
    service: S,
    opts: &ServeOptions,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if opts.http2_only {
        builder = builder.http2_only();
    }
    builder
        .http2()
        .max_concurrent_streams(1024)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let age = opts.max_connection_age.map(jitter);
    let aged = async {
        match age {
            Some(a) => tokio::time::sleep(a).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended with an error"); }
            return;
        }
        _ = aged => tracing::debug!(%peer, "connection reached max_connection_age; sending GOAWAY"),
        _ = shutdown.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(opts.grace, conn).await.is_err() {
        tracing::debug!(%peer, "connection did not finish within the grace period");
    }
}

/// `d` ± 10%.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.9..=1.1))
}
