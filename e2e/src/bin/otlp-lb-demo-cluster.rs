//! `make demo-cluster`: the operator at work on a throwaway cluster on this
//! machine (the e2e control plane and real node). It installs the Helm chart
//! with the locally built images, applies `config/samples/tail-sampling.yaml`,
//! sends traces through the load balancer's Service, scales the backends
//! 3 -> 5 with `kubectl scale lbc` while traces are still arriving, and prints
//! each backend's share of the spans before and after, the keys the ring
//! moved and the traces that were split. Everything is torn down at the end,
//! on error and on Ctrl-C.
//!
//! So that it can show where each trace went, the demo adds one pipeline to
//! the sample's backends: everything they receive, written as OTLP/JSON to
//! their stdout (read from the container logs). The sample's own pipeline is
//! unchanged. Needs root, `make tools` and `make images e2e-images`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use e2e::otlp_json::{self, Distribution};
use e2e::process::Output;
use e2e::scenario::image_vars;
use e2e::telemetrygen::Traces;
use e2e::wait::Check;
use e2e::{Cluster, tools};
use serde_json::{Value, json};

const NS: &str = "default";
const NAME: &str = "tail-sampling";
const SAMPLE: &str = "config/samples/tail-sampling.yaml";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client::client::builder=off"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    tools::require(&[tools::KUBECTL, tools::HELM, tools::TELEMETRYGEN])?;
    tools::otlp_lb_tools_bin()?;
    image_vars()?;
    say(
        "starting the control plane (etcd, kube-apiserver, controller-manager, scheduler) and a node (containerd, kubelet, kube-proxy, CoreDNS)",
    );
    let cluster = Cluster::start().await?;
    say(&format!("cluster up; kubeconfig: {}", cluster.kubeconfig_path().display()));
    let res = tokio::select! {
        res = demo(&cluster) => res,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    say("tearing everything down");
    cluster.finish(res).await
}

fn say(what: &str) {
    println!("\n==> {what}");
}

async fn kubectl(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let mut argv = vec![format!("--kubeconfig={}", cluster.kubeconfig_path().display())];
    argv.extend(args.iter().map(|s| s.to_string()));
    let out: Output = cluster.exec_on_host(&tools::tool(tools::KUBECTL)?, &argv, Duration::from_secs(90)).await?;
    Ok(out.check(&format!("kubectl {}", args.join(" ")))?.stdout)
}

/// The sample with the local Collector image, and the backends' extra pipeline to stdout.
fn sample_for_demo() -> Result<String> {
    let text = std::fs::read_to_string(tools::workspace_root().join(SAMPLE)).context("reading the sample")?;
    let image = image_vars()?.into_iter().find(|(k, _)| *k == "OTELCOL_IMAGE").context("no Collector image")?.1;
    let text = e2e::fit::for_test_node(&text, &image)?;
    let mut out = String::new();
    for mut doc in serde_saphyr::from_multiple::<Value>(&text)?.into_iter().filter(|d| !d.is_null()) {
        if doc["kind"] == "LoadBalancedCollector" {
            let config = &mut doc["spec"]["backends"]["config"];
            config["exporters"]["file/demo"] = json!({"path": "/dev/stdout", "flush_interval": "100ms"});
            config["service"]["pipelines"]["traces/demo"] = json!({"receivers": ["otlp"], "exporters": ["file/demo"]});
        }
        out.push_str(&serde_json::to_string(&doc)?);
        out.push_str("\n---\n");
    }
    Ok(out)
}

async fn wait_ready(cluster: &Cluster, backends: i64) -> Result<()> {
    let api = e2e::apply::api_for(
        &cluster.client(),
        &e2e::apply::parse_yaml(&format!(
            "apiVersion: otlp-lb.dev/v1alpha1\nkind: LoadBalancedCollector\nmetadata: {{name: {NAME}}}\n"
        ))?[0],
        NS,
    )
    .await?;
    cluster
        .wait_for(&format!("{NAME} Ready with {backends} backends in the ring"), Duration::from_secs(180), || {
            let api = api.clone();
            async move {
                let lbc = api.get(NAME).await?;
                let st = &lbc.data["status"];
                let ready = st["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                Ok(if ready && st["backends"]["inRing"].as_i64() == Some(backends) {
                    Check::Done(())
                } else {
                    Check::Pending(format!("{}", st["conditions"]))
                })
            }
        })
        .await
}

/// Spans each backend pod received so far (from the demo pipeline's output in its log).
async fn received(cluster: &Cluster) -> Result<Distribution> {
    let pods =
        cluster.pods(NS, &format!("app.kubernetes.io/instance={NAME},app.kubernetes.io/component=backends")).await?;
    let mut spans = BTreeMap::new();
    for p in pods {
        let name = p.metadata.name.unwrap_or_default();
        if let Ok(log) = cluster.logs(NS, &name) {
            spans.insert(name, otlp_json::spans_in_log(&log));
        }
    }
    Ok(Distribution::of(&spans))
}

fn print_shares(d: &Distribution) {
    for (backend, (spans, traces)) in &d.per_backend {
        let share = if d.total_spans == 0 { 0.0 } else { 100.0 * *spans as f64 / d.total_spans as f64 };
        println!("    {backend:<40} {spans:>6} spans {traces:>5} traces  {share:5.1}%");
    }
    println!(
        "    total {} spans in {} traces; traces split over more than one backend: {}",
        d.total_spans,
        d.traces,
        d.split_traces.len()
    );
}

async fn wait_spans(cluster: &Cluster, at_least: usize) -> Result<Distribution> {
    cluster
        .wait_for(&format!("{at_least} spans at the backends"), Duration::from_secs(60), || async {
            let d = received(cluster).await?;
            Ok(if d.total_spans >= at_least { Check::Done(d) } else { Check::Pending(d.to_string()) })
        })
        .await
}

async fn demo(cluster: &Cluster) -> Result<()> {
    say("helm install otlp-lb charts/otlp-lb (the locally built operator image)");
    e2e::chart::install_operator(cluster).await?;
    println!("{}", kubectl(cluster, &["get", "pods", "-n", e2e::chart::OPERATOR_NS]).await?);

    say(&format!(
        "kubectl apply -f {SAMPLE} (Collector image: the local build; plus a pipeline that shows where traces go)"
    ));
    let file = cluster.run_dir().join("tail-sampling.yaml");
    std::fs::write(&file, sample_for_demo()?)?;
    print!("{}", kubectl(cluster, &["apply", "-n", NS, "-f", &file.to_string_lossy()]).await?);
    wait_ready(cluster, 3).await?;
    println!("{}", kubectl(cluster, &["get", "lbc", "-n", NS, "-o", "wide"]).await?);

    let service = cluster.service_ip(NS, NAME).await?;
    let load = Traces { workers: 2, traces_per_worker: 250, child_spans: 3 };
    say(&format!("telemetrygen: {} traces through Service {NAME} ({service}:4317)", load.expected_traces()));
    let tg = tools::tool(tools::TELEMETRYGEN)?;
    let out = cluster
        .exec_on_host(&tg, &load.args(&format!("{service}:4317")), Duration::from_secs(120))
        .await?
        .check("telemetrygen")?;
    load.check_output(&format!("{}\n{}", out.stdout, out.stderr))?;
    let before = wait_spans(cluster, load.expected_spans()).await?;
    say("each backend's share with 3 backends");
    print_shares(&before);

    say("kubectl scale lbc tail-sampling --replicas 5, while traces keep arriving (each trace in 4 parts over 3s)");
    let loadgen = tools::otlp_lb_tools_bin()?;
    let args: Vec<String> = [
        "loadgen",
        "--endpoint",
        &format!("{service}:4317"),
        "--duration",
        "20s",
        "--rate",
        "400",
        "--spans-per-trace",
        "4",
        "--trace-spread",
        "4",
        "--spread-interval",
        "1s",
        "--connections",
        "2",
        "--retry",
        "--report-json",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let load2 = cluster.exec_on_host(&loadgen, &args, Duration::from_secs(90));
    let scale = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        print!("{}", kubectl(cluster, &["scale", "lbc", NAME, "-n", NS, "--replicas", "5"]).await?);
        wait_ready(cluster, 5).await
    };
    let (out, scaled) = tokio::join!(load2, scale);
    scaled?;
    let out = out?.check("loadgen")?;
    let report: Value =
        out.stdout.lines().rev().find_map(|l| serde_json::from_str(l.trim()).ok()).context("no loadgen report")?;
    let sent = report["sent_items"].as_u64().unwrap_or(0) as usize;
    if sent == 0 {
        bail!("loadgen sent nothing: {report}");
    }
    println!("{}", kubectl(cluster, &["get", "lbc", "-n", NS, "-o", "wide"]).await?);
    let after = wait_spans(cluster, before.total_spans + sent).await?;
    say("each backend's share after the scale-out (all spans so far)");
    print_shares(&after);
    say("what the ring moved (Rebalanced events)");
    print!(
        "{}",
        kubectl(
            cluster,
            &["get", "events", "-n", NS, "--field-selector", &format!("reason=Rebalanced,involvedObject.name={NAME}")]
        )
        .await?
    );
    say(&format!(
        "{} traces, {} split over more than one backend across the scale-out",
        after.traces,
        after.split_traces.len()
    ));
    Ok(())
}
