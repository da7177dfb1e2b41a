//! Fault-injection modes of the sink, settable at start (flags) and at run time (`POST /mode`): how to answer,
//! how long to wait before answering, and periodic UNAVAILABLE failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How the sink answers export requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Accept and count.
    #[default]
    Ok,
    /// gRPC UNAVAILABLE / HTTP 503.
    Unavailable,
    /// gRPC RESOURCE_EXHAUSTED / HTTP 429.
    #[value(name = "resource_exhausted", alias = "resource-exhausted")]
    ResourceExhausted,
    /// gRPC INVALID_ARGUMENT / HTTP 400.
    #[value(name = "invalid_argument", alias = "invalid-argument")]
    InvalidArgument,
    /// Never answer until the mode changes or the client gives up.
    Hang,
}

impl Reply {
    /// The gRPC code name, used as the key of `rejected_requests` in the report.
    pub fn code(self) -> &'static str {
        match self {
            Reply::Ok => "OK",
            Reply::Unavailable => "UNAVAILABLE",
            Reply::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Reply::InvalidArgument => "INVALID_ARGUMENT",
            Reply::Hang => "HANG",
        }
    }
}

/// The mode; fields omitted from a `POST /mode` body take their defaults (`ok`, 0, 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mode {
    pub reply: Reply,
    /// Wait this long before answering.
    pub delay_ms: u64,
    /// Every Nth request fails with UNAVAILABLE (0 = never).
    pub fail_every: u64,
}

/// The current mode and the request counter `fail_every` counts with.
pub struct ModeSwitch {
    tx: watch::Sender<Mode>,
    requests: AtomicU64,
}

impl ModeSwitch {
    pub fn new(mode: Mode) -> ModeSwitch {
        ModeSwitch { tx: watch::channel(mode).0, requests: AtomicU64::new(0) }
    }

    pub fn get(&self) -> Mode {
        *self.tx.borrow()
    }

    /// Sets the mode; requests hanging under the old mode are answered under the new one.
    pub fn set(&self, mode: Mode) {
        self.tx.send_replace(mode);
    }

    /// Decides how to answer the next request, waiting as the mode says.
    pub async fn decide(&self) -> Reply {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut rx = self.tx.subscribe();
        // Each turn either answers or waits for a mode change: the loop runs once per change while hanging.
        loop {
            let mode = *rx.borrow_and_update();
            if mode.reply == Reply::Hang {
                if rx.changed().await.is_err() {
                    return Reply::Unavailable;
                }
                continue;
            }
            if mode.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(mode.delay_ms)).await;
            }
            if mode.fail_every > 0 && n.is_multiple_of(mode.fail_every) {
                return Reply::Unavailable;
            }
            return mode.reply;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_json_defaults_and_names() {
        let m: Mode = serde_json::from_str(r#"{"reply":"resource_exhausted"}"#).expect("valid");
        assert_eq!(m, Mode { reply: Reply::ResourceExhausted, delay_ms: 0, fail_every: 0 });
        assert!(serde_json::from_str::<Mode>(r#"{"reply":"nope"}"#).is_err());
        assert!(serde_json::from_str::<Mode>(r#"{"delay":1}"#).is_err());
    }

    #[tokio::test]
    async fn fail_every_and_hang_release() {
        let s = std::sync::Arc::new(ModeSwitch::new(Mode { fail_every: 2, ..Mode::default() }));
        assert_eq!(s.decide().await, Reply::Ok);
        assert_eq!(s.decide().await, Reply::Unavailable);
        s.set(Mode { reply: Reply::Hang, ..Mode::default() });
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.decide().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        s.set(Mode::default());
        assert_eq!(waiter.await.ok(), Some(Reply::Ok));
    }
}
