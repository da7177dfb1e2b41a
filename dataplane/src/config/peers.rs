//! `peers:`: the other replicas of this load-balancer tier. With it, replicas agree on when each new ring takes
//! effect and exchange the traces they hold, so that a trace whose requests reach several replicas keeps one
//! backend through every pool change (see [`crate::peer`]). A single replica needs none of it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, ReceiverAuth, invalid};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    /// Where this replica serves the peer API.
    pub endpoint: SocketAddr,
    /// The replicas' peer API addresses (`host:port`); this replica's own address may be among them.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Or a name whose A and AAAA records are the replicas (a headless Service), resolved at start and at each
    /// pool change.
    #[serde(default)]
    pub dns: Option<PeerDns>,
    /// The token every replica presents to the others (`bearer_token` or `bearer_token_file`).
    pub auth: ReceiverAuth,
    /// How far ahead a replica that sees a new member set proposes to switch to it: the longest time between
    /// two replicas seeing the same change.
    #[serde(default = "default_switch_delay")]
    pub switch_delay: Dur,
    /// Bound on each peer request, and on how long requests wait for the peers' tables after a switch (and a
    /// starting replica for them before it reports ready).
    #[serde(default = "default_exchange_timeout")]
    pub exchange_timeout: Dur,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerDns {
    pub hostname: String,
    pub port: u16,
}

fn default_switch_delay() -> Dur {
    Dur::secs(2)
}

fn default_exchange_timeout() -> Dur {
    Dur::secs(2)
}

impl Peers {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (self.addresses.is_empty(), &self.dns) {
            (true, None) => return Err(invalid("peers", "list the replicas' peer addresses, or a dns name for them")),
            (false, Some(_)) => return Err(invalid("peers", "set either addresses or dns, not both")),
            _ => {}
        }
        if let Some(bad) =
            self.addresses.iter().find(|a| a.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()))
        {
            return Err(invalid("peers.addresses", format!("{bad:?} is not host:port")));
        }
        if self.dns.as_ref().is_some_and(|d| d.hostname.trim().is_empty() || d.port == 0) {
            return Err(invalid("peers.dns", "give a hostname and a port"));
        }
        if self.switch_delay.0.is_zero() {
            return Err(invalid("peers.switch_delay", "must be greater than 0"));
        }
        if self.exchange_timeout.0.is_zero() {
            return Err(invalid("peers.exchange_timeout", "must be greater than 0"));
        }
        Ok(())
    }
}
