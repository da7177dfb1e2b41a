//! `loadbalancing.protocol.otlp.tls`: TLS towards the backends, read as the Collector reads it.

use serde::{Deserialize, Serialize};

/// TLS towards the backends, as the Collector reads it: TLS unless `insecure: true` (default false) and no
/// `ca_file`; verified against `ca_file` (or the system's roots), with a client certificate (`cert_file`,
/// `key_file`) for mutual TLS; TLS 1.2 and 1.3 within `min_version` and `max_version`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTls {
    pub insecure: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name_override: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

/// TLS versions as the Collector names them, oldest first; otlp-lb speaks the last two.
const TLS_VERSIONS: [&str; 4] = ["1.0", "1.1", "1.2", "1.3"];

impl ClientTls {
    /// Plaintext: `insecure: true` and no CA to verify with (the Collector's rule: a CA turns TLS on).
    pub fn plaintext(&self) -> bool {
        self.insecure && self.ca_file.is_none()
    }

    /// Which of TLS 1.2 and 1.3 `min_version` and `max_version` allow (both when unset).
    pub fn protocol_versions(&self) -> Result<(bool, bool), String> {
        let index = |key: &str, v: &Option<String>, unset: usize| match v.as_deref().map(str::trim) {
            None | Some("") => Ok(unset),
            Some(v) => TLS_VERSIONS
                .iter()
                .position(|t| *t == v)
                .ok_or_else(|| format!("{key}: {v:?} is not a TLS version; one of {}", TLS_VERSIONS.join(", "))),
        };
        let min = index("min_version", &self.min_version, 0)?;
        let max = index("max_version", &self.max_version, TLS_VERSIONS.len() - 1)?;
        let (tls12, tls13) = ((min..=max).contains(&2), (min..=max).contains(&3));
        if !tls12 && !tls13 {
            return Err("min_version and max_version leave no version otlp-lb speaks (1.2, 1.3)".to_string());
        }
        Ok((tls12, tls13))
    }
}
