//! Probes, as the kubelet runs them from the host: HTTP GET (status 200–399
//! is success) and TCP connect against the pod IP, each with a timeout. Also
//! the tiny HTTP/1.1 client the harness uses for plain-HTTP health endpoints
//! (etcd's `/health`, the components' `/readyz`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Most bytes of a response read.
const MAX_RESPONSE: u64 = 1 << 20;

/// GET `path` over plain HTTP/1.1; returns the status code and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(u16, String)> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/otlp-lb-e2e\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.context("sending request")?;
        let mut buf = Vec::new();
        (&mut stream).take(MAX_RESPONSE).read_to_end(&mut buf).await.context("reading response")?;
        parse_response(&buf)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => bail!("GET http://{addr}{path}: no response within {timeout:?}"),
    }
}

fn parse_response(buf: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let status_line = text.lines().next().unwrap_or("");
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("malformed HTTP status line {status_line:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// Result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Failure(String),
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// Resolves an int-or-named port against the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).with_context(|| format!("port {p} out of range")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .with_context(|| format!("container {} has no port named {name:?}", container.name))
        }
    }
}

/// Runs `probe` once against `pod_ip`. Exec probes run the image's own
/// tools, which the harness does not have: they count as success while the
/// process runs (logged by the caller). gRPC and HTTPS probes are checked as
/// TCP connects.
pub async fn run(probe: &Probe, pod_ip: IpAddr, container: &Container) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).clamp(1, 60) as u64);
    let res: Result<Outcome> = async {
        if let Some(h) = &probe.http_get {
            let port = resolve_port(&h.port, container)?;
            let host: IpAddr = match h.host.as_deref() {
                Some(host) if !host.is_empty() => {
                    host.parse().with_context(|| format!("probe host {host:?} is not an IP"))?
                }
                _ => pod_ip,
            };
            let addr = SocketAddr::new(host, port);
            if h.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                    .await
                    .context("timeout")?
                    .with_context(|| format!("connecting to {addr}"))?;
                return Ok(Outcome::Success);
            }
            let path = h.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            let headers: Vec<(String, String)> =
                h.http_headers.iter().flatten().map(|x| (x.name.clone(), x.value.clone())).collect();
            let (code, body) = http_get(addr, path, &headers, timeout).await?;
            return Ok(if (200..400).contains(&code) {
                Outcome::Success
            } else {
                Outcome::Failure(format!(
                    "HTTP probe failed with statuscode: {code} {}",
                    body.chars().take(200).collect::<String>()
                ))
            });
        }
        let tcp_port = if let Some(t) = &probe.tcp_socket {
            Some(resolve_port(&t.port, container)?)
        } else if let Some(g) = &probe.grpc {
            Some(u16::try_from(g.port).context("grpc probe port")?)
        } else {
            None
        };
        if let Some(port) = tcp_port {
            let addr = SocketAddr::new(pod_ip, port);
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                .await
                .with_context(|| format!("dial tcp {addr}: i/o timeout"))?
                .with_context(|| format!("dial tcp {addr}"))?;
            return Ok(Outcome::Success);
        }
        Ok(Outcome::Success)
    }
    .await;
    res.unwrap_or_else(|e| Outcome::Failure(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nhello").unwrap(), (200, "hello".to_string()));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "health", "containerPort": 13133}]
        }))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::String("health".into()), &c).unwrap(), 13133);
        assert_eq!(resolve_port(&IntOrString::Int(8888), &c).unwrap(), 8888);
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[tokio::test]
    async fn http_probe_against_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for code in [200u16, 503] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let probe: Probe =
            serde_json::from_value(serde_json::json!({"httpGet": {"path": "/readyz", "port": addr.port()}})).unwrap();
        let c = Container { name: "c".into(), ..Default::default() };
        assert_eq!(run(&probe, addr.ip(), &c).await, Outcome::Success);
        assert!(!run(&probe, addr.ip(), &c).await.ok());
    }
}
