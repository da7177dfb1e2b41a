//! A backend's HTTP/2 connection, driven with `h2` directly: opened on first use, opened again once it breaks or
//! the backend sends GOAWAY, kept alive with PINGs, closed when the last holder lets go of it. A request's HEADERS
//! and its one DATA frame are queued together and leave in one write; hyper's client, behind tonic's channel,
//! sends the body from a task of its own once the stream has window, one write and two task hops later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion, crypto, version};
use tonic::Status;

use crate::config::ClientTls;
use crate::pem;

/// PING the backend this often, and count the connection dead when the PONG takes longer than `KEEPALIVE_TIMEOUT`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection to one backend address.
pub struct Connection {
    address: String,
    tls: Option<Tls>,
    connect_timeout: Duration,
    live: Mutex<Option<Live>>,
    /// Held while a connection is being opened, so that concurrent calls open one, not one each.
    opening: tokio::sync::Mutex<()>,
}

struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

#[derive(Clone)]
struct Live {
    sender: SendRequest<Bytes>,
    /// Set by the task driving the connection when it ends.
    closed: Arc<AtomicBool>,
}

impl Connection {
    /// `tls` is `None` for plaintext ([`ClientTls::plaintext`]); the connection is not opened here.
    pub fn new(address: &str, tls: &ClientTls, connect_timeout: Duration) -> Result<Connection, String> {
        let tls = if tls.plaintext() { None } else { Some(client_tls(address, tls)?) };
        Ok(Connection {
            address: address.to_string(),
            tls,
            connect_timeout,
            live: Mutex::new(None),
            opening: Default::default(),
        })
    }

    /// A sender that may open a stream now (the backend's `max_concurrent_streams` is respected by waiting).
    /// A connection that ended, or that the backend is closing, is replaced once.
    pub async fn ready(&self) -> Result<SendRequest<Bytes>, Status> {
        let mut last = None;
        for _ in 0..2 {
            let live = self.live().await?;
            match live.sender.ready().await {
                Ok(sender) => return Ok(sender),
                Err(e) => {
                    live.closed.store(true, Ordering::Release);
                    last = Some(e);
                }
            }
        }
        Err(last.map(|e| status(&e)).unwrap_or_else(|| Status::unavailable("no connection")))
    }

    fn current(&self) -> Option<Live> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref().filter(|l| !l.closed.load(Ordering::Acquire)).cloned()
    }

    async fn live(&self) -> Result<Live, Status> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _opening = self.opening.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let live = tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| Status::unavailable(format!("connecting: no connection in {:?}", self.connect_timeout)))??;
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
        Ok(live)
    }

    async fn open(&self) -> Result<Live, Status> {
        let tcp =
            TcpStream::connect(&self.address).await.map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
        tcp.set_nodelay(true).map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
        match &self.tls {
            None => handshake(tcp).await,
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.name.clone(), tcp)
                    .await
                    .map_err(|e| Status::unavailable(format!("TLS handshake: {e}")))?;
                handshake(stream).await
            }
        }
    }
}

/// The HTTP/2 handshake, then a task that drives the connection and PINGs it until it ends.
async fn handshake<IO>(io: IO) -> Result<Live, Status>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, mut connection) = h2::client::Builder::new()
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| Status::unavailable(format!("HTTP/2 handshake: {e}")))?;
    let closed = Arc::new(AtomicBool::new(false));
    let ping_pong = connection.ping_pong();
    let done = Arc::clone(&closed);
    tokio::spawn(async move {
        let keepalive = async {
            let Some(mut ping_pong) = ping_pong else { return std::future::pending().await };
            loop {
                tokio::time::sleep(KEEPALIVE_INTERVAL).await;
                match tokio::time::timeout(KEEPALIVE_TIMEOUT, ping_pong.ping(h2::Ping::opaque())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return tracing::debug!(error = %e, "backend connection: keepalive PING failed"),
                    Err(_) => {
                        return tracing::debug!("backend connection: no PONG in {KEEPALIVE_TIMEOUT:?}; closing it");
                    }
                }
            }
        };
        tokio::select! {
            r = &mut connection => if let Err(e) = r { tracing::debug!(error = %e, "backend connection ended with an error") },
            () = keepalive => {}
        }
        done.store(true, Ordering::Release);
    });
    Ok(Live { sender, closed })
}

/// The gRPC status of an HTTP/2 failure: a broken or closing connection is UNAVAILABLE (the request may be sent
/// again), as are streams the backend refused; a stream the backend cancelled is CANCELLED.
pub fn status(e: &h2::Error) -> Status {
    let code = match e.reason() {
        _ if e.is_io() => tonic::Code::Unavailable,
        Some(h2::Reason::CANCEL) => tonic::Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => tonic::Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => tonic::Code::PermissionDenied,
        Some(h2::Reason::NO_ERROR | h2::Reason::REFUSED_STREAM) => tonic::Code::Unavailable,
        _ if e.is_go_away() => tonic::Code::Unavailable,
        None => tonic::Code::Unavailable,
        Some(_) => tonic::Code::Internal,
    };
    Status::new(code, format!("HTTP/2: {e}"))
}

/// The client TLS settings of a backend (`tls.insecure: false`): the CA of `ca_file`, or the system's roots; a
/// client certificate when both `cert_file` and `key_file` are given; the TLS versions `min_version` and
/// `max_version` allow; ALPN `h2`.
fn client_tls(address: &str, tls: &ClientTls) -> Result<Tls, String> {
    if tls.insecure_skip_verify {
        return Err("tls.insecure_skip_verify is not supported: give the backends' CA in tls.ca_file".into());
    }
    let roots = match &tls.ca_file {
        Some(ca) => pem::roots("tls.ca_file", ca)?,
        None => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        }
    };
    if roots.is_empty() {
        return Err("tls: no CA certificate to verify the backends with (give tls.ca_file)".into());
    }
    let versions: Vec<&'static SupportedProtocolVersion> = match tls.protocol_versions()? {
        (true, true) => vec![&version::TLS13, &version::TLS12],
        (false, true) => vec![&version::TLS13],
        _ => vec![&version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => {
            let chain = pem::certificates("tls.cert_file", c)?;
            let key = pem::private_key("tls.key_file", k)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("tls: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("tls: give both cert_file and key_file for a client certificate".into()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let host = match &tls.server_name_override {
        Some(name) => name.as_str(),
        None => host_of(address),
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{address}: not a TLS server name: {e}"))?;
    Ok(Tls { connector: TlsConnector::from(Arc::new(config)), name })
}

/// The host of `host:port` (`[v6]:port` too).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_addresses() {
        assert_eq!(host_of("collector-0.pool:4317"), "collector-0.pool");
        assert_eq!(host_of("127.0.0.1:4317"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4317"), "::1");
    }

    #[test]
    fn tls_settings_that_cannot_work_are_refused() {
        let skip = ClientTls { insecure: false, insecure_skip_verify: true, ..ClientTls::default() };
        assert!(
            Connection::new("a:1", &skip, Duration::from_secs(1)).is_err_and(|e| e.contains("insecure_skip_verify"))
        );
        let half =
            ClientTls { insecure: false, ca_file: None, cert_file: Some("c.pem".into()), ..ClientTls::default() };
        let e = Connection::new("a:1", &half, Duration::from_secs(1)).err().unwrap_or_default();
        assert!(e.contains("both cert_file and key_file") || e.contains("no CA certificate"), "{e}");
    }
}
