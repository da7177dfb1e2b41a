//! The tiny HTTP/1.1 client the harness uses for plain-HTTP endpoints
//! (etcd's `/health`, the components' `/readyz`, the data plane's
//! `/metrics` and `/debug/pool`), with a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nhello").unwrap(), (200, "hello".to_string()));
        assert!(parse_response(b"garbage").is_err());
    }

    #[tokio::test]
    async fn http_get_against_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 503 X\r\nContent-Length: 4\r\n\r\nbusy").await;
        });
        assert_eq!(http_get(addr, "/readyz", &[], Duration::from_secs(5)).await.unwrap(), (503, "busy".to_string()));
    }
}
