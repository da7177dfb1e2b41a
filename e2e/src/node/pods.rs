//! What the harness reads of a pod from the node's disk, as one would on a
//! node: the pod's uid (from its log directory
//! `<namespace>_<name>_<uid>`), its IP (the kubelet-managed `etc-hosts`),
//! its volumes (`pods/<uid>/volumes/<plugin>/<name>` under the kubelet's
//! root), its containers' logs (CRI log files) and its network namespace
//! (that of a process in its cgroup).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The files of one pod on the node.
#[derive(Debug, Clone)]
pub struct PodFiles {
    pub uid: String,
    /// The pod's directory under the kubelet root.
    pub dir: PathBuf,
    /// Its container logs directory.
    pub logs: PathBuf,
}

/// The latest pod `namespace/name` the node has run (the newest log directory).
pub fn find(kubelet_root: &Path, pod_logs: &Path, namespace: &str, name: &str) -> Result<PodFiles> {
    let prefix = format!("{namespace}_{name}_");
    let entries = std::fs::read_dir(pod_logs).with_context(|| format!("reading {}", pod_logs.display()))?;
    let newest = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let uid = file.strip_prefix(&prefix)?.to_string();
            // A uid has no '_', so `a_b_uid` never matches pod `a`'s prefix by accident.
            (!uid.contains('_')).then_some(())?;
            let mtime = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((mtime, uid, e.path()))
        })
        .max_by_key(|(mtime, _, _)| *mtime);
    let Some((_, uid, logs)) = newest else {
        bail!("the node has not run pod {namespace}/{name} (no {prefix}* in {})", pod_logs.display());
    };
    Ok(PodFiles { dir: kubelet_root.join("pods").join(&uid), uid, logs })
}

impl PodFiles {
    /// The pod IP, from the hosts file the kubelet writes for it.
    pub fn ip(&self) -> Result<Ipv4Addr> {
        let path = self.dir.join("etc-hosts");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next()?.parse::<Ipv4Addr>().ok())
            .rfind(|ip| !ip.is_loopback())
            .with_context(|| format!("no pod IP in {}", path.display()))
    }

    /// The host directory of volume `volume` (any volume plugin).
    pub fn volume_dir(&self, volume: &str) -> Result<PathBuf> {
        let vols = self.dir.join("volumes");
        let plugins = std::fs::read_dir(&vols).with_context(|| format!("reading {}", vols.display()))?;
        plugins
            .filter_map(|e| e.ok())
            .map(|e| e.path().join(volume))
            .find(|p| p.exists())
            .with_context(|| format!("pod {} has no volume {volume} under {}", self.uid, vols.display()))
    }

    /// Every container's log, oldest restart first, as the containers wrote
    /// it (the CRI line prefixes removed), under a `==> container <==` header.
    pub fn logs(&self, header: &str) -> String {
        let mut out = String::new();
        let mut containers: Vec<PathBuf> = read_dir_paths(&self.logs);
        containers.sort();
        for c in containers {
            let mut files: Vec<PathBuf> =
                read_dir_paths(&c).into_iter().filter(|f| f.extension().is_some_and(|e| e == "log")).collect();
            files.sort_by_key(|f| f.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u32>().ok()));
            let cname = c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push_str(&format!("==> {header}/{cname} <==\n"));
            for f in files {
                let text = std::fs::read(&f).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                out.push_str(&strip_cri(&text));
            }
        }
        out
    }
}

fn read_dir_paths(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default()
}

/// CRI log lines are `<time> <stream> <P|F> <text>`; `P` marks a partial line, continued by the next
/// line of the same stream (another stream's lines may come in between).
pub fn strip_cri(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut partial: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (_time, stream, tag) = (parts.next(), parts.next().unwrap_or(""), parts.next());
        let msg = parts.next().unwrap_or("");
        let buf = partial.entry(stream).or_default();
        buf.push_str(msg);
        if tag != Some("P") {
            out.push_str(buf);
            out.push('\n');
            buf.clear();
        }
    }
    out
}

/// A network namespace file of the pod: that of a process in its cgroup.
pub fn netns_of_cgroup(cgroup: &Path) -> Result<PathBuf> {
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        if let Some(pid) = procs.split_whitespace().next() {
            return Ok(PathBuf::from(format!("/proc/{pid}/ns/net")));
        }
        dirs.extend(read_dir_paths(&d).into_iter().filter(|p| p.is_dir()));
    }
    bail!("no process in {}", cgroup.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_cri_prefixes() {
        let raw = "2026-01-01T00:00:00.1Z stdout F hello world\n2026-01-01T00:00:00.2Z stderr P part\n\
                   2026-01-01T00:00:00.25Z stdout F between\n2026-01-01T00:00:00.3Z stderr F  two\n";
        assert_eq!(strip_cri(raw), "hello world\nbetween\npart two\n");
    }
}
