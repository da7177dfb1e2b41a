//! `peers:`: the other replicas of this load-balancer tier. With it, replicas agree on when each new ring takes
//! effect and exchange the traces they hold, so that a trace whose requests reach several replicas keeps one
//! backend through every pool change (the data plane's `peer` module). A single replica needs none of it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Dur, ReceiverAuth, invalid};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    /// Where this replica serves the peer API.
    pub endpoint: SocketAddr,
    /// The replicas' peer API addresses (`host:port`); this replica's own address may be among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    /// Replicas found through `dns`, with the default delays.
    pub fn by_dns(endpoint: SocketAddr, dns: PeerDns, auth: ReceiverAuth) -> Peers {
        Peers {
            endpoint,
            addresses: Vec::new(),
            dns: Some(dns),
            auth,
            switch_delay: default_switch_delay(),
            exchange_timeout: default_exchange_timeout(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::{Config, Resolver};

    fn with_peers(peers: &str) -> Result<Config, String> {
        let text = format!(
            "loadbalancing:\n  resolver:\n    static: {{hostnames: [b1:4317], draining: [b2]}}\npeers:\n{peers}"
        );
        Config::parse(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_static_list_or_a_dns_name_with_a_token() {
        let c = with_peers(
            "  endpoint: 0.0.0.0:4319\n  addresses: [lb-0:4319, lb-1:4319]\n  auth: {bearer_token_file: /t}\n",
        )
        .expect("valid");
        let peers = c.peers.expect("peers");
        assert_eq!(peers.addresses.len(), 2);
        assert_eq!((peers.switch_delay.0.as_secs(), peers.exchange_timeout.0.as_secs()), (2, 2), "the defaults");
        let Resolver::Static(s) = &c.loadbalancing.resolver else { panic!("a static resolver") };
        let draining = s.draining_members().expect("valid");
        assert_eq!(draining, ["b2:4317"], "a draining hostname gets the default port");
        let c = with_peers(
            "  endpoint: 0.0.0.0:4319\n  dns: {hostname: lb-peers.ns.svc, port: 4319}\n  auth: {bearer_token: s}\n  \
             switch_delay: 500ms\n",
        )
        .expect("valid");
        assert_eq!(c.peers.expect("peers").switch_delay.0.as_millis(), 500);
    }

    #[test]
    fn invalid_blocks_name_their_field() {
        let auth = "  auth: {bearer_token: s}\n";
        for (peers, wanted) in [
            (format!("  endpoint: 0.0.0.0:4319\n{auth}"), "peers: list the replicas' peer addresses"),
            (
                format!("  endpoint: 0.0.0.0:4319\n  addresses: [a:1]\n  dns: {{hostname: x, port: 1}}\n{auth}"),
                "peers: set either addresses or dns",
            ),
            (
                format!("  endpoint: 0.0.0.0:4319\n  addresses: [lb-0]\n{auth}"),
                "peers.addresses: \"lb-0\" is not host:port",
            ),
            (format!("  endpoint: 0.0.0.0:4319\n  addresses: [a:1]\n  switch_delay: 0s\n{auth}"), "peers.switch_delay"),
            (
                format!("  endpoint: 0.0.0.0:4319\n  addresses: [a:1]\n  exchange_timeout: 0s\n{auth}"),
                "peers.exchange_timeout",
            ),
            ("  endpoint: 0.0.0.0:4319\n  addresses: [a:1]\n".to_string(), "auth"),
            (format!("  endpoint: 0.0.0.0:4319\n  addresses: [a:1]\n  token: x\n{auth}"), "peers"),
        ] {
            let e = with_peers(&peers).expect_err(&peers);
            assert!(e.contains(wanted), "{peers}: {e}");
        }
    }
}
