//! The run's cgroups: the kubelet's cgroup root (`/olb<run id>`, under
//! which it makes `kubepods/...` for the pods) in every cgroup v1 hierarchy,
//! made before the kubelet starts and removed, with whatever still runs in
//! it, at teardown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Where cgroup v1 hierarchies (and the v2 one, `unified`) are mounted.
const CGROUP_FS: &str = "/sys/fs/cgroup";
/// The v2 hierarchy of a hybrid host, which the kubelet does not use on cgroup v1.
const UNIFIED: &str = "unified";

/// The cgroup (relative to each hierarchy) under which run `run_id`'s pods run.
pub fn cgroup_root(run_id: &str) -> String {
    format!("/{}{run_id}", crate::netns::PREFIX)
}

/// Every directory of the run's cgroup tree, in every hierarchy, deepest first.
fn cgroup_dirs(run_id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(hier) = std::fs::read_dir(CGROUP_FS) else {
        return out;
    };
    for h in hier.filter_map(|e| e.ok()) {
        let top = h.path().join(cgroup_root(run_id).trim_start_matches('/'));
        collect_dirs(&top, &mut out);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// SIGKILLs every process in the run's cgroups until none is left (bounded),
/// then removes the cgroups.
pub fn kill_and_remove(run_id: &str) {
    for _ in 0..50 {
        let mut any = false;
        for dir in cgroup_dirs(run_id) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                any = true;
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..20 {
        let dirs = cgroup_dirs(run_id);
        if dirs.is_empty() {
            return;
        }
        for dir in dirs {
            let _ = std::fs::remove_dir(&dir);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::warn!("cgroups of run {run_id} left: {:?}", cgroup_dirs(run_id));
}

/// Creates the run's cgroup root in every v1 hierarchy (cpuset's with its
/// parent's CPUs and memory nodes, which a new cpuset does not inherit).
pub fn create_root(run_id: &str) -> Result<()> {
    let rel = cgroup_root(run_id);
    for h in std::fs::read_dir(CGROUP_FS).with_context(|| format!("reading {CGROUP_FS}"))?.filter_map(|e| e.ok()) {
        if h.file_name() == UNIFIED || !h.path().is_dir() {
            continue;
        }
        let dir = h.path().join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(h.path().join(f)) {
                std::fs::write(dir.join(f), v.trim()).with_context(|| format!("writing {}/{f}", dir.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_root_carries_the_run_id() {
        assert_eq!(cgroup_root("ab12c"), "/olbab12c");
    }
}
