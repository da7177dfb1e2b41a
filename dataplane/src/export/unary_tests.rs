//! One gRPC call over a backend's connection, against a real HTTP/2 server (`h2`'s) whose answers each test
//! chooses: the reply message, gRPC and HTTP failures, a connection the backend closes after every request.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use tokio::net::TcpListener;
use tonic::Code;

use super::connection::Connection;
use super::grpc;
use crate::config::{ClientTls, Compression};

#[derive(Clone, Copy)]
enum Answer {
    /// 200, the message framed (gzip-compressed when `true`), `grpc-status: 0` in the trailers.
    Message(&'static [u8], bool),
    /// A trailers-only answer with this `grpc-status`.
    TrailersOnly(u16),
    /// This HTTP status and no gRPC status at all.
    Http(u16),
    /// 200 and a message, but trailers without `grpc-status`.
    NoStatus,
}

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<(http::request::Parts, Vec<u8>)>>,
}

/// A backend on a loopback port answering every request with `answer`; with `once`, it closes each connection
/// (GOAWAY) after its first request.
async fn backend(answer: Answer, once: bool) -> (SocketAddr, Arc<Seen>) {
    backend_after(answer, once, Duration::ZERO).await
}

/// [`backend`], answering each request `delay` after it arrived.
async fn backend_after(answer: Answer, once: bool, delay: Duration) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else { return };
                while let Some(Ok((request, respond))) = conn.accept().await {
                    tokio::spawn(serve(request, respond, answer, Arc::clone(&s), delay));
                    if once {
                        conn.graceful_shutdown();
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn serve(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    answer: Answer,
    seen: Arc<Seen>,
    delay: Duration,
) {
    let (parts, mut body) = request.into_parts();
    let mut received = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    seen.requests.lock().expect("lock").push((parts, received));
    tokio::time::sleep(delay).await;
    let head = |status: u16| http::Response::builder().status(status).header("content-type", "application/grpc");
    let grpc_ok = || {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        t
    };
    let result = match answer {
        Answer::Message(message, gzip) => {
            let head = if gzip { head(200).header("grpc-encoding", "gzip") } else { head(200) };
            let Ok(mut stream) = respond.send_response(head.body(()).expect("response"), false) else { return };
            let _ = stream.send_data(frame(message, gzip), false);
            stream.send_trailers(grpc_ok())
        }
        Answer::TrailersOnly(code) => {
            let head = head(200).header("grpc-status", code.to_string()).header("grpc-message", "the backend says no");
            respond.send_response(head.body(()).expect("response"), true).map(drop)
        }
        Answer::Http(status) => {
            respond.send_response(http::Response::builder().status(status).body(()).expect("response"), true).map(drop)
        }
        Answer::NoStatus => {
            let Ok(mut stream) = respond.send_response(head(200).body(()).expect("response"), false) else { return };
            let _ = stream.send_data(frame(b"", false), false);
            stream.send_trailers(http::HeaderMap::new())
        }
    };
    result.expect("answered");
}

fn frame(message: &[u8], gzip: bool) -> Bytes {
    let body = if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(message).expect("gzip");
        e.finish().expect("gzip")
    } else {
        message.to_vec()
    };
    let mut out = vec![u8::from(gzip)];
    out.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

async fn call(connection: &Connection, addr: SocketAddr, message: &[u8]) -> Result<Bytes, tonic::Status> {
    let authority = Authority::try_from(addr.to_string()).expect("authority");
    let headers = grpc::headers(Compression::None, &[]);
    let frame = grpc::frame(&[message], Compression::None.into())?;
    grpc::unary(connection, (&Scheme::HTTP, &authority), "/otlp.Test/Export", frame, &headers, Duration::from_secs(2))
        .await
}

fn plaintext(addr: SocketAddr) -> Connection {
    let tls = ClientTls { insecure: true, ..ClientTls::default() };
    Connection::new(&addr.to_string(), &tls, Duration::from_secs(2)).expect("connection")
}

#[tokio::test]
async fn a_call_sends_its_frame_and_headers_and_returns_the_reply_message() {
    for gzip in [false, true] {
        let (addr, seen) = backend(Answer::Message(b"partial success", gzip), false).await;
        let connection = plaintext(addr);
        let reply = call(&connection, addr, b"spans").await.expect("answered");
        assert_eq!(&reply[..], b"partial success");
        let requests = seen.requests.lock().expect("lock");
        let (parts, body) = &requests[0];
        assert_eq!(&body[..], &[0, 0, 0, 0, 5, b's', b'p', b'a', b'n', b's'], "the frame as sent");
        assert_eq!(parts.uri.path(), "/otlp.Test/Export");
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.headers.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert_eq!(parts.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/grpc"[..]));
        assert_eq!(parts.headers.get("grpc-timeout").map(|v| v.as_bytes()), Some(&b"2000m"[..]));
    }
}

#[tokio::test]
async fn calls_share_one_connection_and_open_another_after_goaway() {
    let (addr, seen) = backend(Answer::Message(b"ok", false), false).await;
    let connection = plaintext(addr);
    for _ in 0..5 {
        call(&connection, addr, b"x").await.expect("answered");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one connection carries every call");

    // A backend that closes every connection after one request: each call still gets through.
    let (addr, seen) = backend(Answer::Message(b"ok", false), true).await;
    let connection = plaintext(addr);
    for i in 0..4 {
        call(&connection, addr, b"x").await.unwrap_or_else(|s| panic!("call {i}: {s:?}"));
        // Let the GOAWAY arrive before the next call, as it does between requests in practice.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 4, "a connection per call, each opened after the last closed");
}

#[tokio::test]
async fn a_call_after_goaway_opens_a_new_connection_while_the_old_one_finishes() {
    let (addr, seen) = backend_after(Answer::Message(b"ok", false), true, Duration::from_millis(400)).await;
    let connection = Arc::new(plaintext(addr));
    let c = Arc::clone(&connection);
    let first = tokio::spawn(async move { call(&c, addr, b"first").await });
    // The first request has arrived and the backend sent GOAWAY; its answer is still 300 ms away, so the
    // connection is open but takes no new stream.
    tokio::time::sleep(Duration::from_millis(100)).await;
    call(&connection, addr, b"second").await.expect("the second call goes over a new connection");
    first.await.expect("joined").expect("the first call finishes on the closing connection");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failed_answers_are_grpc_statuses() {
    let cases = [
        (Answer::TrailersOnly(8), Code::ResourceExhausted),
        (Answer::TrailersOnly(3), Code::InvalidArgument),
        (Answer::Http(503), Code::Unavailable),
        (Answer::Http(404), Code::Unimplemented),
        (Answer::NoStatus, Code::Internal),
    ];
    for (answer, code) in cases {
        let (addr, _) = backend(answer, false).await;
        let status = call(&plaintext(addr), addr, b"x").await.expect_err("a failure");
        assert_eq!(status.code(), code, "{status:?}");
    }
}

#[tokio::test]
async fn an_unreachable_backend_is_unavailable() {
    let addr = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("address");
    // The listener is dropped: nothing listens there any more.
    let status = call(&plaintext(addr), addr, b"x").await.expect_err("nothing listens");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}
