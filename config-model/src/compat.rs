//! The Collector's forms on input, applied to the parsed document before it is read into the model: the block's
//! name (`loadbalancing`, `loadbalancing/<name>`, `load_balancing`, `load_balancing/<name>`), and the keys of the
//! Collector's exporter that otlp-lb does not implement.
//!
//! [`COLLECTOR_KEYS`] is the one declaration of those keys: each is either ignored (removed, with a warning that
//! names it in full and says what happens instead) or refused (an error that says what to write instead). A key
//! listed here never reaches the model, so an ignored key cannot go without its warning.

use serde_json::{Map, Value};

use crate::{ConfigError, invalid};

/// The name the block is read under, whatever name it was given.
pub const BLOCK: &str = "loadbalancing";

/// What otlp-lb does with a Collector key it does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Accepted and ignored, with a warning; the text says what happens instead.
    Ignored(&'static str),
    /// An error; the text says what to write instead.
    Refused(&'static str),
}

use Treatment::{Ignored, Refused};

const PER_BACKEND_QUEUE: &str = "use loadbalancing.protocol.otlp.sending_queue for per-backend queues";
const TLS_DEFAULTS: &str = "TLS 1.2 and 1.3 with rustls's default cipher suites and key exchange groups";

/// Keys of the Collector's loadbalancing exporter (and of its OTLP exporter template) that otlp-lb does not
/// implement, by full path under the block.
pub const COLLECTOR_KEYS: &[(&str, Treatment)] = &[
    ("loadbalancing.timeout", Ignored("use loadbalancing.protocol.otlp.timeout and retry_on_failure.max_elapsed_time")),
    ("loadbalancing.sending_queue.enabled", Ignored("use sending_queue.ack: queued")),
    ("loadbalancing.sending_queue.num_consumers", Ignored(PER_BACKEND_QUEUE)),
    ("loadbalancing.sending_queue.queue_size", Ignored(PER_BACKEND_QUEUE)),
    ("loadbalancing.sending_queue.sizer", Ignored(PER_BACKEND_QUEUE)),
    ("loadbalancing.sending_queue.block_on_overflow", Ignored("a full write-ahead log refuses requests")),
    ("loadbalancing.sending_queue.wait_for_result", Ignored("sending_queue.ack says when clients are acknowledged")),
    ("loadbalancing.sending_queue.batch", Ignored("parts for the same backend are coalesced instead")),
    ("loadbalancing.protocol.otlp.endpoint", Ignored("backends come from the resolver")),
    ("loadbalancing.protocol.otlp.balancer_name", Ignored("one connection per backend")),
    ("loadbalancing.protocol.otlp.keepalive", Ignored("connections are PINGed every 30s, 10s timeout")),
    ("loadbalancing.protocol.otlp.auth", Ignored("use headers")),
    ("loadbalancing.protocol.otlp.middlewares", Ignored("not implemented")),
    ("loadbalancing.protocol.otlp.authority", Ignored("the backend's address is the authority")),
    ("loadbalancing.protocol.otlp.user_agent", Ignored("otlp-lb sends its own")),
    ("loadbalancing.protocol.otlp.write_buffer_size", Ignored("not implemented")),
    ("loadbalancing.protocol.otlp.read_buffer_size", Ignored("not implemented")),
    ("loadbalancing.protocol.otlp.wait_for_ready", Ignored("a part that cannot be sent is retried")),
    ("loadbalancing.protocol.otlp.retry_on_failure", Ignored("use loadbalancing.retry_on_failure")),
    (
        "loadbalancing.protocol.otlp.sending_queue.storage",
        Ignored("for a durable queue use loadbalancing.sending_queue: {ack: queued, storage: <directory>}"),
    ),
    ("loadbalancing.protocol.otlp.sending_queue.blocking", Ignored("a full queue fails the part, which is retried")),
    (
        "loadbalancing.protocol.otlp.sending_queue.block_on_overflow",
        Ignored("a full queue fails the part, which is retried"),
    ),
    (
        "loadbalancing.protocol.otlp.sending_queue.wait_for_result",
        Ignored("requests are acknowledged after the backends accept them"),
    ),
    (
        "loadbalancing.protocol.otlp.sending_queue.batch",
        Ignored("parts waiting for the same backend are coalesced instead: sending_queue.coalesce"),
    ),
    ("loadbalancing.protocol.otlp.tls.cipher_suites", Ignored(TLS_DEFAULTS)),
    ("loadbalancing.protocol.otlp.tls.curve_preferences", Ignored(TLS_DEFAULTS)),
    ("loadbalancing.protocol.otlp.tls.include_insecure_cipher_suites", Ignored(TLS_DEFAULTS)),
    (
        "loadbalancing.protocol.otlp.tls.include_system_ca_certs_pool",
        Ignored("with ca_file only its CAs are trusted; without, the system's"),
    ),
    ("loadbalancing.protocol.otlp.tls.reload_interval", Ignored("the files are read when a connection opens")),
    ("loadbalancing.protocol.otlp.tls.ca_pem", Refused("write the CA certificates to a file and give tls.ca_file")),
    ("loadbalancing.protocol.otlp.tls.cert_pem", Refused("write the certificate to a file and give tls.cert_file")),
    ("loadbalancing.protocol.otlp.tls.key_pem", Refused("write the key to a file and give tls.key_file")),
    ("loadbalancing.protocol.otlp.tls.tpm", Refused("give the client key in tls.key_file")),
];

/// The warning of an ignored key.
pub fn ignored_warning(path: &str, what: &str) -> String {
    format!("{path} is not supported and is ignored ({what})")
}

/// Whether a top-level key names the block: the Collector's component id `loadbalancing[/<name>]`, or
/// `load_balancing[/<name>]`.
fn is_block_name(key: &str) -> bool {
    let (kind, name) = key.split_once('/').map_or((key, None), |(k, n)| (k, Some(n)));
    (kind == BLOCK || kind == "load_balancing") && name.is_none_or(|n| !n.trim().is_empty())
}

/// Renames the block to [`BLOCK`] and removes the keys of [`COLLECTOR_KEYS`]; returns the warnings.
pub fn normalize(doc: &mut Value) -> Result<Vec<String>, ConfigError> {
    let Some(top) = doc.as_object_mut() else { return Ok(Vec::new()) };
    rename_block(top)?;
    let mut warnings = Vec::new();
    for (path, treatment) in COLLECTOR_KEYS {
        let present = take(top, path);
        match (present, treatment) {
            (false, _) => {}
            (true, Ignored(what)) => warnings.push(ignored_warning(path, what)),
            (true, Refused(instead)) => return Err(invalid(*path, format!("not supported; {instead}"))),
        }
    }
    Ok(warnings)
}

fn rename_block(top: &mut Map<String, Value>) -> Result<(), ConfigError> {
    let names: Vec<String> = top.keys().filter(|k| is_block_name(k)).cloned().collect();
    match names.as_slice() {
        [] => Ok(()),
        [name] => {
            if name != BLOCK
                && let Some(block) = top.remove(name)
            {
                top.insert(BLOCK.to_string(), block);
            }
            Ok(())
        }
        _ => Err(invalid(
            "(document)",
            format!("one load-balancing block only, found {}: remove all but one", names.join(", ")),
        )),
    }
}

/// Removes the key at a dotted path; whether it was there.
fn take(top: &mut Map<String, Value>, path: &str) -> bool {
    let mut keys: Vec<&str> = path.split('.').collect();
    let Some(last) = keys.pop() else { return false };
    let mut map = top;
    for key in keys {
        match map.get_mut(key).and_then(Value::as_object_mut) {
            Some(next) => map = next,
            None => return false,
        }
    }
    map.remove(last).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names() {
        for name in ["loadbalancing", "loadbalancing/east", "load_balancing", "load_balancing/x"] {
            assert!(is_block_name(name), "{name}");
        }
        for name in ["loadbalancing/", "loadbalancer", "routing", "load_balancing/ "] {
            assert!(!is_block_name(name), "{name}");
        }
    }
}
