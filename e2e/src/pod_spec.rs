//! Translating a Pod spec into what the node agent runs, kubelet-style:
//! which ConfigMaps, Secrets and service-account tokens it needs; its volumes
//! written as files (ConfigMap/Secret/projected/downwardAPI with the kubelet's
//! atomic `..data` symlink layout, emptyDir as a plain directory); each
//! container's environment (downward API `fieldRef`/`resourceFieldRef`,
//! `configMapKeyRef`/`secretKeyRef`, `envFrom`, `$(VAR)` expansion,
//! `KUBERNETES_SERVICE_*`), bind mounts and argv.
//!
//! Everything here is pure or local file I/O; the API calls are the caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret};

use crate::process::BindMount;

/// Facts about the pod's placement.
#[derive(Debug, Clone)]
pub struct PodContext {
    pub pod_ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
    pub node_name: String,
    /// The apiserver as reachable from the pod (bridge gateway, secure port).
    pub api_host: String,
    pub api_port: u16,
}

/// ConfigMaps, Secrets and tokens the pod refers to, fetched by the caller.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub configmaps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// Token per [`TokenNeed::key`].
    pub tokens: BTreeMap<String, String>,
    /// Host directory of each PersistentVolumeClaim the pod uses: the bound PersistentVolume's hostPath or local
    /// path.
    pub claims: BTreeMap<String, PathBuf>,
}

/// A service-account token to request for a projected volume.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenNeed {
    pub key: String,
    pub service_account: String,
    pub audience: Option<String>,
    pub expiration_seconds: Option<i64>,
}

pub fn service_account(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.service_account_name.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into())
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
}

/// Names of the ConfigMaps the pod uses (volumes and env).
pub fn referenced_configmaps(pod: &Pod) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(cm) = &v.config_map {
            out.insert(cm.name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &src.config_map {
                out.insert(cm.name.clone());
            }
        }
    }
    for c in all_containers(pod) {
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                out.insert(r.name.clone());
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(r) = e.value_from.as_ref().and_then(|v| v.config_map_key_ref.as_ref()) {
                out.insert(r.name.clone());
            }
        }
    }
    out
}

/// Names of the PersistentVolumeClaims the pod's volumes use.
pub fn referenced_claims(pod: &Pod) -> BTreeSet<String> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes.filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone())).collect()
}

/// Names of the Secrets the pod uses (volumes and env).
pub fn referenced_secrets(pod: &Pod) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.insert(name);
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                out.insert(s.name.clone());
            }
        }
    }
    for c in all_containers(pod) {
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.secret_ref {
                out.insert(r.name.clone());
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(r) = e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) {
                out.insert(r.name.clone());
            }
        }
    }
    out
}

/// The tokens the pod's projected volumes need.
pub fn token_needs(pod: &Pod) -> Vec<TokenNeed> {
    let sa = service_account(pod);
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        for (i, src) in v.projected.iter().flat_map(|p| p.sources.iter().flatten()).enumerate() {
            if let Some(t) = &src.service_account_token {
                out.push(TokenNeed {
                    key: format!("{}/{i}", v.name),
                    service_account: sa.clone(),
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds,
                });
            }
        }
    }
    out
}

/// Rejects absolute paths and `..` in volume-relative paths.
fn safe_rel(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if p.is_empty() || path.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("invalid relative path {p:?}");
    }
    Ok(path.to_path_buf())
}

/// Writes `files` into `dir` the way the kubelet's atomic writer does:
/// the data in a fresh `..<n>` directory, `..data` a symlink to it, and each
/// top-level entry a symlink into `..data`, so a rewrite is one rename.
/// Returns whether anything changed.
pub fn write_atomic(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link) {
        let current_dir = dir.join(&current);
        let same = files.iter().all(|(p, b)| std::fs::read(current_dir.join(p)).is_ok_and(|x| &x == b))
            && count_files(&current_dir) == files.len();
        if same {
            return Ok(false);
        }
    }
    let stamp = format!("..{}", k8s_openapi::jiff::Timestamp::now().as_nanosecond());
    let new_dir = dir.join(&stamp);
    for (p, bytes) in files {
        let target = new_dir.join(p);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
    }
    std::fs::create_dir_all(&new_dir).with_context(|| format!("creating {}", new_dir.display()))?;
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link).context("creating ..data_tmp symlink")?;
    let old = std::fs::read_link(&data_link).ok();
    std::fs::rename(&tmp_link, &data_link).context("swapping ..data")?;
    let top: BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    // Drop links for entries that are gone, and the previous data dir.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !top.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries.filter_map(|e| e.ok()).map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

fn key_files(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    what: &str,
    out: &mut BTreeMap<PathBuf, Vec<u8>>,
) -> Result<()> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let bytes = data.get(&it.key).with_context(|| format!("{what} has no key {:?}", it.key))?;
                out.insert(safe_rel(&it.path)?, bytes.clone());
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(safe_rel(&k)?, v);
            }
        }
    }
    Ok(())
}

fn configmap_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> =
        cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

fn downward_files(
    pod: &Pod,
    ctx: &PodContext,
    items: &[DownwardAPIVolumeFile],
    out: &mut BTreeMap<PathBuf, Vec<u8>>,
) -> Result<()> {
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            field_ref(pod, ctx, &f.field_path)?
        } else if let Some(r) = &it.resource_field_ref {
            let c = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
                .with_context(|| format!("downwardAPI item {:?}: no container {:?}", it.path, r.container_name))?;
            resource_field(c, &r.resource, r.divisor.as_ref().map(|q| q.0.as_str()))?
        } else {
            bail!("downwardAPI item {:?} has no source", it.path)
        };
        out.insert(safe_rel(&it.path)?, value.into_bytes());
    }
    Ok(())
}

/// Writes the pod's volumes under `pod_dir/volumes/<name>` and returns each
/// volume's host directory. Safe to call again to refresh ConfigMap/Secret
/// contents (only changed volumes are rewritten).
pub fn materialize_volumes(
    pod: &Pod,
    ctx: &PodContext,
    inputs: &Inputs,
    pod_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = pod_dir.join("volumes").join(&v.name);
        let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        if let Some(cm) = &v.config_map {
            match inputs.configmaps.get(&cm.name) {
                Some(obj) => {
                    key_files(configmap_data(obj), cm.items.as_ref(), &format!("ConfigMap {}", cm.name), &mut files)?
                }
                None if cm.optional == Some(true) => {}
                None => bail!("configmap {:?} not found", cm.name),
            }
        } else if let Some(sec) = &v.secret {
            let name = sec.secret_name.clone().unwrap_or_default();
            match inputs.secrets.get(&name) {
                Some(obj) => key_files(secret_data(obj), sec.items.as_ref(), &format!("Secret {name}"), &mut files)?,
                None if sec.optional == Some(true) => {}
                None => bail!("secret {name:?} not found"),
            }
        } else if let Some(p) = &v.projected {
            for (i, src) in p.sources.iter().flatten().enumerate() {
                if let Some(t) = &src.service_account_token {
                    let key = format!("{}/{i}", v.name);
                    let token =
                        inputs.tokens.get(&key).with_context(|| format!("no token for projected volume {key}"))?;
                    files.insert(safe_rel(&t.path)?, token.clone().into_bytes());
                } else if let Some(cm) = &src.config_map {
                    match inputs.configmaps.get(&cm.name) {
                        Some(obj) => key_files(
                            configmap_data(obj),
                            cm.items.as_ref(),
                            &format!("ConfigMap {}", cm.name),
                            &mut files,
                        )?,
                        None if cm.optional == Some(true) => {}
                        None => bail!("configmap {:?} not found", cm.name),
                    }
                } else if let Some(s) = &src.secret {
                    match inputs.secrets.get(&s.name) {
                        Some(obj) => {
                            key_files(secret_data(obj), s.items.as_ref(), &format!("Secret {}", s.name), &mut files)?
                        }
                        None if s.optional == Some(true) => {}
                        None => bail!("secret {:?} not found", s.name),
                    }
                } else if let Some(d) = &src.downward_api {
                    downward_files(pod, ctx, d.items.as_deref().unwrap_or_default(), &mut files)?;
                } else {
                    bail!("volume {:?}: unsupported projected source", v.name);
                }
            }
        } else if let Some(d) = &v.downward_api {
            downward_files(pod, ctx, d.items.as_deref().unwrap_or_default(), &mut files)?;
        } else if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating emptyDir {}", dir.display()))?;
            out.insert(v.name.clone(), dir);
            continue;
        } else if let Some(c) = &v.persistent_volume_claim {
            let path =
                inputs.claims.get(&c.claim_name).with_context(|| format!("claim {:?} not bound", c.claim_name))?;
            out.insert(v.name.clone(), path.clone());
            continue;
        } else if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            if !path.exists() {
                match h.type_.as_deref() {
                    Some("DirectoryOrCreate") => std::fs::create_dir_all(&path)
                        .with_context(|| format!("creating hostPath {}", path.display()))?,
                    _ => bail!("hostPath {} does not exist", path.display()),
                }
            }
            out.insert(v.name.clone(), path);
            continue;
        } else {
            bail!(
                "volume {:?}: unsupported volume type (the e2e node agent supports configMap, secret, projected, downwardAPI, emptyDir, hostPath, persistentVolumeClaim on a hostPath or local PersistentVolume)",
                v.name
            );
        }
        write_atomic(&dir, &files)?;
        out.insert(v.name.clone(), dir);
    }
    Ok(out)
}

/// The value of a downward-API field path.
pub fn field_ref(pod: &Pod, ctx: &PodContext, path: &str) -> Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let label_or_annotation = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = label_or_annotation("metadata.labels['", &meta.labels) {
        return Ok(v);
    }
    if let Some(v) = label_or_annotation("metadata.annotations['", &meta.annotations) {
        return Ok(v);
    }
    let kv = |m: &Option<BTreeMap<String, String>>| {
        m.iter().flatten().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => kv(&meta.labels),
        "metadata.annotations" => kv(&meta.annotations),
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.to_string(),
        other => bail!("unsupported fieldRef fieldPath {other:?}"),
    })
}

/// Parses a Kubernetes quantity ("250m", "1Gi", "2", "1e3") into a number.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (s, mult) in SUFFIXES {
        if let Some(num) = q.strip_suffix(s) {
            return num.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    q.parse::<f64>().ok()
}

/// Node-wide defaults when a container sets no limit.
const NODE_CPU: f64 = 64.0;
const NODE_MEMORY: f64 = 256.0 * 1073741824.0;

/// A `resourceFieldRef` value: the container's limit/request divided by the
/// divisor, rounded up (limits default to the node's allocatable).
pub fn resource_field(c: &Container, resource: &str, divisor: Option<&str>) -> Result<String> {
    let res = c.resources.as_ref();
    let get = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str| {
        m.and_then(|m| m.get(k)).and_then(|q| parse_quantity(&q.0))
    };
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    let (value, default_divisor) = match resource {
        "limits.cpu" => (get(limits, "cpu").unwrap_or(NODE_CPU), 1.0),
        "limits.memory" => (get(limits, "memory").unwrap_or(NODE_MEMORY), 1.0),
        "requests.cpu" => (get(requests, "cpu").or_else(|| get(limits, "cpu")).unwrap_or(0.0), 1.0),
        "requests.memory" => (get(requests, "memory").or_else(|| get(limits, "memory")).unwrap_or(0.0), 1.0),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => {
            (get(limits, "ephemeral-storage").unwrap_or(NODE_MEMORY), 1.0)
        }
        other => bail!("unsupported resourceFieldRef resource {other:?}"),
    };
    let div = match divisor {
        Some(d) => parse_quantity(d).filter(|d| *d > 0.0).with_context(|| format!("bad divisor {d:?}"))?,
        None => default_divisor,
    };
    Ok(format!("{}", (value / div).ceil() as i64))
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Kubernetes `$(VAR)` expansion: `$$` is a literal `$`, `$(NAME)` becomes
/// NAME's value if defined and stays as written otherwise.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(end) => {
                    let name = &r[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &r[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An ordered environment where a later set replaces an earlier value.
#[derive(Debug, Clone, Default)]
pub struct Env(Vec<(String, String)>);

impl Env {
    pub fn set(&mut self, k: impl Into<String>, v: impl Into<String>) {
        let k = k.into();
        let v = v.into();
        match self.0.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k, v)),
        }
    }

    pub fn get(&self, k: &str) -> Option<String> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// The container's full environment.
pub fn container_env(pod: &Pod, ctx: &PodContext, c: &Container, inputs: &Inputs) -> Result<Env> {
    let mut env = Env::default();
    env.set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    env.set("HOSTNAME", pod.metadata.name.clone().unwrap_or_default());
    env.set("HOME", "/root");
    env.set("KUBERNETES_SERVICE_HOST", ctx.api_host.clone());
    env.set("KUBERNETES_SERVICE_PORT", ctx.api_port.to_string());
    env.set("KUBERNETES_SERVICE_PORT_HTTPS", ctx.api_port.to_string());
    env.set("KUBERNETES_PORT", format!("tcp://{}:{}", ctx.api_host, ctx.api_port));
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match inputs.configmaps.get(&r.name) {
                Some(cm) => configmap_data(cm),
                None if r.optional == Some(true) => continue,
                None => bail!("configmap {:?} not found (envFrom)", r.name),
            }
        } else if let Some(r) = &from.secret_ref {
            match inputs.secrets.get(&r.name) {
                Some(s) => secret_data(s),
                None if r.optional == Some(true) => continue,
                None => bail!("secret {:?} not found (envFrom)", r.name),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let name = format!("{prefix}{k}");
            if is_env_name(&name) {
                env.set(name, String::from_utf8_lossy(&v).into_owned());
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                field_ref(pod, ctx, &f.field_path)?
            } else if let Some(r) = &src.resource_field_ref {
                resource_field(c, &r.resource, r.divisor.as_ref().map(|q| q.0.as_str()))?
            } else if let Some(r) = &src.config_map_key_ref {
                match inputs.configmaps.get(&r.name).and_then(|cm| configmap_data(cm).remove(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => bail!("env {}: configmap {:?} key {:?} not found", e.name, r.name, r.key),
                }
            } else if let Some(r) = &src.secret_key_ref {
                match inputs.secrets.get(&r.name).and_then(|s| secret_data(s).remove(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => bail!("env {}: secret {:?} key {:?} not found", e.name, r.name, r.key),
                }
            } else {
                bail!("env {}: unsupported valueFrom", e.name)
            }
        } else {
            expand(e.value.as_deref().unwrap_or(""), |n| env.get(n))
        };
        env.set(e.name.clone(), value);
    }
    Ok(env)
}

/// The process arguments: `command[1..]` (command[0] names the image's
/// binary, replaced by the mapped local one) then `args`, `$(VAR)`-expanded.
pub fn container_argv(c: &Container, env: &Env) -> Vec<String> {
    c.command.iter().flatten().skip(1).chain(c.args.iter().flatten()).map(|a| expand(a, |n| env.get(n))).collect()
}

/// The container's bind mounts, parents before children.
pub fn container_mounts(c: &Container, volumes: &BTreeMap<String, PathBuf>) -> Result<Vec<BindMount>> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let base = volumes.get(&m.name).with_context(|| format!("volumeMount {:?}: no such volume", m.name))?;
        let dst = PathBuf::from(&m.mount_path);
        if !dst.is_absolute() || dst.parent().is_none() {
            bail!("volumeMount {:?}: mountPath {:?} must be absolute and not /", m.name, m.mount_path);
        }
        let src = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = base.join(safe_rel(sub)?);
                if !p.exists() {
                    std::fs::create_dir_all(&p).with_context(|| format!("creating subPath {}", p.display()))?;
                }
                // Through the ..data symlinks to the file itself.
                p.canonicalize().with_context(|| format!("resolving subPath {}", p.display()))?
            }
            None => base.clone(),
        };
        out.push(BindMount { src, dst, read_only: m.read_only.unwrap_or(false) });
    }
    out.sort_by_key(|m| m.dst.components().count());
    Ok(out)
}

/// Where each mount point must exist before mounting: on the host, or — when
/// a mount sits inside an earlier mount — inside that mount's source.
pub fn mount_point_locations(mounts: &[BindMount]) -> Vec<(PathBuf, bool)> {
    mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let parent = mounts[..i].iter().rev().find(|p| m.dst.starts_with(&p.dst) && m.dst != p.dst);
            let loc = match parent.and_then(|p| m.dst.strip_prefix(&p.dst).ok().map(|rel| p.src.join(rel))) {
                Some(inner) => inner,
                None => m.dst.clone(),
            };
            (loc, m.src.is_file())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PodContext {
        PodContext {
            pod_ip: Ipv4Addr::new(10, 213, 0, 5),
            host_ip: Ipv4Addr::new(10, 213, 0, 1),
            node_name: "node".into(),
            api_host: "10.213.0.1".into(),
            api_port: 6443,
        }
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn expansion() {
        let look = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("a$(A)b", look), "axb");
        assert_eq!(expand("$(B)", look), "$(B)");
        assert_eq!(expand("$$(A)", look), "$(A)");
        assert_eq!(expand("$x $(A", look), "$x $(A");
        assert_eq!(expand("é$(A)é", look), "éxé");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "resources": {"limits": {"memory": "512Mi", "cpu": "500m"}}}),
        )
        .unwrap();
        assert_eq!(resource_field(&c, "limits.memory", None).unwrap(), "536870912");
        assert_eq!(resource_field(&c, "limits.memory", Some("1Mi")).unwrap(), "512");
        assert_eq!(resource_field(&c, "limits.cpu", None).unwrap(), "1");
        assert_eq!(resource_field(&c, "limits.cpu", Some("1m")).unwrap(), "500");
    }

    #[test]
    fn env_and_argv() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"containers": [{
                "name": "c", "image": "otlp-lb",
                "command": ["/otlp-lb"], "args": ["--config", "/etc/$(NAME)/c.yaml"],
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "NAME", "value": "x-$(NS)"},
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}
                ]
            }]}
        }));
        let mut inputs = Inputs::default();
        inputs.configmaps.insert(
            "cm".into(),
            serde_json::from_value(serde_json::json!({"metadata": {"name": "cm"}, "data": {"k": "v", "bad key": "z"}}))
                .unwrap(),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env = container_env(&p, &ctx(), c, &inputs).unwrap();
        assert_eq!(env.get("POD_IP").as_deref(), Some("10.213.0.5"));
        assert_eq!(env.get("NAME").as_deref(), Some("x-ns"));
        assert_eq!(env.get("APP").as_deref(), Some("x"));
        assert_eq!(env.get("K").as_deref(), Some("v"));
        assert_eq!(env.get("CM_k").as_deref(), Some("v"));
        assert_eq!(env.get("CM_bad key"), None);
        assert_eq!(env.get("KUBERNETES_SERVICE_PORT").as_deref(), Some("6443"));
        assert_eq!(container_argv(c, &env), vec!["--config", "/etc/x-ns/c.yaml"]);
    }

    #[test]
    fn volumes_and_mounts() {
        let dir = std::env::temp_dir().join(format!("olb-podspec-test-{}", std::process::id()));
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceAccountName": "sa",
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "conf", "mountPath": "/etc/conf"},
                    {"name": "data", "mountPath": "/etc/conf/data"},
                    {"name": "api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                    {"name": "conf", "mountPath": "/etc/one.yaml", "subPath": "c.yaml"}
                ]}],
                "volumes": [
                    {"name": "conf", "configMap": {"name": "cm"}},
                    {"name": "data", "emptyDir": {}},
                    {"name": "api", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                    ]}}
                ]
            }
        }));
        assert_eq!(referenced_configmaps(&p).into_iter().collect::<Vec<_>>(), vec!["cm", "kube-root-ca.crt"]);
        let needs = token_needs(&p);
        assert_eq!(needs.len(), 1);
        assert_eq!(needs[0].key, "api/0");
        assert_eq!(needs[0].service_account, "sa");
        let mut inputs = Inputs::default();
        inputs
            .configmaps
            .insert("cm".into(), serde_json::from_value(serde_json::json!({"data": {"c.yaml": "a: 1"}})).unwrap());
        inputs.configmaps.insert(
            "kube-root-ca.crt".into(),
            serde_json::from_value(serde_json::json!({"data": {"ca.crt": "PEM"}})).unwrap(),
        );
        inputs.tokens.insert("api/0".into(), "TOKEN".into());
        let vols = materialize_volumes(&p, &ctx(), &inputs, &dir).unwrap();
        let api = &vols["api"];
        assert_eq!(std::fs::read_to_string(api.join("token")).unwrap(), "TOKEN");
        assert_eq!(std::fs::read_to_string(api.join("ca.crt")).unwrap(), "PEM");
        assert_eq!(std::fs::read_to_string(api.join("namespace")).unwrap(), "ns");
        assert_eq!(std::fs::read_to_string(vols["conf"].join("c.yaml")).unwrap(), "a: 1");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mounts = container_mounts(c, &vols).unwrap();
        assert_eq!(mounts[0].dst, PathBuf::from("/etc/conf"));
        assert!(mounts.iter().any(|m| m.read_only));
        let locs = mount_point_locations(&mounts);
        let data_loc = mounts.iter().zip(&locs).find(|(m, _)| m.dst.ends_with("data")).unwrap().1;
        assert!(data_loc.0.starts_with(&dir), "{data_loc:?}");
        let file_loc = mounts.iter().zip(&locs).find(|(m, _)| m.dst.ends_with("one.yaml")).unwrap().1;
        assert!(file_loc.1, "subPath file mount point is a file");
        // Unchanged data is left alone; new data swaps ..data and old keys go.
        assert!(
            !write_atomic(&vols["conf"], &[(PathBuf::from("c.yaml"), b"a: 1".to_vec())].into_iter().collect()).unwrap()
        );
        assert!(
            write_atomic(&vols["conf"], &[(PathBuf::from("d.yaml"), b"b: 2".to_vec())].into_iter().collect()).unwrap()
        );
        assert!(!vols["conf"].join("c.yaml").exists());
        assert_eq!(std::fs::read_to_string(vols["conf"].join("d.yaml")).unwrap(), "b: 2");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
