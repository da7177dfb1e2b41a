//! TLS and mutual TLS on the receivers and towards the backends, and bearer-token authentication of clients.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::lb::{Lb, Opts};
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::sync::{Arc, Mutex};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};

/// A CA and certificates signed by it, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write");
        Pki { dir, issuer: Issuer::new(params, key) }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// (cert, key) files for `names` (DNS names or IPs).
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (c, k) = (self.dir.path().join(format!("{file}.pem")), self.dir.path().join(format!("{file}-key.pem")));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read")
}

async fn tls_channel(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca))).domain_name("localhost");
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(read(c), read(k)));
    }
    Channel::from_shared(format!("https://{addr}")).expect("url").tls_config(tls)?.connect().await
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<usize>>);

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = r.get_ref().resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        *self.0.lock().expect("lock") += spans;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A backend that only speaks TLS and, with `client_ca`, requires a client certificate.
async fn tls_backend(pki: &Pki, client_ca: bool) -> (SocketAddr, Recorder) {
    let (c, k) = pki.issue("backend", &["localhost", "127.0.0.1"]);
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(&c), read(&k)));
    if client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(&pki.ca())));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let rec = Recorder::default();
    let svc = TraceServiceServer::new(rec.clone()).accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let server = Server::builder().tls_config(tls).expect("tls").add_service(svc);
    tokio::spawn(server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
    (addr, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_the_receiver_and_towards_the_backend() {
    let pki = Pki::new();
    let (backend, recorder) = tls_backend(&pki, true).await;
    let (sc, sk) = pki.issue("lb", &["localhost", "127.0.0.1"]);
    let (cc, ck) = pki.issue("client", &["client"]);
    let ca = pki.ca();
    let grpc_tls = format!(
        ", tls: {{cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\"}}",
        sc.display(),
        sk.display(),
        ca.display()
    );
    let http_tls = format!(", tls: {{cert_file: \"{}\", key_file: \"{}\"}}", sc.display(), sk.display());
    let otlp = format!(
        "timeout: 2s, tls: {{insecure: false, ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\", server_name_override: localhost}}",
        ca.display(),
        cc.display(),
        ck.display()
    );
    let lb = Lb::start_with(
        &[format!("127.0.0.1:{}", backend.port())],
        Opts { grpc: &grpc_tls, http: &http_tls, otlp: &otlp, ..Opts::default() },
    );
    // A client with a certificate from the CA gets through, and the load balancer reaches the mTLS backend.
    let channel = tls_channel(lb.grpc, &ca, Some((&cc, &ck))).await.expect("mTLS handshake");
    TraceServiceClient::new(channel).export(otlp::traces(0..3, 0..2, 1)).await.expect("delivered over TLS both ways");
    assert_eq!(*recorder.0.lock().expect("lock"), 6);
    // Without a client certificate the receiver refuses.
    let refused = match tls_channel(lb.grpc, &ca, None).await {
        Err(_) => true,
        Ok(ch) => TraceServiceClient::new(ch).export(otlp::traces(0..1, 0..1, 1)).await.is_err(),
    };
    assert!(refused, "a client without a certificate must not get through");
    // Plaintext to the TLS port fails.
    let plain_ok = match Channel::from_shared(format!("http://{}", lb.grpc)).expect("url").connect().await {
        Err(_) => false,
        Ok(ch) => TraceServiceClient::new(ch).export(otlp::traces(0..1, 0..1, 1)).await.is_ok(),
    };
    assert!(!plain_ok);
    // OTLP/HTTP over TLS.
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&read(&ca)).expect("ca"))
        .build()
        .expect("client");
    let r = http
        .post(format!("https://localhost:{}/v1/traces", lb.http.port()))
        .header("content-type", "application/x-protobuf")
        .body(otlp::traces(10..12, 0..1, 1).encode_to_vec())
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status(), 200);
    assert_eq!(*recorder.0.lock().expect("lock"), 8);
    assert_eq!(*recorder.0.lock().expect("lock"), 8, "nothing from the refused clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_with_an_untrusted_certificate_is_not_trusted() {
    let pki = Pki::new();
    let other = Pki::new();
    let (backend, recorder) = tls_backend(&other, false).await;
    let otlp = format!(
        "timeout: 1s, tls: {{insecure: false, ca_file: \"{}\", server_name_override: localhost}}",
        pki.ca().display()
    );
    let lb = Lb::start_with(
        &[format!("127.0.0.1:{}", backend.port())],
        Opts { otlp: &otlp, lb: "  retry_on_failure: {max_elapsed_time: 1s}\n", ..Opts::default() },
    );
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let err =
        client.export(otlp::traces(0..1, 0..1, 1)).await.expect_err("the backend's certificate is not from our CA");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(*recorder.0.lock().expect("lock"), 0);
}

/// A Collector block with TLS files and no `insecure` key means TLS with a client certificate, as in the Collector:
/// it reaches a mutual-TLS backend, and never sends plaintext to a plaintext one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_block_without_insecure_never_sends_plaintext() {
    let pki = Pki::new();
    let (cc, ck) = pki.issue("client", &["client"]);
    let otlp = format!(
        "timeout: 1s, tls: {{ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\", server_name_override: localhost}}",
        pki.ca().display(),
        cc.display(),
        ck.display()
    );
    let lb_opts = Opts { otlp: &otlp, lb: "  retry_on_failure: {max_elapsed_time: 1s}\n", ..Opts::default() };

    let plain = common::backend::Backend::start().await;
    let lb = Lb::start_with(&[plain.address()], lb_opts);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let err = client.export(otlp::traces(0..10, 0..1, 1)).await.expect_err("a plaintext backend does not speak TLS");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(plain.spans().len(), 0, "no span reached the plaintext backend");

    let (tls, recorder) = tls_backend(&pki, true).await;
    let lb = Lb::start_with(&[format!("127.0.0.1:{}", tls.port())], lb_opts);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    client.export(otlp::traces(0..10, 0..1, 1)).await.expect("delivered over mutual TLS");
    assert_eq!(*recorder.0.lock().expect("lock"), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_when_configured() {
    let backend = common::backend::Backend::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("write");
    let auth = format!("{{bearer_token_file: \"{}\"}}", token_file.display());
    let lb = Lb::start_with(&[backend.address()], Opts { auth: &auth, ..Opts::default() });
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let err = client.export(otlp::traces(0..1, 0..1, 1)).await.expect_err("no token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(otlp::traces(0..1, 0..1, 1));
    req.metadata_mut().insert("authorization", "Bearer wrong".parse().expect("ascii"));
    assert_eq!(client.export(req).await.expect_err("wrong token").code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(otlp::traces(0..2, 0..1, 1));
    req.metadata_mut().insert("authorization", "Bearer s3cret-token".parse().expect("ascii"));
    client.export(req).await.expect("the right token passes");
    let http = reqwest::Client::new();
    let body = otlp::traces(10..12, 0..1, 1).encode_to_vec();
    let r = http
        .post(lb.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = http
        .post(lb.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .bearer_auth("s3cret-token")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(backend.spans().len(), 4);
}
