//! The reconcile sequence against a mocked API server (tower-test): the happy path's requests,
//! and the error paths — apply failing with 500 or 409, a child owned by someone else, an invalid
//! spec, pruning of children the spec no longer wants, and the leader-election Lease.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MINIMAL, NAMESPACE, SERVICE_REF, UID, lbc};
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use operator::leader::{LeaderElectionConfig, LeaderElector};
use operator::metrics::Metrics;
use operator::reconcile::{Context, error_policy, reconcile};
use operator::{Error, LoadBalancedCollector};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One request the operator sent.
#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    /// Path and query.
    uri: String,
    body: Value,
}

impl Recorded {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
    fn is(&self, method: &Method, path_suffix: &str) -> bool {
        self.method == method && self.path().ends_with(path_suffix)
    }
}

type Responder = Box<dyn Fn(&Recorded) -> Option<(u16, Value)> + Send>;

/// A fake API server: answers with `responder` where it has an answer, otherwise like an empty
/// cluster that accepts everything (lists are empty, gets are 404, patches and posts echo the body).
struct FakeApiServer {
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": code, "reason": reason, "message": message})
}

fn default_answer(request: &Recorded) -> (u16, Value) {
    let segments: Vec<_> = request.path().trim_start_matches('/').split('/').collect();
    // /api/v1/namespaces/NS/KIND or /apis/GROUP/VERSION/namespaces/NS/KIND: a collection.
    let is_collection = segments.get(segments.len().saturating_sub(2)) == Some(&NAMESPACE);
    match request.method {
        Method::GET if is_collection => {
            (200, json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}))
        }
        Method::GET => (404, status(404, "NotFound", "not found")),
        Method::DELETE => (200, status(200, "", "deleted")),
        _ => {
            let mut body = request.body.clone();
            if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.entry("namespace").or_insert(json!(NAMESPACE));
                meta.entry("resourceVersion").or_insert(json!("2"));
            }
            (200, body)
        }
    }
}

impl FakeApiServer {
    fn start(responder: Responder) -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let log = recorded.clone();
        let task = tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().clone();
                let uri = request.uri().to_string();
                let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let request = Recorded { method, uri, body };
                let (code, answer) = responder(&request).unwrap_or_else(|| default_answer(&request));
                log.lock().expect("log").push(request);
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
                    .expect("response");
                send.send_response(response);
            }
        });
        (Client::new(service, NAMESPACE), Self { recorded, task })
    }

    fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("log").clone()
    }
}

fn context(client: Client) -> Arc<Context> {
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter { controller: "otlp-lb-operator".into(), instance: None }),
        client,
        metrics: Metrics::register(&prometheus::Registry::new()).expect("metrics"),
    })
}

async fn run(
    lbc: LoadBalancedCollector,
    responder: Responder,
) -> (Result<kube::runtime::controller::Action, Error>, Vec<Recorded>, Arc<Context>) {
    // Status patches are answered with the whole resource, as the API server does.
    let stored = serde_json::to_value(&lbc).expect("JSON");
    let responder: Responder = Box::new(move |r| {
        responder(r).or_else(|| {
            (r.method == Method::PATCH && r.path().ends_with("/status")).then(|| {
                let mut object = stored.clone();
                object["status"] = r.body["status"].clone();
                (200, object)
            })
        })
    });
    let (client, server) = FakeApiServer::start(responder);
    let ctx = context(client);
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(lbc), ctx.clone()))
        .await
        .expect("reconcile finishes");
    let requests = server.requests();
    server.task.abort();
    (result, requests, ctx)
}

fn status_patch(requests: &[Recorded]) -> &Recorded {
    requests.iter().find(|r| r.is(&Method::PATCH, "/loadbalancedcollectors/demo/status")).expect("a status patch")
}

fn condition<'a>(patch: &'a Recorded, type_: &str) -> &'a Value {
    patch.body["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .expect("condition")
}

fn events(requests: &[Recorded]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter(|r| r.is(&Method::POST, "/events"))
        .map(|r| {
            (r.body["type"].as_str().unwrap_or("").to_string(), r.body["reason"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test]
async fn happy_path_applies_every_child_with_one_field_manager_then_writes_status() {
    let (result, requests, _) = run(lbc(MINIMAL), Box::new(|_| None)).await;
    let action = result.expect("reconciles");
    // Not Ready yet (no backend is): looked at again soon.
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(15)));

    let applied: Vec<_> = requests
        .iter()
        .filter(|r| r.method == Method::PATCH && !r.path().ends_with("/status"))
        .map(|r| r.path().rsplit('/').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/"))
        .collect();
    assert_eq!(
        applied,
        [
            "serviceaccounts/demo-load-balancer",
            "roles/demo-load-balancer",
            "rolebindings/demo-load-balancer",
            "configmaps/demo-backends",
            "services/demo-backends",
            "deployments/demo-backends",
            "configmaps/demo",
            "services/demo",
            "services/demo-peers",
            "deployments/demo",
        ]
    );
    // Two replicas: the token they present to each other is made once, before the pods that mount it.
    let token = requests.iter().position(|r| r.is(&Method::POST, "/secrets")).expect("the peers' token is created");
    assert_eq!(requests[token].body["metadata"]["name"], "demo-peers");
    let token_value = requests[token].body["stringData"]["token"].as_str().expect("a token");
    assert_eq!(token_value.len(), 64, "32 random bytes, hex");
    let pods = requests.iter().position(|r| r.is(&Method::PATCH, "/deployments/demo")).expect("the tier applied");
    assert!(token < pods);
    for patch in requests.iter().filter(|r| r.method == Method::PATCH) {
        assert!(
            patch.uri.contains("fieldManager=otlp-lb-operator") && patch.uri.contains("force=true"),
            "{}",
            patch.uri
        );
    }
    // Children are looked up by the instance's labels before anything is written.
    let lists = requests.iter().filter(|r| r.method == Method::GET && r.uri.contains("labelSelector=")).count();
    assert_eq!(lists, 11, "9 child kinds + the backend EndpointSlices + the instance's pods");
    assert!(requests.iter().any(|r| {
        r.uri.contains("endpointslices?") && r.uri.contains("kubernetes.io%2Fservice-name%3Ddemo-backends")
    }));

    let status = status_patch(&requests);
    assert_eq!(status.body["apiVersion"], "otlp-lb.dev/v1alpha1");
    assert_eq!(status.body["status"]["observedGeneration"], 1);
    assert_eq!(condition(status, "Degraded")["status"], "False");
    assert_eq!(condition(status, "BackendsReady")["reason"], "NoBackendsInRing");
    assert_eq!(status.body["status"]["backends"], json!({"desired": 2, "ready": 0, "inRing": 0}));
    assert_eq!(events(&requests), [("Normal".to_string(), "Created".to_string())]);
}

#[tokio::test]
async fn a_resource_being_deleted_is_left_to_the_garbage_collector() {
    let mut deleting = lbc(MINIMAL);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let (result, requests, _) = run(deleting, Box::new(|_| None)).await;
    assert_eq!(result.expect("no error"), kube::runtime::controller::Action::await_change());
    assert!(requests.is_empty(), "{requests:?}");
}

fn fail_deployment_apply(code: u16, reason: &'static str) -> Responder {
    Box::new(move |r| {
        r.is(&Method::PATCH, "/deployments/demo-backends")
            .then(|| (code, status(code, reason, "the API server said no")))
    })
}

#[tokio::test]
async fn apply_failing_with_500_is_surfaced_and_degrades_the_status() {
    let (result, requests, ctx) = run(lbc(MINIMAL), fail_deployment_apply(500, "InternalError")).await;
    match result {
        Err(Error::Apply { kind: "Deployment", name, source: kube::Error::Api(status) }) => {
            assert_eq!(name, "demo-backends");
            assert_eq!(status.code, 500);
        }
        other => panic!("expected an apply error, got {other:?}"),
    }
    // Nothing after the failed child was applied.
    assert!(!requests.iter().any(|r| r.is(&Method::PATCH, "/deployments/demo")));
    let status = status_patch(&requests);
    assert_eq!(condition(status, "Degraded")["status"], "True");
    assert_eq!(condition(status, "Degraded")["reason"], "ApplyFailed");
    assert_eq!(condition(status, "Ready")["reason"], "Degraded");
    assert_eq!(events(&requests), [("Warning".to_string(), "ApplyFailed".to_string())]);
    assert_eq!(ctx.metrics.failures.with_label_values(&["apply"]).get(), 1);
    assert_eq!(ctx.metrics.reconciliations.get(), 1);
}

#[tokio::test]
async fn apply_failing_with_409_is_surfaced_and_retried_soon() {
    let (result, requests, ctx) = run(lbc(MINIMAL), fail_deployment_apply(409, "Conflict")).await;
    let error = result.expect_err("fails");
    assert!(matches!(&error, Error::Apply { source: kube::Error::Api(s), .. } if s.code == 409), "{error:?}");
    assert_eq!(condition(status_patch(&requests), "Degraded")["reason"], "ApplyFailed");
    let action = error_policy(Arc::new(lbc(MINIMAL)), &error, ctx);
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn a_child_owned_by_someone_else_is_a_conflict_and_is_not_touched() {
    let responder: Responder = Box::new(|r| {
        (r.is(&Method::GET, "/services/demo-backends")).then(|| {
            (
                200,
                json!({
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": {"name": "demo-backends", "namespace": NAMESPACE, "labels": {"app": "theirs"}}
                }),
            )
        })
    });
    let (result, requests, ctx) = run(lbc(MINIMAL), responder).await;
    assert!(
        matches!(&result, Err(Error::ChildConflict { kind: "Service", name }) if name == "demo-backends"),
        "{result:?}"
    );
    assert!(!requests.iter().any(|r| r.is(&Method::PATCH, "/services/demo-backends")));
    let degraded = condition(status_patch(&requests), "Degraded");
    assert_eq!(degraded["reason"], "ChildConflict");
    assert!(degraded["message"].as_str().is_some_and(|m| m.contains("not managed by this LoadBalancedCollector")));
    assert_eq!(events(&requests), [("Warning".to_string(), "ChildConflict".to_string())]);
    assert_eq!(ctx.metrics.failures.with_label_values(&["child_conflict"]).get(), 1);
}

#[tokio::test]
async fn invalid_spec_writes_nothing_but_the_status() {
    let mut invalid = lbc(MINIMAL);
    invalid.spec.backends.config = Some(serde_json::Map::new());
    let (result, requests, ctx) = run(invalid.clone(), Box::new(|_| None)).await;
    let error = result.expect_err("invalid");
    assert!(matches!(error, Error::InvalidSpec(_)));
    let writes: Vec<_> =
        requests.iter().filter(|r| r.method != Method::GET && !r.path().ends_with("/events")).collect();
    assert_eq!(writes.len(), 1, "only the status: {writes:?}");
    assert_eq!(condition(status_patch(&requests), "Degraded")["reason"], "InvalidSpec");
    let action = error_policy(Arc::new(invalid), &error, ctx);
    assert_eq!(action, kube::runtime::controller::Action::requeue(Duration::from_secs(300)));
}

fn owned(kind: &str, name: &str, component: &str) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {
            "name": name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "otlp-lb-operator", "app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": component},
            "ownerReferences": [{"apiVersion": "otlp-lb.dev/v1alpha1", "kind": "LoadBalancedCollector", "name": "demo", "uid": UID, "controller": true}]
        },
        "kindHint": kind
    })
}

fn list(items: Vec<Value>) -> (u16, Value) {
    (200, json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}))
}

#[tokio::test]
async fn children_the_spec_no_longer_wants_are_deleted() {
    // The resource switched from a managed pool to serviceRef and dropped its autoscaler; a
    // foreign Deployment carrying the same labels but no owner reference must survive.
    let mut switched = lbc(SERVICE_REF);
    switched.metadata.name = Some("demo".into());
    let responder: Responder = Box::new(|r| {
        if r.method != Method::GET || !r.uri.contains("labelSelector=") {
            return None;
        }
        let path = r.path();
        if path.ends_with("/deployments") {
            let mut foreign = owned("Deployment", "copied", "backends");
            foreign["metadata"]["ownerReferences"] = json!([]);
            Some(list(vec![
                owned("Deployment", "demo-backends", "backends"),
                owned("Deployment", "demo", "load-balancer"),
                foreign,
            ]))
        } else if path.ends_with("/horizontalpodautoscalers") {
            Some(list(vec![owned("HorizontalPodAutoscaler", "demo", "load-balancer")]))
        } else if path.ends_with("/configmaps") {
            Some(list(vec![owned("ConfigMap", "demo-backends", "backends")]))
        } else {
            None
        }
    });
    let (result, requests, _) = run(switched, responder).await;
    result.expect("reconciles");
    let deleted: Vec<_> =
        requests.iter().filter(|r| r.method == Method::DELETE).map(|r| r.path().to_string()).collect();
    assert_eq!(
        deleted,
        [
            format!("/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/demo"),
            format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/demo-backends"),
            format!("/api/v1/namespaces/{NAMESPACE}/configmaps/demo-backends"),
        ]
    );
    // Children already known to be ours are applied without a lookup; unknown ones are looked up.
    assert!(!requests.iter().any(|r| r.is(&Method::GET, "/deployments/demo")));
    assert!(requests.iter().any(|r| r.is(&Method::GET, "/services/demo")));
    // The load balancer now resolves the referenced Service.
    let lb_config = requests.iter().find(|r| r.is(&Method::PATCH, "/configmaps/demo")).expect("lb configmap");
    assert!(
        lb_config.body["data"]["config.yaml"]
            .as_str()
            .is_some_and(|c| c.contains("service: external-gateway.observability"))
    );
    let reasons: Vec<_> = events(&requests).into_iter().map(|(_, reason)| reason).collect();
    assert_eq!(reasons, ["Created", "Deleted"]);
    let deleted_note = requests
        .iter()
        .filter(|r| r.is(&Method::POST, "/events"))
        .find(|r| r.body["reason"] == "Deleted")
        .map(|r| r.body["note"].clone());
    assert_eq!(
        deleted_note,
        Some(json!(
            "deleted HorizontalPodAutoscaler demo, Deployment demo-backends, ConfigMap demo-backends: the spec no longer asks for them"
        ))
    );
}

#[tokio::test]
async fn ready_endpoints_fill_the_ring_count() {
    let responder: Responder = Box::new(|r| {
        (r.method == Method::GET && r.path().ends_with("/endpointslices")).then(|| {
            (
                200,
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {}, "items": [{
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                    "metadata": {"name": "demo-backends-abc", "namespace": NAMESPACE},
                    "ports": [{"name": "otlp-grpc", "port": 4317}],
                    "endpoints": [
                        {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                        {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                        {"addresses": ["10.0.0.3"], "conditions": {"ready": false}}
                    ]
                }]}),
            )
        })
    });
    let (result, requests, _) = run(lbc(MINIMAL), responder).await;
    result.expect("reconciles");
    assert_eq!(status_patch(&requests).body["status"]["backends"]["inRing"], 2);
}

#[tokio::test]
async fn status_write_failure_is_an_error() {
    let responder: Responder =
        Box::new(|r| r.path().ends_with("/status").then(|| (500, status(500, "InternalError", "etcd is sad"))));
    let (result, _, ctx) = run(lbc(MINIMAL), responder).await;
    assert!(matches!(result, Err(Error::Status(_))), "{result:?}");
    assert_eq!(ctx.metrics.failures.with_label_values(&["status"]).get(), 1);
}

fn elector(client: Client) -> LeaderElector {
    LeaderElector::new(client, LeaderElectionConfig::new(NAMESPACE, "otlp-lb-operator-leader", "pod-a"))
}

#[tokio::test]
async fn leader_creates_a_missing_lease_and_loses_the_race_on_409() {
    let (client, server) = FakeApiServer::start(Box::new(|_| None));
    assert!(elector(client).try_acquire_or_renew().await.expect("no API error"));
    let requests = server.requests();
    let create = requests.iter().find(|r| r.method == Method::POST).expect("lease created");
    assert!(create.path().ends_with(&format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases")));
    assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);

    let (client, _server) = FakeApiServer::start(Box::new(|r| {
        (r.method == Method::POST).then(|| (409, status(409, "AlreadyExists", "someone was faster")))
    }));
    assert!(!elector(client).try_acquire_or_renew().await.expect("no API error"));
}

#[tokio::test]
async fn leader_waits_for_a_live_lease_and_takes_an_expired_one() {
    let lease = |renewed: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "otlp-lb-operator-leader", "namespace": NAMESPACE, "resourceVersion": "7"},
               "spec": {"holderIdentity": "pod-b", "leaseDurationSeconds": 15, "renewTime": renewed, "leaseTransitions": 3}})
    };
    let live = k8s_openapi::jiff::Timestamp::now().to_string();
    let (client, server) =
        FakeApiServer::start(Box::new(move |r| (r.method == Method::GET).then(|| (200, lease(&live)))));
    assert!(!elector(client).try_acquire_or_renew().await.expect("no API error"));
    assert!(server.requests().iter().all(|r| r.method == Method::GET), "a live lease is left alone");

    let (client, server) = FakeApiServer::start(Box::new(move |r| {
        (r.method == Method::GET).then(|| (200, lease("2020-01-01T00:00:00.000000Z")))
    }));
    assert!(elector(client).try_acquire_or_renew().await.expect("no API error"));
    let requests = server.requests();
    let replace = requests.iter().find(|r| r.method == Method::PUT).expect("lease replaced");
    assert_eq!(replace.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(replace.body["spec"]["leaseTransitions"], 4);
    assert_eq!(replace.body["metadata"]["resourceVersion"], "7", "optimistic concurrency");
}

#[tokio::test]
async fn run_takes_the_lease_starts_controllers_and_stops_on_shutdown() {
    let (client, server) = FakeApiServer::start(Box::new(|_| None));
    let config = operator::Config {
        namespaces: vec![NAMESPACE.into()],
        metrics_address: "127.0.0.1:0".parse().expect("address"),
        leader_election: Some(LeaderElectionConfig::new(NAMESPACE, "otlp-lb-operator-leader", "pod-a")),
        instance: Some("pod-a".into()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(operator::run_with_client(client, config, async move {
        let _ = stopped.await;
    }));
    // Wait until the controllers watch LoadBalancedCollectors in the namespace.
    let watched = format!("/apis/otlp-lb.dev/v1alpha1/namespaces/{NAMESPACE}/loadbalancedcollectors");
    for _ in 0..100 {
        if server.requests().iter().any(|r| r.path() == watched) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops").expect("joins");
    result.expect("a clean shutdown");
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.is(&Method::POST, "/leases")), "lease created before anything else");
    let first_lbc_request = requests.iter().position(|r| r.path() == watched).expect("LoadBalancedCollectors watched");
    let lease_created = requests.iter().position(|r| r.is(&Method::POST, "/leases")).expect("lease");
    assert!(lease_created < first_lbc_request, "controllers start only once leader");
    server.task.abort();
}

fn backend_slices(addresses: &[&str]) -> Responder {
    let endpoints: Vec<Value> =
        addresses.iter().map(|a| json!({"addresses": [a], "conditions": {"ready": true}})).collect();
    let list = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {"resourceVersion": "1"},
        "items": [{
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "demo-backends-abc", "namespace": NAMESPACE},
            "ports": [{"port": 4317}], "endpoints": endpoints,
        }],
    });
    Box::new(move |r| (r.method == Method::GET && r.path().ends_with("/endpointslices")).then(|| (200, list.clone())))
}

#[tokio::test]
async fn a_change_of_the_rings_members_bumps_its_version_and_publishes_a_rebalanced_event() {
    // First sight of the ring: version 1, no rebalance.
    let (result, requests, _) = run(lbc(MINIMAL), backend_slices(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])).await;
    result.expect("reconciles");
    let ring = status_patch(&requests).body["status"]["ring"].clone();
    assert_eq!(ring["version"], 1);
    assert_eq!(ring["members"], json!(["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"]));
    assert!(!events(&requests).iter().any(|(_, reason)| reason == "Rebalanced"));

    // The pool grows to 4: version 2, and an event that says what moved.
    let mut grown = lbc(MINIMAL);
    grown.status = serde_json::from_value(json!({"observedGeneration": 1, "ring": ring})).expect("status");
    let (result, requests, _) = run(grown, backend_slices(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"])).await;
    result.expect("reconciles");
    let status = &status_patch(&requests).body["status"];
    assert_eq!(status["ring"]["version"], 2);
    assert!(status["ring"]["lastRebalanceTime"].is_string());
    let note = requests
        .iter()
        .filter(|r| r.is(&Method::POST, "/events"))
        .find(|r| r.body["reason"] == "Rebalanced")
        .map(|r| r.body["note"].as_str().unwrap_or_default().to_string())
        .expect("a Rebalanced event");
    assert_eq!(note, "ring version 1 -> 2: backends 3 -> 4 (added 10.0.0.4:4317); 25.0% of keys moved");
}

#[tokio::test]
async fn a_durable_queue_with_a_claim_per_replica_makes_the_tier_a_stateful_set_and_prunes_the_deployment() {
    let spec = format!(
        "{MINIMAL}  loadBalancer:\n    durableQueue:\n      enabled: true\n      storage:\n        volumeClaimTemplate:\n          accessModes: [ReadWriteOnce]\n          resources: {{requests: {{storage: 1Gi}}}}\n"
    );
    // An earlier Deployment of the tier is still there.
    let old = json!({
        "apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {"resourceVersion": "1"},
        "items": [{"metadata": {"name": "demo", "namespace": NAMESPACE,
            "ownerReferences": [{"apiVersion": "otlp-lb.dev/v1alpha1", "kind": "LoadBalancedCollector",
                "name": "demo", "uid": UID, "controller": true}]}}],
    });
    let responder: Responder = Box::new(move |r| {
        (r.method == Method::GET && r.path().ends_with("/deployments") && r.uri.contains("labelSelector="))
            .then(|| (200, old.clone()))
    });
    let (result, requests, _) = run(lbc(&spec), responder).await;
    result.expect("reconciles");
    let set = requests.iter().find(|r| r.is(&Method::PATCH, "/statefulsets/demo")).expect("the StatefulSet applied");
    assert_eq!(set.body["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "wal");
    let pod = &set.body["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    assert_eq!(pod["containers"][0]["volumeMounts"][1]["mountPath"], "/var/lib/otlp-lb");
    assert!(requests.iter().any(|r| r.is(&Method::DELETE, "/deployments/demo")), "the old Deployment is pruned");
    let config = requests
        .iter()
        .find(|r| r.is(&Method::PATCH, "/configmaps/demo"))
        .and_then(|r| r.body["data"]["config.yaml"].as_str().map(String::from))
        .expect("the data plane's config");
    let parsed = dataplane::config::Config::parse(&config).expect("a valid data plane config");
    assert_eq!(parsed.loadbalancing.sending_queue.storage.as_deref(), Some("/var/lib/otlp-lb"));
}
