//! The ONE table mapping container images to local binaries.
//!
//! The node agent has no container runtime: a container's image only selects
//! which local binary to run. Matching is on the image's repository name (the
//! last path segment, without registry, tag or digest), first rule wins:
//!
//! | repository name                         | binary                                   |
//! |-----------------------------------------|------------------------------------------|
//! | `otlp-lb-operator`                      | `target/debug/otlp-lb-operator` (`OTLP_LB_OPERATOR_BIN`) |
//! | `otlp-lb`                               | `target/debug/otlp-lb` (`OTLP_LB_BIN`)   |
//! | contains `opentelemetry-collector`, or starts with `otelcol` | `$TOOLS_DIR/bin/otelcol-lb` |
//! | `telemetrygen`                          | `$TOOLS_DIR/bin/telemetrygen`            |
//!
//! Tests may add rules (e.g. a test-only image name) through
//! `ClusterOptions::image`. A container's `command[0]` names a path inside
//! the image, so it is replaced by the mapped binary: the process runs as
//! `<binary> command[1..] args`.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::tools;

/// How an image's repository name is matched.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(&'static str),
    Contains(&'static str),
    Prefix(&'static str),
    /// A test-supplied exact name.
    Named(String),
}

impl Pattern {
    fn matches(&self, repo: &str) -> bool {
        match self {
            Pattern::Exact(s) => repo == *s,
            Pattern::Contains(s) => repo.contains(s),
            Pattern::Prefix(s) => repo.starts_with(s),
            Pattern::Named(s) => repo == s,
        }
    }
}

/// What a matching image runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// A pinned tool in `$TOOLS_DIR/bin`.
    Tool(&'static str),
    /// `otlp-lb` (data plane).
    DataPlane,
    /// `otlp-lb-operator`.
    Operator,
    /// A fixed path (test-supplied rules).
    Path(PathBuf),
}

impl Target {
    /// The binary's path, or an error saying how to get it.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            Target::Tool(name) => tools::tool(name),
            Target::DataPlane => tools::otlp_lb_bin(),
            Target::Operator => tools::operator_bin(),
            Target::Path(p) => Ok(p.clone()),
        }
    }
}

/// The built-in rules, in order.
pub fn builtin_rules() -> Vec<(Pattern, Target)> {
    vec![
        (Pattern::Exact("otlp-lb-operator"), Target::Operator),
        (Pattern::Exact("otlp-lb"), Target::DataPlane),
        (Pattern::Contains("opentelemetry-collector"), Target::Tool(tools::OTELCOL)),
        (Pattern::Prefix("otelcol"), Target::Tool(tools::OTELCOL)),
        (Pattern::Exact("telemetrygen"), Target::Tool(tools::TELEMETRYGEN)),
    ]
}

/// The repository name of an image reference:
/// `ghcr.io/org/otlp-lb:0.1@sha256:..` → `otlp-lb`.
pub fn repo_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The image table: built-in rules after any extra (test) rules.
#[derive(Debug, Clone)]
pub struct ImageTable {
    rules: Vec<(Pattern, Target)>,
}

impl Default for ImageTable {
    fn default() -> Self {
        ImageTable { rules: builtin_rules() }
    }
}

impl ImageTable {
    /// Adds a rule that takes precedence over the built-in ones.
    pub fn with_rule(mut self, repo: impl Into<String>, binary: impl Into<PathBuf>) -> ImageTable {
        self.rules.insert(0, (Pattern::Named(repo.into()), Target::Path(binary.into())));
        self
    }

    /// The target for `image`.
    pub fn target(&self, image: &str) -> Result<&Target> {
        let repo = repo_name(image);
        match self.rules.iter().find(|(p, _)| p.matches(repo)) {
            Some((_, t)) => Ok(t),
            None => bail!("image {image:?} (repository {repo:?}) maps to no local binary; see e2e/src/images.rs"),
        }
    }

    /// The binary to run for `image`.
    pub fn binary(&self, image: &str) -> Result<PathBuf> {
        self.target(image)?.resolve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        assert_eq!(repo_name("ghcr.io/org/otlp-lb:0.1.0"), "otlp-lb");
        assert_eq!(repo_name("otlp-lb"), "otlp-lb");
        assert_eq!(repo_name("localhost:5000/otlp-lb-operator@sha256:abc"), "otlp-lb-operator");
        assert_eq!(repo_name("otel/opentelemetry-collector-contrib:0.161.0"), "opentelemetry-collector-contrib");
    }

    #[test]
    fn table_order() {
        let t = ImageTable::default();
        assert!(matches!(t.target("x/otlp-lb-operator:1").unwrap(), Target::Operator));
        assert!(matches!(t.target("x/otlp-lb:1").unwrap(), Target::DataPlane));
        assert!(matches!(t.target("otel/opentelemetry-collector-contrib:0.1").unwrap(), Target::Tool("otelcol-lb")));
        assert!(matches!(
            t.target("ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-k8s:1").unwrap(),
            Target::Tool("otelcol-lb")
        ));
        assert!(matches!(t.target("otelcol-lb").unwrap(), Target::Tool("otelcol-lb")));
        assert!(t.target("nginx:1.27").is_err());
        let t = t.with_rule("nginx", "/bin/true");
        assert!(matches!(t.target("nginx:1.27").unwrap(), Target::Path(_)));
    }
}
