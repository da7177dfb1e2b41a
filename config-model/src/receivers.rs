//! `receivers.otlp`: where clients send OTLP (gRPC, HTTP), with TLS and bearer-token authentication.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{ConfigError, Dur, invalid};

/// An empty key (`grpc:`) means "on, with defaults", as in the Collector.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Receivers {
    #[serde(default)]
    pub otlp: OtlpReceiver,
}

impl Receivers {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let protocols = &self.otlp.protocols;
        if protocols.grpc.is_none() && protocols.http.is_none() {
            return Err(invalid("receivers.otlp.protocols", "enable grpc, http or both"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiver {
    #[serde(default)]
    pub protocols: Protocols,
    /// Bearer-token authentication of clients, on both protocols.
    #[serde(default)]
    pub auth: Option<ReceiverAuth>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverAuth {
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
}

/// TLS of a receiver; with `client_ca_file`, mutual TLS.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: String,
    pub key_file: String,
    #[serde(default)]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcReceiver>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpReceiver>,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols { grpc: Some(GrpcReceiver::default()), http: Some(HttpReceiver::default()) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcReceiver {
    pub endpoint: SocketAddr,
    /// Largest decompressed request, in MiB.
    pub max_recv_msg_size_mib: u32,
    /// Close connections older than this (GOAWAY, ±10% jitter) so clients spread over replicas; 0s = never.
    pub max_connection_age: Dur,
    /// How long a closing connection may finish its requests.
    pub max_connection_age_grace: Dur,
    pub tls: Option<ServerTls>,
}

impl Default for GrpcReceiver {
    fn default() -> Self {
        GrpcReceiver {
            endpoint: SocketAddr::from(([0, 0, 0, 0], 4317)),
            max_recv_msg_size_mib: 16,
            max_connection_age: Dur::secs(0),
            max_connection_age_grace: Dur::secs(10),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpReceiver {
    pub endpoint: SocketAddr,
    /// Largest request body as sent (compressed), in bytes.
    pub max_request_body_size: usize,
    /// Largest request body after decompression, in bytes.
    pub max_decompressed_body_size: usize,
    pub tls: Option<ServerTls>,
}

impl Default for HttpReceiver {
    fn default() -> Self {
        HttpReceiver {
            endpoint: SocketAddr::from(([0, 0, 0, 0], 4318)),
            max_request_body_size: 20 << 20,
            max_decompressed_body_size: 64 << 20,
            tls: None,
        }
    }
}
