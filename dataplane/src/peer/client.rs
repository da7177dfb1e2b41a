//! Requests to one peer: a protobuf body over HTTP/1.1 on a fresh connection, with the shared bearer token, bounded
//! in time. Peer requests are rare (at start and at each ring switch), so connections are not kept.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;

/// How the error of a peer that refuses connections (not serving) begins.
pub const CONNECT_FAILED: &str = "cannot connect";

/// Largest answer taken from a peer (a held table of several million traces).
pub const MAX_BODY: usize = 256 << 20;

/// Sends `body` to `path` of the peer at `address` and decodes its answer as `T`, all within `timeout`.
pub async fn call<T: Message + Default>(
    address: &str,
    method: Method,
    path: &str,
    authorization: Option<&[u8]>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<T, String> {
    tokio::time::timeout(timeout, exchange(address, method, path, authorization, body))
        .await
        .map_err(|_| format!("no answer in {timeout:?}"))?
}

async fn exchange<T: Message + Default>(
    address: &str,
    method: Method,
    path: &str,
    authorization: Option<&[u8]>,
    body: Vec<u8>,
) -> Result<T, String> {
    let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| format!("{CONNECT_FAILED}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, address)
        .header(header::CONTENT_TYPE, "application/x-protobuf");
    if let Some(a) = authorization {
        request = request.header(header::AUTHORIZATION, a);
    }
    let request = request.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
    let answer = async {
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("answer: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]).trim()));
        }
        T::decode(body).map_err(|e| format!("undecodable answer: {e}"))
    }
    .await;
    driver.abort();
    answer
}
