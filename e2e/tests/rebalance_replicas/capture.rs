//! What the backends received. Each backend Collector writes every span it receives to its stdout (OTLP/JSON
//! lines); the kubelet keeps a pod's container logs only while the pod exists, and a scaled-away or replaced
//! backend is deleted once it has drained. So a capture task hard-links every container log file of the pool's
//! pods into the run directory as soon as it appears: the link outlives the pod and holds all the container wrote
//! until it exited.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use e2e::Cluster;
use e2e::node::pods::strip_cri;
use e2e::otlp_json::{self, SpanKey};
use tokio::sync::watch;

const EVERY: Duration = Duration::from_millis(100);

/// Links the container logs of the pods of `namespace` matching `selector` into `dir/<pod>/` until `stop`;
/// returns the number of files linked.
pub async fn run(
    cluster: &Cluster,
    namespace: &str,
    selector: &str,
    dir: &Path,
    mut stop: watch::Receiver<bool>,
) -> Result<usize> {
    let mut linked = 0;
    loop {
        let stopping = *stop.borrow();
        for pod in cluster.pods(namespace, selector).await.unwrap_or_default() {
            let Some(name) = pod.metadata.name else { continue };
            let Ok(files) = cluster.pod_files(namespace, &name) else { continue };
            linked += link_new(&files.logs, &dir.join(&name))?;
        }
        if stopping {
            return Ok(linked);
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Hard-links each `<container>/<n>.log` under `logs` not yet linked into `into` (named by container, file and
/// inode, so a file the kubelet replaces gets a new link).
fn link_new(logs: &Path, into: &Path) -> Result<usize> {
    let mut linked = 0;
    for container in read_dir(logs) {
        let cname = container.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for file in read_dir(&container).into_iter().filter(|f| f.extension().is_some_and(|e| e == "log")) {
            let Ok(meta) = std::fs::metadata(&file) else { continue };
            let fname = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let target = into.join(format!("{cname}-{fname}-{}", meta.ino()));
            if target.exists() {
                continue;
            }
            std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
            match std::fs::hard_link(&file, &target) {
                Ok(()) => linked += 1,
                // Removed with its pod in between.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("linking {}", file.display())),
            }
        }
    }
    Ok(linked)
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default()
}

/// The spans each captured pod wrote, by pod name.
pub fn spans(dir: &Path) -> Result<BTreeMap<String, Vec<SpanKey>>> {
    let mut out = BTreeMap::new();
    for pod in read_dir(dir) {
        let name = pod.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let spans: &mut Vec<SpanKey> = out.entry(name).or_default();
        for file in read_dir(&pod) {
            let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            spans.extend(otlp_json::spans_in_log(&strip_cri(&String::from_utf8_lossy(&text))));
        }
    }
    Ok(out)
}
