//! The run's network with iproute2.
//!
//! One Linux bridge per run in the root namespace, holding the gateway
//! address (`.1` of a private /24 from 10.213.0.0/16 that no interface on the
//! host uses yet); the node's CNI bridge plugin attaches pods to it (see
//! [`crate::node::containerd`]). The root namespace reaches pod IPs through
//! the bridge, and pods reach the apiserver on the gateway address.
//!
//! Every name carries the run id (`olb<id>br`; older layouts also used
//! `olb<id>v<n>` veths and `olb<id>-<n>` namespaces), so two runs cannot
//! collide and a later run can find and remove what a dead run left
//! ([`sweep`]).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::process::run_sync;

/// Prefix of every interface and netns name the harness creates.
pub const PREFIX: &str = "olb";
/// Length of a run id (lowercase letters and digits).
pub const ID_LEN: usize = 5;

pub fn bridge_name(run_id: &str) -> String {
    format!("{PREFIX}{run_id}br")
}

pub fn netns_name(run_id: &str, n: u32) -> String {
    format!("{PREFIX}{run_id}-{n}")
}

/// The file that names a network namespace.
pub fn ns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// The run id in one of our interface or netns names, if it is one.
pub fn owner_id(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PREFIX)?;
    let id = rest.get(..ID_LEN)?;
    let tail = &rest[ID_LEN..];
    let ours = id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && (tail == "br"
            || tail
                .strip_prefix('v')
                .or_else(|| tail.strip_prefix('p'))
                .or_else(|| tail.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())));
    ours.then_some(id)
}

/// The run's bridge.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub run_id: String,
    /// The first three octets of the /24.
    pub subnet: [u8; 3],
}

impl Bridge {
    /// Creates the bridge with the gateway address of a free /24.
    pub fn create(run_id: &str) -> Result<Bridge> {
        let used = run_sync("ip", &["-4", "-o", "addr", "show"]).context("listing host addresses")?;
        let third = pick_free_subnet(&used, rand::random::<u8>()).context("no free /24 in 10.213.0.0/16")?;
        let bridge = Bridge { name: bridge_name(run_id), run_id: run_id.to_string(), subnet: [10, 213, third] };
        run_sync("ip", &["link", "add", &bridge.name, "type", "bridge"])?;
        let gw = format!("{}/24", bridge.gateway());
        run_sync("ip", &["addr", "add", &gw, "dev", &bridge.name])?;
        run_sync("ip", &["link", "set", &bridge.name, "up"])?;
        Ok(bridge)
    }

    /// The bridge's address: the pods' default gateway and the apiserver's
    /// address as seen from pods.
    pub fn gateway(&self) -> Ipv4Addr {
        self.ip(1)
    }

    /// Address `.host` of the /24.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host)
    }

    /// Deletes the bridge (pod networks first: see [`sweep`]).
    pub fn delete(&self) {
        let _ = run_sync("ip", &["link", "del", &self.name]);
    }
}

/// Picks the third octet of a 10.213.X.0/24 that `ip -o addr` output does not
/// mention, starting at `start`.
fn pick_free_subnet(ip_addr_output: &str, start: u8) -> Option<u8> {
    (0..=255u16)
        .map(|i| ((u16::from(start) + i) % 256) as u8)
        .find(|x| !ip_addr_output.contains(&format!(" 10.213.{x}.")))
}

fn delete_netns(ns: &str) {
    if let Ok(pids) = run_sync("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = run_sync("ip", &["netns", "del", ns]);
}

/// Names of our network namespaces.
fn our_netns() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| owner_id(n).is_some())
        .collect()
}

/// Names of our interfaces in the root namespace.
fn our_links() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| owner_id(n).is_some())
        .collect()
}

/// Run ids that own a netns or an interface on this host.
pub fn owner_ids() -> BTreeSet<String> {
    our_netns().iter().chain(our_links().iter()).filter_map(|n| owner_id(n).map(str::to_string)).collect()
}

/// Removes every netns and interface of run `run_id`, killing processes
/// still inside its namespaces.
pub fn sweep(run_id: &str) {
    for ns in our_netns().into_iter().filter(|n| owner_id(n) == Some(run_id)) {
        delete_netns(&ns);
    }
    // Host veth ends first, the bridge last.
    let mut links: Vec<String> = our_links().into_iter().filter(|n| owner_id(n) == Some(run_id)).collect();
    links.sort_by_key(|l| l.ends_with("br"));
    for link in links {
        let _ = run_sync("ip", &["link", "del", &link]);
    }
}

/// Fails unless iproute2's `ip` works and we may create namespaces.
pub fn check_prerequisites() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the e2e harness needs root (network namespaces, veth pairs, bridges, bind mounts); run the tests as root"
        );
    }
    run_sync("ip", &["-V"]).context("iproute2 (`ip`) is required: apt-get install iproute2")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_our_names() {
        assert_eq!(owner_id("olbab12cbr"), Some("ab12c"));
        assert_eq!(owner_id("olbab12cv17"), Some("ab12c"));
        assert_eq!(owner_id("olbab12cp3"), Some("ab12c"));
        assert_eq!(owner_id("olbab12c-3"), Some("ab12c"));
        assert_eq!(owner_id(&netns_name("zz9zz", 12)), Some("zz9zz"));
        assert_eq!(owner_id("olbab12c"), None);
        assert_eq!(owner_id("olbAB12cbr"), None);
        assert_eq!(owner_id("olbab12cv"), None);
        assert_eq!(owner_id("eth0"), None);
    }

    #[test]
    fn picks_unused_subnet() {
        let out = "3: olbxbr    inet 10.213.7.1/24 scope global olbxbr\n";
        assert_eq!(pick_free_subnet(out, 7), Some(8));
        assert_eq!(pick_free_subnet(out, 9), Some(9));
    }
}
