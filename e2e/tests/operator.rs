//! The operator on the real control plane and node: the Helm chart (`charts/otlp-lb`) installs the
//! CRD, RBAC and the operator Deployment (the `otlp-lb-operator` image of `make images`, two
//! replicas with leader election, talking to the apiserver with its ServiceAccount token);
//! LoadBalancedCollectors then become a backend pool, the otlp-lb data plane with the k8s
//! resolver, and the RBAC between them.
//!
//! * `operator_helm_install_and_traces`: install, Ready status, telemetrygen's traces through the
//!   load balancer's Service: every span once, each trace on exactly one backend, every backend used.
//! * `operator_scale_and_garbage_collection`: `kubectl scale lbc --replicas 5` → 5 backends
//!   desired/ready/inRing, `/debug/pool` of every load-balancer pod lists 5; deleting the resource
//!   lets kube-controller-manager's garbage collector remove every child.
//! * `operator_validation_and_rbac`: invalid resources are refused by `kubectl apply` with the CEL
//!   message; the data plane's ServiceAccount may list EndpointSlices and not read Secrets
//!   (`kubectl auth can-i --as`, and from the load-balancer pod's netns with its own token).
//! * `operator_samples`: every `config/samples/*.yaml` is applied and each of its resources
//!   reaches Ready.
//! * `operator_durable_queue_survives_sigkill`: `loadBalancer.durableQueue` on a claim per replica (a hostPath
//!   PersistentVolume; the tier becomes a StatefulSet); with no backend
//!   to deliver to, every span loadgen sends is acknowledged from the write-ahead log; the data plane is
//!   SIGKILLed under load, restarts in its pod and replays the log; the pod is then deleted and its
//!   replacement replays the same claim; once backends are back, every acknowledged span is
//!   in a backend's file.
//!
//! The backends write what they receive to their stdout (OTLP/JSON lines), which the test reads from
//! their container logs. The test cluster has no registry: LoadBalancedCollectors that name no
//! Collector image get the one of `make e2e-images` ([`e2e::fit`]).
//!
//! * `operator_reports_a_missing_image`: a LoadBalancedCollector whose backend image does not exist
//!   reports the pod's waiting reason (ErrImageNeverPull) in its conditions and a Warning event.
//!
//! Needs root, `make tools` and `make images e2e-images`; fails (never skips) without them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::Cluster;
use e2e::chart::install_operator;
use e2e::lbc::{
    debug_pool, kubectl, kubectl_ok, lb_pods, lbc_api, local_collector, wait_lbc_ready, wait_pool_size, write_run_file,
};
use e2e::otlp_json::{self, Distribution};
use e2e::scenario::{fixture, image_vars};
use e2e::telemetrygen::Traces;
use e2e::tools;
use e2e::wait::Check;
use serde_json::Value;

/// Namespace of the LoadBalancedCollectors under test.
const NS: &str = "default";

/// Every binary these tests run; a missing one fails the test with what to run.
fn require() -> Result<()> {
    tools::require(&[tools::TELEMETRYGEN, tools::KUBECTL, tools::HELM])?;
    tools::otlp_lb_tools_bin()?;
    image_vars()?;
    Ok(())
}

/// Runs `body` against a fresh cluster, bounded by `limit`; tears the cluster down either way.
async fn with_cluster<T, F>(name: &str, limit: Duration, body: F) -> Result<T>
where
    F: AsyncFnOnce(&Cluster) -> Result<T>,
{
    e2e::init_logging();
    require()?;
    let t0 = Instant::now();
    let cluster = Cluster::start().await?;
    let res = match tokio::time::timeout(limit, body(&cluster)).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("{name} did not finish within {limit:?}")),
    };
    let res = cluster.finish(res).await;
    eprintln!("{name}: {:.1}s", t0.elapsed().as_secs_f64());
    res
}

/// Applies the `traces` fixture (backends writing what they receive to their stdout) with the
/// real kubectl and waits for it to be Ready with 3 backends.
async fn apply_traces_fixture(cluster: &Cluster) -> Result<()> {
    let yaml = local_collector(&fixture("operator/traces.yaml")?)?;
    let file = write_run_file(cluster, "traces.yaml", &yaml)?;
    kubectl_ok(cluster, &["apply", "-n", NS, "-f", &file.to_string_lossy()]).await?;
    let t0 = Instant::now();
    let status = wait_lbc_ready(cluster, NS, "traces", Some(3), Duration::from_secs(120)).await?;
    tracing::info!("traces Ready after {:.1}s: {status}", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Spans each running backend pod of `traces` wrote to its stdout so far, by pod name.
async fn backend_spans(cluster: &Cluster) -> Result<BTreeMap<String, Vec<otlp_json::SpanKey>>> {
    let pods = cluster.pods(NS, "app.kubernetes.io/instance=traces,app.kubernetes.io/component=backends").await?;
    let mut spans = BTreeMap::new();
    for p in pods.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = p.metadata.name.unwrap_or_default();
        let Ok(log) = cluster.logs(NS, &name) else { continue };
        spans.insert(name, otlp_json::spans_in_log(&log));
    }
    Ok(spans)
}

/// What the backends of `traces` received so far.
async fn received(cluster: &Cluster) -> Result<Distribution> {
    Ok(Distribution::of(&backend_spans(cluster).await?))
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_helm_install_and_traces() -> Result<()> {
    with_cluster("operator_helm_install_and_traces", Duration::from_secs(360), async |cluster| {
        install_operator(cluster).await?;
        apply_traces_fixture(cluster).await?;

        // The ring must be complete before sending, or the first traces go to fewer backends.
        wait_pool_size(cluster, NS, "traces", 3, Duration::from_secs(30)).await?;
        let lb_pod = lb_pods(cluster, NS, "traces").await?.into_iter().next().context("no load-balancer pod")?;
        // Clients send to the load balancer's Service, as SDKs in the cluster do.
        let lb_ip = cluster.service_ip(NS, "traces").await?;

        let load = Traces { workers: 2, traces_per_worker: 100, child_spans: 4 };
        let out = cluster
            .exec_on_host(
                &tools::tool(tools::TELEMETRYGEN)?,
                &load.args(&format!("{lb_ip}:4317")),
                Duration::from_secs(120),
            )
            .await?
            .check("telemetrygen")?;
        load.check_output(&format!("{}\n{}", out.stdout, out.stderr))?;

        let expected = load.expected_spans();
        cluster
            .wait_for(&format!("{expected} spans to reach the backends"), Duration::from_secs(60), || async {
                let d = received(cluster).await?;
                Ok(if d.total_spans >= expected { Check::Done(()) } else { Check::Pending(d.to_string()) })
            })
            .await
            .with_context(|| cluster.logs(NS, &lb_pod).map(|l| e2e::process::tail(&l, 30)).unwrap_or_default())?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let d = received(cluster).await?;
        eprintln!("operator-managed pool: {d}");
        d.check(expected, load.expected_traces(), 3)?;
        Ok(())
    })
    .await
}

/// The children of LoadBalancedCollector `traces`, by kind (`kubectl get -o name`).
const CHILD_KINDS: &str = "deployments.apps,services,configmaps,serviceaccounts,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io";

async fn children(cluster: &Cluster, name: &str) -> Result<Vec<String>> {
    let out = kubectl_ok(
        cluster,
        &["get", "-n", NS, CHILD_KINDS, "-l", &format!("app.kubernetes.io/instance={name}"), "-o", "name"],
    )
    .await?;
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_scale_and_garbage_collection() -> Result<()> {
    with_cluster("operator_scale_and_garbage_collection", Duration::from_secs(360), async |cluster| {
        install_operator(cluster).await?;
        apply_traces_fixture(cluster).await?;

        // Scale through the scale subresource with the real kubectl.
        let t0 = Instant::now();
        kubectl_ok(cluster, &["scale", "-n", NS, "lbc", "traces", "--replicas", "5"]).await?;
        let status = wait_lbc_ready(cluster, NS, "traces", Some(5), Duration::from_secs(120)).await?;
        tracing::info!("scaled to 5 in {:.1}s: {status}", t0.elapsed().as_secs_f64());
        wait_pool_size(cluster, NS, "traces", 5, Duration::from_secs(30)).await?;
        eprintln!("scale 3 -> 5: status and /debug/pool at 5 after {:.1}s", t0.elapsed().as_secs_f64());
        check_rebalance_is_reported(cluster).await?;

        // Every child exists, then the garbage collector removes them all.
        let want: Vec<String> = [
            "configmap/traces",
            "configmap/traces-backends",
            "deployment.apps/traces",
            "deployment.apps/traces-backends",
            "role.rbac.authorization.k8s.io/traces-load-balancer",
            "rolebinding.rbac.authorization.k8s.io/traces-load-balancer",
            "service/traces",
            "service/traces-backends",
            "serviceaccount/traces-load-balancer",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let have = children(cluster, "traces").await?;
        for w in &want {
            ensure!(have.contains(w), "child {w} missing; children: {have:?}");
        }
        let t0 = Instant::now();
        kubectl_ok(cluster, &["delete", "-n", NS, "lbc", "traces", "--wait=true"]).await?;
        cluster
            .wait_for("the garbage collector to delete every child of traces", Duration::from_secs(90), || async {
                let left = children(cluster, "traces").await?;
                let pods = cluster.pods(NS, "app.kubernetes.io/instance=traces").await?;
                Ok(if left.is_empty() && pods.is_empty() {
                    Check::Done(())
                } else {
                    Check::Pending(format!("left: {left:?}, {} pods", pods.len()))
                })
            })
            .await?;
        eprintln!("garbage collection: every child gone {:.1}s after the delete", t0.elapsed().as_secs_f64());
        Ok(())
    })
    .await
}

/// After the pool of `traces` grew 3 -> 5: `kubectl get lbc -o wide` shows the ring's version and the time of
/// the last rebalance, a Rebalanced event says what moved (the endpoints may join one at a time: the last event
/// ends at 5 backends), and `kubectl describe` shows both.
async fn check_rebalance_is_reported(cluster: &Cluster) -> Result<()> {
    let events = cluster
        .wait_for("a Rebalanced event of traces ending at 5 backends", Duration::from_secs(60), || async {
            let out = kubectl_ok(
                cluster,
                &["get", "events", "-n", NS, "--field-selector", "reason=Rebalanced,involvedObject.name=traces"],
            )
            .await?;
            Ok(if out.contains(" -> 5 (added ") { Check::Done(out) } else { Check::Pending(out) })
        })
        .await?;
    ensure!(events.contains("% of keys moved"), "the event says how many keys moved: {events}");
    let wide = kubectl_ok(cluster, &["get", "lbc", "traces", "-n", NS, "-o", "wide"]).await?;
    let mut lines = wide.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let column = |name: &str| header.iter().position(|h| *h == name).and_then(|i| row.get(i).copied());
    let version: i64 = column("RING").and_then(|v| v.parse().ok()).context(format!("no RING column: {wide}"))?;
    ensure!(version >= 2, "the ring changed at least once: {wide}");
    ensure!(column("REBALANCED").is_some_and(|v| v != "<none>"), "no REBALANCED time: {wide}");
    let describe = kubectl_ok(cluster, &["describe", "lbc", "traces", "-n", NS]).await?;
    for want in ["Ring:", "Last Rebalance:", "Last Rebalance Time:", "Rebalanced", "Conditions:"] {
        ensure!(describe.contains(want), "kubectl describe lacks {want:?}:\n{describe}");
    }
    eprintln!("rebalance reported: ring version {version}; {}", events.lines().last().unwrap_or_default());
    Ok(())
}

/// A small LoadBalancedCollector whose pool writes nowhere (for the RBAC checks).
const SMALL: &str = r#"
apiVersion: otlp-lb.dev/v1alpha1
kind: LoadBalancedCollector
metadata:
  name: small
spec:
  loadBalancer: {replicas: 1}
  backends:
    replicas: 1
    config:
      exporters:
        nop: {}
      service:
        pipelines:
          traces: {receivers: [otlp], exporters: [nop]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_validation_and_rbac() -> Result<()> {
    with_cluster(
        "operator_validation_and_rbac",
        Duration::from_secs(300),
        async |cluster| {
            install_operator(cluster).await?;

            // Invalid resources: kubectl apply fails with the rule's message.
            for (file, message) in [
                (
                    "invalid-config-and-service-ref.yaml",
                    "set exactly one of backends.config",
                ),
                (
                    "invalid-duration.yaml",
                    "loadBalancer.timeout must be a duration such as 500ms, 5s, 1m or 1h",
                ),
                (
                    "invalid-replicas.yaml",
                    "spec.backends.replicas: Invalid value: -1: spec.backends.replicas in body should be greater than or equal to 0",
                ),
            ] {
                let path = tools::workspace_root()
                    .join("e2e/fixtures/operator")
                    .join(file);
                let out = kubectl(cluster, &["apply", "-n", NS, "-f", &path.to_string_lossy()])
                    .await?;
                ensure!(
                    !out.success(),
                    "kubectl apply -f {file} was accepted: {}",
                    out.stdout
                );
                ensure!(
                    out.stderr.contains(message),
                    "kubectl apply -f {file}: stderr lacks {message:?}:\n{}",
                    out.stderr
                );
                eprintln!("{file} refused: {}", out.stderr.trim());
            }

            // The data plane's identity: EndpointSlices yes, Secrets no.
            let file = write_run_file(cluster, "small.yaml", &local_collector(SMALL)?)?;
            kubectl_ok(cluster, &["apply", "-n", NS, "-f", &file.to_string_lossy()]).await?;
            wait_lbc_ready(cluster, NS, "small", Some(1), Duration::from_secs(120)).await?;
            let sa = format!("--as=system:serviceaccount:{NS}:small-load-balancer");
            for (verb, resource, ns, want) in [
                ("list", "endpointslices.discovery.k8s.io", NS, "yes"),
                ("watch", "endpointslices.discovery.k8s.io", NS, "yes"),
                ("get", "secrets", NS, "no"),
                ("list", "secrets", NS, "no"),
                ("list", "endpointslices.discovery.k8s.io", "kube-system", "no"),
                ("create", "endpointslices.discovery.k8s.io", NS, "no"),
            ] {
                let out = kubectl(cluster, &["auth", "can-i", &sa, "-n", ns, verb, resource]).await?;
                ensure!(
                    out.stdout.trim() == want,
                    "can-i {verb} {resource} -n {ns} as small-load-balancer: {:?} (stderr {:?}), want {want}",
                    out.stdout.trim(),
                    out.stderr.trim()
                );
            }

            // The same from inside the load-balancer pod, with the token the kubelet mounted, through the
            // `kubernetes` Service.
            let pod = lb_pods(cluster, NS, "small")
                .await?
                .into_iter()
                .next()
                .context("no load-balancer pod")?;
            let api_vol = cluster.service_account_dir(NS, &pod)?;
            let token = std::fs::read_to_string(api_vol.join("token"))?;
            let kubectl_bin = tools::tool(tools::KUBECTL)?;
            for (verb, resource, want) in [
                ("list", "endpointslices.discovery.k8s.io", "yes"),
                ("get", "secrets", "no"),
            ] {
                let args = vec![
                    format!("--server={}", cluster.api_server_for_pods()),
                    format!("--certificate-authority={}", api_vol.join("ca.crt").display()),
                    format!("--token={}", token.trim()),
                    "auth".into(),
                    "can-i".into(),
                    "-n".into(),
                    NS.into(),
                    verb.into(),
                    resource.into(),
                ];
                let out = cluster
                    .exec_in_pod_netns(NS, &pod, &kubectl_bin, &args, Duration::from_secs(30))
                    .await?;
                ensure!(
                    out.stdout.trim() == want,
                    "from pod {pod}: can-i {verb} {resource}: {:?} (stderr {:?}), want {want}",
                    out.stdout.trim(),
                    out.stderr.trim()
                );
            }
            // And the real thing: the pod's token lists EndpointSlices and is refused Secrets.
            let get = |what: &'static str| {
                vec![
                    format!("--server={}", cluster.api_server_for_pods()),
                    format!("--certificate-authority={}", api_vol.join("ca.crt").display()),
                    format!("--token={}", token.trim()),
                    "get".to_string(),
                    "-n".into(),
                    NS.into(),
                    what.into(),
                ]
            };
            cluster
                .exec_in_pod_netns(NS, &pod, &kubectl_bin, &get("endpointslices"), Duration::from_secs(30))
                .await?
                .check("kubectl get endpointslices with the load balancer's token")?;
            let out = cluster
                .exec_in_pod_netns(NS, &pod, &kubectl_bin, &get("secrets"), Duration::from_secs(30))
                .await?;
            ensure!(
                !out.success() && out.stderr.contains("Forbidden"),
                "kubectl get secrets with the load balancer's token: exit {}, stderr {:?}",
                out.code(),
                out.stderr
            );
            Ok(())
        },
    )
    .await
}

/// The LoadBalancedCollectors of a sample file: their names and, when the load balancer is
/// autoscaled, its `minReplicas`.
fn lbc_names(yaml: &str) -> Result<Vec<(String, Option<i64>)>> {
    Ok(e2e::apply::parse_yaml(yaml)?
        .into_iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "LoadBalancedCollector"))
        .filter_map(|o| {
            let min = o.data["spec"]["loadBalancer"]["autoscaling"]["minReplicas"].as_i64();
            o.metadata.name.map(|n| (n, min))
        })
        .collect())
}

/// Waits until the HorizontalPodAutoscaler (kube-controller-manager's, no metrics needed for
/// this) has raised the load balancer to `min` replicas, all ready, as the status reports.
async fn wait_lb_autoscaled(cluster: &Cluster, name: &str, min: i64) -> Result<Value> {
    let api = lbc_api(cluster, NS);
    cluster
        .wait_for(
            &format!("the autoscaler to run {min} load-balancer replicas of {name}"),
            Duration::from_secs(90),
            || {
                let api = api.clone();
                async move {
                    let lbc = api.get(name).await?;
                    let lb = &lbc.data["status"]["loadBalancer"];
                    let (desired, ready) = (lb["desired"].as_i64().unwrap_or(0), lb["ready"].as_i64().unwrap_or(0));
                    Ok(if desired >= min && ready == desired {
                        Check::Done(lbc.data["status"].clone())
                    } else {
                        Check::Pending(format!("loadBalancer {lb}"))
                    })
                }
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_samples() -> Result<()> {
    with_cluster("operator_samples", Duration::from_secs(600), async |cluster| {
        install_operator(cluster).await?;
        let dir = tools::workspace_root().join("config/samples");
        let mut samples: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        samples.sort();
        ensure!(samples.len() >= 5, "expected the 5 samples in {}", dir.display());
        let mut failures = Vec::new();
        for sample in &samples {
            let t0 = Instant::now();
            let file = sample.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(sample)?;
            let names = lbc_names(&text)?;
            ensure!(!names.is_empty(), "{file} has no LoadBalancedCollector");
            let path = write_run_file(cluster, &file, &local_collector(&text)?)?.to_string_lossy().into_owned();
            kubectl_ok(cluster, &["apply", "-n", NS, "-f", &path]).await?;
            let mut ok = true;
            for (name, min) in &names {
                match wait_lbc_ready(cluster, NS, name, None, Duration::from_secs(120)).await {
                    Ok(status) => {
                        eprintln!("sample {file}: {name} Ready after {:.1}s: {status}", t0.elapsed().as_secs_f64())
                    }
                    Err(e) => {
                        ok = false;
                        failures.push(format!("{file}: {name}: {e:#}"));
                        continue;
                    }
                }
                if let Some(min) = *min {
                    match wait_lb_autoscaled(cluster, name, min).await {
                        Ok(status) => eprintln!(
                            "sample {file}: {name} autoscaled to minReplicas {min} after {:.1}s: {}",
                            t0.elapsed().as_secs_f64(),
                            status["loadBalancer"]
                        ),
                        Err(e) => {
                            ok = false;
                            failures.push(format!("{file}: {name}: {e:#}"));
                        }
                    }
                }
            }
            if !ok {
                // Keep the evidence (backend logs) for the report, then go on with the next sample.
                for p in cluster.pods(NS, "app.kubernetes.io/managed-by=otlp-lb-operator").await? {
                    let n = p.metadata.name.unwrap_or_default();
                    if let Ok(l) = cluster.logs(NS, &n) {
                        eprintln!("{}", e2e::process::tail(&l, 15));
                    }
                }
            }
            // Delete before the next sample, so that one sample's pods do not slow the next one.
            kubectl_ok(cluster, &["delete", "-n", NS, "-f", &path, "--wait=true"]).await?;
            cluster
                .wait_for(&format!("the pods of {file} to be gone"), Duration::from_secs(90), || async {
                    let n = cluster.pods(NS, "").await?.len();
                    Ok(if n == 0 { Check::Done(()) } else { Check::Pending(format!("{n} pods left")) })
                })
                .await?;
        }
        if !failures.is_empty() {
            bail!("samples not Ready:\n{}", failures.join("\n"));
        }
        Ok(())
    })
    .await
}

/// Pids of the data plane's processes on this host (`otlp-lb`, not `otlp-lb-operator` or `otlp-lb-tools`).
fn data_plane_pids() -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if Path::new(&*String::from_utf8_lossy(argv0)).file_name().is_some_and(|n| n == "otlp-lb") {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// `<trace id> <items>` lines of loadgen's `--record` file.
fn recorded(path: &Path) -> Result<BTreeMap<String, usize>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (id, n) = l.split_once(' ').with_context(|| format!("record line {l:?}"))?;
            Ok((id.to_string(), n.trim().parse().with_context(|| format!("record line {l:?}"))?))
        })
        .collect()
}

/// Distinct spans per trace id that the backends of `traces` wrote so far.
async fn spans_per_trace(cluster: &Cluster) -> Result<BTreeMap<String, usize>> {
    let mut spans = std::collections::BTreeSet::new();
    for keys in backend_spans(cluster).await?.into_values() {
        spans.extend(keys.into_iter().map(|s| (s.trace_id, s.span_id)));
    }
    let mut per_trace = BTreeMap::new();
    for (trace, _) in spans {
        *per_trace.entry(trace).or_insert(0) += 1;
    }
    Ok(per_trace)
}

/// A hostPath PersistentVolume of 1Gi in the run directory, for the durable queue's claim; the
/// directory is writable by the data plane's user, as a provisioned volume would be.
fn wal_volume(cluster: &Cluster) -> Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = cluster.run_dir().join("wal-volume");
    std::fs::create_dir_all(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
    Ok(format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: wal-volume}}\nspec:\n  capacity: {{storage: 1Gi}}\n  \
         accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  storageClassName: manual\n  \
         hostPath: {{path: {}, type: DirectoryOrCreate}}\n",
        path.display()
    ))
}

/// The load-balancer pod of `traces` once it runs with the durable queue's volume and `backends` in its pool.
async fn durable_pod(cluster: &Cluster, backends: usize) -> Result<String> {
    let what = format!("one load-balancer pod with the durable queue's volume and {backends} backends");
    cluster
        .wait_for(&what, Duration::from_secs(120), || async {
            let pods = lb_pods(cluster, NS, "traces").await?;
            let [pod] = pods.as_slice() else { return Ok(Check::Pending(format!("pods {pods:?}"))) };
            let Ok(ip) = cluster.pod_ip(NS, pod) else { return Ok(Check::Pending(format!("{pod} not run"))) };
            Ok(match debug_pool(ip).await {
                Ok(b) if b.len() == backends => Check::Done(pod.clone()),
                Ok(b) => Check::Pending(format!("{pod}: pool {b:?}")),
                Err(e) => Check::Pending(format!("{pod}: {e:#}")),
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_durable_queue_survives_sigkill() -> Result<()> {
    const SPANS: u64 = 5000;
    with_cluster("operator_durable_queue_survives_sigkill", Duration::from_secs(420), async |cluster| {
        install_operator(cluster).await?;
        apply_traces_fixture(cluster).await?;
        cluster.apply_yaml(&wal_volume(cluster)?).await?;
        let claim = r#"{"storageClassName":"manual","accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}"#;
        let patch = format!(
            r#"{{"spec":{{"loadBalancer":{{"replicas":1,"durableQueue":{{"enabled":true,"fsync":"always","storage":{{"volumeClaimTemplate":{claim}}}}}}}}}}}"#
        );
        kubectl_ok(cluster, &["patch", "lbc", "traces", "-n", NS, "--type", "merge", "-p", &patch]).await?;
        // The tier becomes a StatefulSet whose pod mounts the claim; the Deployment goes.
        let pod = durable_pod(cluster, 3).await?;
        ensure!(pod == "traces-0", "the StatefulSet's pod, not {pod}");
        let kinds = kubectl_ok(cluster, &["get", "-n", NS, "statefulsets,deployments", "-o", "name"]).await?;
        ensure!(kinds.contains("statefulset.apps/traces") && !kinds.contains("deployment.apps/traces\n"), "{kinds}");
        let claims = kubectl_ok(cluster, &["get", "pvc", "-n", NS, "wal-traces-0", "-o", "jsonpath={.status.phase}"]).await?;
        ensure!(claims == "Bound", "the claim wal-traces-0 is {claims}");

        // No backend: nothing acknowledged can be delivered before the kill.
        kubectl_ok(cluster, &["scale", "-n", NS, "lbc", "traces", "--replicas", "0"]).await?;
        let pod = durable_pod(cluster, 0).await?;
        let ip = cluster.pod_ip(NS, &pod)?;

        // The load, with the data plane SIGKILLed while it runs: the pod restarts it and it replays its log;
        // loadgen retries what was in flight.
        let record = cluster.run_dir().join("durable-loadgen.txt");
        let args: Vec<String> = [
            "loadgen", "--endpoint", &format!("{ip}:4317"), "--traces", &(SPANS / 10).to_string(),
            "--spans-per-trace", "10", "--rate", "1000", "--connections", "2", "--seed", "11", "--retry",
            "--retry-max-elapsed", "60s", "--report-json", "--quiet", "--record", &record.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let loadgen = tools::otlp_lb_tools_bin()?;
        let load = cluster.exec_on_host(&loadgen, &args, Duration::from_secs(90));
        let kill = async {
            // Kill once part of the load is acknowledged: the log then holds records no backend has.
            cluster
                .wait_for("the data plane to acknowledge 1000 spans", Duration::from_secs(30), || async {
                    let metrics = SocketAddr::from((ip, 8888));
                    let (_, body) = e2e::probe::http_get(metrics, "/metrics", &[], Duration::from_secs(5)).await?;
                    let accepted: f64 = body
                        .lines()
                        .filter(|l| l.starts_with("otelcol_receiver_accepted_spans{"))
                        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                        .sum();
                    Ok(if accepted >= 1000.0 { Check::Done(()) } else { Check::Pending(format!("{accepted}")) })
                })
                .await?;
            let pids = data_plane_pids()?;
            ensure!(pids.len() == 1, "expected one otlp-lb process, found {pids:?}");
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), nix::sys::signal::Signal::SIGKILL)?;
            cluster
                .wait_for("the data plane to restart in its pod and replay its log", Duration::from_secs(60), || async {
                    let log = cluster.logs(NS, &pod)?;
                    let replays = log.lines().filter(|l| l.contains("WAL: records to replay")).count();
                    let alive = data_plane_pids()?.iter().any(|p| *p != pids[0]);
                    Ok(if replays >= 1 && alive {
                        Check::Done(())
                    } else {
                        Check::Pending(format!("alive {alive}, {replays} replays"))
                    })
                })
                .await
        };
        let (out, killed) = tokio::join!(load, kill);
        killed?;
        let out = out?.check("loadgen")?;
        let report: Value =
            out.stdout.lines().rev().find_map(|l| serde_json::from_str(l.trim()).ok()).context("no loadgen report")?;
        ensure!(report["sent_items"].as_u64() == Some(SPANS), "not every span acknowledged: {report}");
        let acknowledged = recorded(&record)?;

        // The pod is lost too: its replacement mounts the same claim and replays the log again.
        kubectl_ok(cluster, &["delete", "pod", "-n", NS, &pod, "--wait=true"]).await?;
        durable_pod(cluster, 0).await?;
        let log = cluster.logs(NS, &pod)?;
        ensure!(
            log.lines().any(|l| l.contains("WAL: records to replay") && !l.contains("records=0")),
            "the new pod replays nothing:\n{}",
            e2e::process::tail(&log, 20)
        );

        kubectl_ok(cluster, &["scale", "-n", NS, "lbc", "traces", "--replicas", "3"]).await?;
        let want: usize = acknowledged.values().sum();
        cluster
            .wait_for(&format!("the {want} acknowledged spans to reach the backends"), Duration::from_secs(120), || async {
                let got = spans_per_trace(cluster).await?;
                let missing: Vec<_> =
                    acknowledged.iter().filter(|(id, n)| got.get(*id).copied().unwrap_or(0) < **n).take(3).collect();
                Ok(if missing.is_empty() {
                    Check::Done(())
                } else {
                    Check::Pending(format!("{} of {want} spans; missing e.g. {missing:?}", got.values().sum::<usize>()))
                })
            })
            .await
            .with_context(|| cluster.logs(NS, &pod).map(|l| e2e::process::tail(&l, 30)).unwrap_or_default())?;
        eprintln!(
            "durable queue: {want} spans of {} traces acknowledged with no backend through a SIGKILL and the loss of the \
             pod (claim wal-traces-0): every one delivered once backends returned",
            acknowledged.len()
        );
        Ok(())
    })
    .await
}

/// A LoadBalancedCollector whose backend image is not on the node (and, the test cluster having no
/// registry, cannot be pulled).
const MISSING_IMAGE: &str = r#"
apiVersion: otlp-lb.dev/v1alpha1
kind: LoadBalancedCollector
metadata:
  name: missing-image
spec:
  loadBalancer: {replicas: 1}
  backends:
    replicas: 1
    image: localhost/otlp-lb-e2e/no-such-collector:0.0.0
    config:
      exporters:
        nop: {}
      service:
        pipelines:
          traces: {receivers: [otlp], exporters: [nop]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reports_a_missing_image() -> Result<()> {
    with_cluster("operator_reports_a_missing_image", Duration::from_secs(300), async |cluster| {
        install_operator(cluster).await?;
        let file = write_run_file(cluster, "missing-image.yaml", &local_collector(MISSING_IMAGE)?)?;
        kubectl_ok(cluster, &["apply", "-n", NS, "-f", &file.to_string_lossy()]).await?;
        // The kubelet reports ErrImageNeverPull for an image with a `localhost/` name it does not have
        // (ImagePullBackOff or ErrImagePull for a registry it cannot reach): any of them names the cause.
        let reasons = ["ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull"];
        let api = lbc_api(cluster, NS);
        let conditions = cluster
            .wait_for("missing-image's conditions to name the pod's waiting reason", Duration::from_secs(120), || {
                let api = api.clone();
                async move {
                    let lbc = api.get("missing-image").await?;
                    let conds = lbc.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
                    let reason = |t: &str| {
                        conds
                            .iter()
                            .find(|c| c["type"] == t)
                            .and_then(|c| c["reason"].as_str())
                            .unwrap_or_default()
                            .to_string()
                    };
                    Ok(
                        if reasons.contains(&reason("BackendsReady").as_str())
                            && reasons.contains(&reason("Ready").as_str())
                        {
                            Check::Done(conds)
                        } else {
                            Check::Pending(format!("{conds:?}"))
                        },
                    )
                }
            })
            .await?;
        let backends = conditions.iter().find(|c| c["type"] == "BackendsReady").context("no BackendsReady")?;
        ensure!(backends["status"] == "False", "{backends}");
        let message = backends["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("no-such-collector:0.0.0") && message.contains("missing-image-backends-"),
            "{message}"
        );

        let events = kubectl_ok(
            cluster,
            &["get", "events", "-n", NS, "--field-selector", "type=Warning,involvedObject.name=missing-image"],
        )
        .await?;
        ensure!(
            reasons.iter().any(|r| events.contains(r)) && events.contains("no-such-collector"),
            "no Warning event names the missing image:\n{events}"
        );
        let wide = kubectl_ok(cluster, &["get", "lbc", "missing-image", "-n", NS]).await?;
        eprintln!("missing image reported:\n{wide}\nBackendsReady: {message}\n{events}");
        Ok(())
    })
    .await
}
