//! Locating the binaries the harness runs.
//!
//! Two kinds: the pinned tools built by `make tools` (`e2e/tools/build-tools.sh`)
//! into `$TOOLS_DIR/bin` (default `$HOME/.cache/otlp-lb/tools/bin`), with their
//! versions in `e2e/tools.env`; and the workspace's load generator the tests
//! run on the host (`target/debug/otlp-lb-tools`, overridable by an env
//! variable). What runs in pods comes from the images (see
//! [`crate::node::images`]). A missing binary is an error that says how to get
//! it: the e2e tests fail, they never skip.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What to tell the user when a pinned tool is missing.
pub const TOOLS_HINT: &str = "run `make tools` (e2e/tools/build-tools.sh) to build the pinned e2e tools";

/// The pinned tools (names of the binaries in `$TOOLS_DIR/bin`).
pub const ETCD: &str = "etcd";
pub const KUBE_APISERVER: &str = "kube-apiserver";
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "kube-scheduler";
pub const OTELCOL: &str = "otelcol-lb";
pub const TELEMETRYGEN: &str = "telemetrygen";
pub const KUBECTL: &str = "kubectl";
pub const HELM: &str = "helm";
pub const KUBELET: &str = "kubelet";
pub const KUBE_PROXY: &str = "kube-proxy";
pub const COREDNS: &str = "coredns";
pub const CRICTL: &str = "crictl";

/// Tools every cluster needs.
pub const CONTROL_PLANE_TOOLS: &[&str] = &[ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER];
/// Tools the real node needs.
pub const NODE_TOOLS: &[&str] = &[KUBELET, KUBE_PROXY, COREDNS];

/// The workspace root (parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$TOOLS_DIR`, default `$HOME/.cache/otlp-lb/tools` (as in build-tools.sh).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOOLS_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() { dir } else { workspace_root().join(dir) };
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/otlp-lb/tools")
}

/// Where the pinned tools' binaries are.
pub fn tools_bin_dir() -> PathBuf {
    tools_dir().join("bin")
}

/// Path of a pinned tool, checked to exist and be executable.
pub fn tool(name: &str) -> Result<PathBuf> {
    let path = tools_bin_dir().join(name);
    check_executable(&path).with_context(|| format!("e2e tool `{name}` is missing: {TOOLS_HINT}"))?;
    Ok(path)
}

/// Checks all the named tools at once, listing every missing one.
pub fn require(names: &[&str]) -> Result<()> {
    let missing: Vec<&str> =
        names.iter().copied().filter(|n| check_executable(&tools_bin_dir().join(n)).is_err()).collect();
    if !missing.is_empty() {
        bail!("e2e tools missing from {}: {}; {TOOLS_HINT}", tools_bin_dir().display(), missing.join(", "));
    }
    Ok(())
}

fn check_executable(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{} not found", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        bail!("{} is not an executable file", path.display());
    }
    Ok(())
}

/// The pinned versions, `KEY=value` lines of `e2e/tools.env`.
pub fn tools_env() -> Result<BTreeMap<String, String>> {
    let path = workspace_root().join("e2e/tools.env");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_env_file(&text))
}

/// Parses plain `KEY=value` lines (comments and blanks skipped).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The cargo target directory (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { workspace_root().join(dir) }
        }
        None => workspace_root().join("target"),
    }
}

/// A binary of this workspace: `$<env_override>` if set, else
/// `target/debug/<name>`; the error says which cargo command builds it.
pub fn workspace_bin(name: &str, env_override: &str, build_cmd: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(env_override).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("debug").join(name),
    };
    check_executable(&path).with_context(|| {
        format!("workspace binary `{name}` is missing: build it with `{build_cmd}` (or set {env_override})")
    })?;
    Ok(path)
}

/// `otlp-lb-tools` (loadgen, sink; `OTLP_LB_TOOLS_BIN` overrides), run on the host.
pub fn otlp_lb_tools_bin() -> Result<PathBuf> {
    workspace_bin("otlp-lb-tools", "OTLP_LB_TOOLS_BIN", "cargo build -p dataplane --bin otlp-lb-tools")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_file() {
        let env = parse_env_file("# c\n\nA=1\n B = x y \nbad line\n");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("x y"));
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn missing_tool_mentions_make_tools() {
        let err = format!("{:#}", tool("definitely-not-a-tool").unwrap_err());
        assert!(err.contains("make tools"), "{err}");
    }
}
