//! The aws_cloud_map resolver against moto, an implementation of the AWS Cloud Map API run locally in server mode
//! and driven through the real API: instances registered, deregistered and turned unhealthy move the ring (seen in
//! `/debug/pool` and in where spans land), and a stopped API keeps the last good pool.
//!
//! moto comes from `dataplane/tests/python/requirements.txt`. Without it the tests are skipped, except under
//! `CI=true`, where that is a failure.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_servicediscovery::types::{CustomHealthStatus, HealthCheckCustomConfig};
use common::backend::Backend;
use common::lb::{Lb, free_port};
use common::procs::Guard;
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

const REGION: &str = "us-east-1";
const NAMESPACE: &str = "observability.local";
const SERVICE: &str = "collectors";

/// moto's server on a loopback port; killed when dropped.
struct Moto {
    process: Guard,
    endpoint: String,
}

impl Moto {
    /// Starts moto, or returns `None` (skip) when it is not installed and this is not CI.
    fn start() -> Option<Moto> {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "moto is not installed: pip install -r dataplane/tests/python/requirements.txt"
            );
            eprintln!("skipped: moto is not installed (pip install -r dataplane/tests/python/requirements.txt)");
            return None;
        }
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut process = Guard(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = process.0.try_wait() {
                panic!("moto exited at start ({status})");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "moto not listening on {port} in 60s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { process, endpoint: format!("http://127.0.0.1:{port}") })
    }

    /// A client of the API, for setting the scene.
    fn client(&self) -> Client {
        let config = aws_sdk_servicediscovery::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Client::from_conf(config)
    }

    /// What otlp-lb needs in its environment to reach this moto through the standard AWS configuration chain.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SERVICEDISCOVERY", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }
}

/// Creates the namespace and a service whose instances report a custom health status; returns the service id.
async fn create_service(api: &Client) -> String {
    api.create_http_namespace().name(NAMESPACE).send().await.expect("CreateHttpNamespace");
    let namespaces = api.list_namespaces().send().await.expect("ListNamespaces");
    let namespace = namespaces.namespaces().iter().find(|n| n.name() == Some(NAMESPACE)).expect("the namespace");
    let service = api
        .create_service()
        .name(SERVICE)
        .namespace_id(namespace.id().expect("namespace id"))
        .health_check_custom_config(HealthCheckCustomConfig::builder().build())
        .send()
        .await
        .expect("CreateService");
    service.service().and_then(|s| s.id()).expect("service id").to_string()
}

async fn register(api: &Client, service: &str, id: &str, backend: &Backend) {
    let port = backend.address().rsplit_once(':').expect("host:port").1.to_string();
    api.register_instance()
        .service_id(service)
        .instance_id(id)
        .attributes("AWS_INSTANCE_IPV4", "127.0.0.1")
        .attributes("AWS_INSTANCE_PORT", port)
        .send()
        .await
        .expect("RegisterInstance");
}

fn pool(lb: &Lb) -> BTreeSet<String> {
    let Some((200, body)) = lb.get("/debug/pool") else { return BTreeSet::new() };
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["backends"].as_array().into_iter().flatten().filter_map(|b| b["address"].as_str().map(String::from)).collect()
}

/// Waits (at most 20 s) until the pool holds exactly `backends`.
fn wait_pool(lb: &Lb, backends: &[&Backend], what: &str) {
    let want: BTreeSet<String> = backends.iter().map(|b| b.address()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool(lb) != want {
        assert!(Instant::now() < deadline, "{what}: pool {:?}, want {want:?}\n{}", pool(lb), lb.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends 50 traces of 2 spans and returns how many spans each backend received meanwhile.
async fn send(lb: &Lb, backends: &[&Backend], round: u64) -> Vec<usize> {
    let before: Vec<usize> = backends.iter().map(|b| b.spans().len()).collect();
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    client.export(otlp::traces(round * 1000..round * 1000 + 50, 0..2, 3)).await.expect("export");
    backends.iter().zip(before).map(|(b, n)| b.spans().len() - n).collect()
}

fn failed_resolutions(lb: &Lb) -> f64 {
    lb.metric("otelcol_loadbalancer_num_resolutions{resolver=\"aws\",success=\"false\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ring_follows_cloud_map_and_keeps_the_last_good_pool() {
    let Some(mut moto) = Moto::start() else { return };
    let api = moto.client();
    let service = create_service(&api).await;
    let b: Vec<Backend> = futures::future::join_all((0..3).map(|_| Backend::start())).await;
    register(&api, &service, "b0", &b[0]).await;
    register(&api, &service, "b1", &b[1]).await;

    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // health_status is left out: HEALTHY by default.
    let lb = Lb::start_config(
        |grpc, http, telemetry| {
            format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{grpc}\"}}\n      \
                 http: {{endpoint: \"{http}\"}}\nloadbalancing:\n  protocol:\n    otlp: {{timeout: 2s, tls: \
                 {{insecure: true}}}}\n  resolver:\n    aws_cloud_map:\n      namespace: {NAMESPACE}\n      \
                 service_name: {SERVICE}\n      interval: 200ms\n      timeout: 2s\n\
                 telemetry:\n  metrics: {{address: \"{telemetry}\"}}\ndrain_timeout: 2s\n"
            )
        },
        &env,
    );
    wait_pool(&lb, &[&b[0], &b[1]], "two registered instances");
    let got = send(&lb, &[&b[0], &b[1], &b[2]], 1).await;
    assert_eq!(got.iter().sum::<usize>(), 100, "{got:?}");
    assert!(got[0] > 0 && got[1] > 0 && got[2] == 0, "the two instances share the traces: {got:?}");

    register(&api, &service, "b2", &b[2]).await;
    wait_pool(&lb, &[&b[0], &b[1], &b[2]], "a third instance registered");
    let got = send(&lb, &[&b[0], &b[1], &b[2]], 2).await;
    assert!(got.iter().all(|n| *n > 0) && got.iter().sum::<usize>() == 100, "{got:?}");

    api.deregister_instance().service_id(&service).instance_id("b0").send().await.expect("DeregisterInstance");
    wait_pool(&lb, &[&b[1], &b[2]], "b0 deregistered");

    api.update_instance_custom_health_status()
        .service_id(&service)
        .instance_id("b1")
        .status(CustomHealthStatus::Unhealthy)
        .send()
        .await
        .expect("UpdateInstanceCustomHealthStatus");
    wait_pool(&lb, &[&b[2]], "b1 unhealthy under health_status HEALTHY");
    let got = send(&lb, &[&b[0], &b[1], &b[2]], 3).await;
    assert_eq!(got, [0, 0, 100], "only the healthy instance receives");

    // The API goes away: every call fails, and the last good pool stays in use.
    moto.process.kill();
    let failed = failed_resolutions(&lb);
    let deadline = Instant::now() + Duration::from_secs(30);
    while failed_resolutions(&lb) < failed + 3.0 {
        assert!(Instant::now() < deadline, "no failed resolutions counted:\n{}", lb.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_pool(&lb, &[&b[2]], "the API is down");
    let got = send(&lb, &[&b[0], &b[1], &b[2]], 4).await;
    assert_eq!(got, [0, 0, 100], "delivery goes on with the last good pool");
    assert!(lb.logs().contains("resolution failed; keeping the current pool"), "{}", lb.logs());
    assert!(lb.metric("otelcol_loadbalancer_num_resolutions{resolver=\"aws\",success=\"true\"}") >= 4.0);
}
