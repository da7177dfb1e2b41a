//! Removing what a run's node leaves on the host, for a live run's teardown
//! and for the sweep of a dead run alike: the processes in its pod cgroups
//! and the cgroups themselves, every mount under its directory (container
//! root filesystems, pod network namespaces, volumes, the kubelet's shared
//! root), the kubelet's container log links, and the iptables chains of
//! kube-proxy and the kubelet.

use std::path::{Path, PathBuf};

use super::cgroups;
use crate::process::run_sync;

/// The kubelet's links to container logs (a fixed path in the kubelet).
const CONTAINER_LOG_LINKS: &str = "/var/log/containers";
/// Chains the kubelet creates: for kube-proxy's detection of the iptables
/// mode (mangle), its canaries, and the filter of traffic to 127.0.0.0/8
/// from elsewhere, jumped to from INPUT and OUTPUT.
const KUBELET_CHAINS: &[(&str, &str, &[&str])] = &[
    ("mangle", "KUBE-IPTABLES-HINT", &[]),
    ("mangle", "KUBE-KUBELET-CANARY", &[]),
    ("nat", "KUBE-KUBELET-CANARY", &[]),
    ("filter", "KUBE-KUBELET-CANARY", &[]),
    ("filter", "KUBE-FIREWALL", &["INPUT", "OUTPUT"]),
];

/// Mount points at or under `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Lazily unmounts everything mounted under `dir` (bounded passes: a stacked
/// mount point shows up again until its last layer is gone).
pub fn unmount_all_under(dir: &Path) {
    for _ in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    tracing::warn!("mounts left under {}: {:?}", dir.display(), mounts_under(dir));
}

/// Removes the kubelet's `/var/log/containers` links that point into `dir`.
pub fn remove_log_links(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(CONTAINER_LOG_LINKS) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(dir)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the kubelet's iptables chains (kube-proxy removes its own with
/// `kube-proxy --cleanup`).
pub fn remove_kubelet_chains() {
    for program in ["iptables", "ip6tables"] {
        for (table, chain, from) in KUBELET_CHAINS {
            for builtin in *from {
                // One jump each; bounded in case of duplicates.
                for _ in 0..5 {
                    if run_sync(program, &["-w", "5", "-t", table, "-D", builtin, "-j", chain]).is_err() {
                        break;
                    }
                }
            }
            if run_sync(program, &["-w", "5", "-t", table, "-F", chain]).is_ok() {
                let _ = run_sync(program, &["-w", "5", "-t", table, "-X", chain]);
            }
        }
    }
}

/// Everything above for run `run_id` whose node lives in `node_dir`, in
/// order (the iptables chains only if its kube-proxy was configured).
pub fn sweep(run_id: &str, node_dir: &Path) {
    if node_dir.join("kube-proxy.json").exists() {
        if let Err(e) = super::kube_proxy::cleanup() {
            tracing::warn!("{e:#}");
        }
        remove_kubelet_chains();
    }
    cgroups::kill_and_remove(run_id);
    unmount_all_under(node_dir);
    remove_log_links(node_dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
    }
}
