//! One unary gRPC call with an encoded message. The request frame is built here: the message compressed by a
//! compressor kept per thread (tonic sets up a new one per message, and setting up a streaming gzip compressor
//! costs about 5 µs, a third of compressing a 25-span part: `response/gzip6_empty_message` in `make bench`;
//! gzip is libdeflate's whole-buffer compressor, which has no such set-up); the answer's message is read, and a
//! missing or failed `grpc-status` turned into the right [`Status`].

use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, TE, USER_AGENT};
use http::uri::PathAndQuery;
use tonic::{Code, Status};

use super::connection::{self, Connection};
use crate::config::Compression;

/// gzip's level when none is configured (or `-1`): zlib's default, the level tonic and grpc-go (so the
/// Collector's exporter) use.
pub const GZIP_DEFAULT_LEVEL: i32 = 6;
/// The per-thread buffers of compression are dropped after a message that grew them beyond this.
const KEEP_BYTES: usize = 1 << 20;

/// The gzip compressor of a thread and its buffers.
struct Gzip {
    level: i32,
    compressor: libdeflater::Compressor,
    /// Several pieces gathered into one input.
    input: Vec<u8>,
    /// Where the stream is written: initialised bytes, at least the bound of the largest recent message.
    output: Vec<u8>,
}

thread_local! {
    static GZIP: RefCell<Option<Gzip>> = const { RefCell::new(None) };
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
}

/// How the messages to a backend are compressed: the method and, for gzip and zstd, the level (`None`: the
/// method's default, 6 for gzip, 3 for zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub compression: Compression,
    pub level: Option<i32>,
}

impl From<Compression> for Encoding {
    fn from(compression: Compression) -> Self {
        Encoding { compression, level: None }
    }
}

/// The gRPC length-prefixed frame of one message, the concatenation of `pieces` (requests of the same signal
/// concatenate into the request of all their items), compressed as `encoding` says. A frame is held until its
/// backend accepts it: gzip sizes it to the compressed message.
pub fn frame(pieces: &[&[u8]], encoding: Encoding) -> Result<Bytes, Status> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let compression = encoding.compression;
    let body = match compression {
        Compression::None => total,
        Compression::Gzip => 0,
        Compression::Zstd => total / 2 + 64,
    };
    let mut out = Vec::with_capacity(5 + body);
    out.extend_from_slice(&[0; 5]);
    let compressed = match compression {
        Compression::None => {
            pieces.iter().for_each(|p| out.extend_from_slice(p));
            false
        }
        Compression::Gzip => {
            gzip(pieces, total, encoding.level.unwrap_or(GZIP_DEFAULT_LEVEL), &mut out)
                .map_err(|e| Status::internal(format!("gzip: {e}")))?;
            true
        }
        Compression::Zstd => {
            zstd_into(pieces, encoding.level.unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL), &mut out)
                .map_err(|e| Status::internal(format!("zstd: {e}")))?;
            true
        }
    };
    let len = u32::try_from(out.len() - 5).map_err(|_| Status::resource_exhausted("message over 4 GiB"))?;
    out[0] = u8::from(compressed);
    out[1..5].copy_from_slice(&len.to_be_bytes());
    Ok(Bytes::from(out))
}

/// Appends to `out` the gzip stream at `level` of the concatenation of `pieces` (`total` bytes). libdeflate compresses
/// whole buffers: several pieces are gathered first, and the stream is written to a buffer kept per thread (already
/// initialised, as libdeflate writes to a slice) and copied to `out`, a copy of the compressed bytes only.
fn gzip(pieces: &[&[u8]], total: usize, level: i32, out: &mut Vec<u8>) -> Result<(), String> {
    GZIP.with(|cell| {
        let mut slot = cell.borrow_mut();
        let state = match slot.as_mut() {
            Some(state) if state.level == level => state,
            _ => {
                let lvl = libdeflater::CompressionLvl::new(level).map_err(|e| format!("level {level}: {e:?}"))?;
                slot.insert(Gzip {
                    level,
                    compressor: libdeflater::Compressor::new(lvl),
                    input: Vec::new(),
                    output: Vec::new(),
                })
            }
        };
        let input = gathered(pieces, total, &mut state.input);
        let bound = state.compressor.gzip_compress_bound(input.len());
        if state.output.len() < bound {
            state.output.resize(bound, 0);
        }
        let n = state.compressor.gzip_compress(input, &mut state.output[..bound]).map_err(|e| e.to_string())?;
        out.reserve_exact(n);
        out.extend_from_slice(&state.output[..n]);
        // A burst of large messages leaves no large buffers behind.
        for buffer in [&mut state.input, &mut state.output] {
            if buffer.capacity() > KEEP_BYTES {
                *buffer = Vec::new();
            }
        }
        Ok(())
    })
}

/// The concatenation of `pieces` (`total` bytes) as one slice: a single piece as it lies, several gathered in
/// `scratch`.
fn gathered<'a>(pieces: &[&'a [u8]], total: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    match pieces {
        [] => &[],
        [one] => one,
        _ => {
            scratch.clear();
            scratch.reserve(total);
            pieces.iter().for_each(|p| scratch.extend_from_slice(p));
            scratch
        }
    }
}

/// Appends the zstd frame at `level` of the concatenation of `pieces` to `out` (several pieces are gathered in a
/// buffer kept per thread: the bulk compressor takes one input).
fn zstd_into(pieces: &[&[u8]], level: i32, out: &mut Vec<u8>) -> std::io::Result<()> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (_, c, scratch) = match slot.as_mut() {
            Some(state) if state.0 == level => state,
            _ => slot.insert((level, zstd::bulk::Compressor::new(level)?, Vec::new())),
        };
        let input = gathered(pieces, pieces.iter().map(|p| p.len()).sum(), scratch);
        out.extend_from_slice(&c.compress(input)?);
        Ok(())
    })
}

/// Request headers of every call to a backend: the configured ones, then gRPC's (which win over a configured
/// header of the same name).
pub fn headers(compression: Compression, configured: &[(HeaderName, HeaderValue)]) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = configured.to_vec();
    out.extend([
        (TE, HeaderValue::from_static("trailers")),
        (CONTENT_TYPE, HeaderValue::from_static("application/grpc")),
        (HeaderName::from_static("grpc-accept-encoding"), HeaderValue::from_static("gzip,zstd")),
        (USER_AGENT, HeaderValue::from_static(concat!("otlp-lb/", env!("CARGO_PKG_VERSION")))),
    ]);
    let encoding = match compression {
        Compression::None => None,
        Compression::Gzip => Some("gzip"),
        Compression::Zstd => Some("zstd"),
    };
    if let Some(e) = encoding {
        out.push((HeaderName::from_static("grpc-encoding"), HeaderValue::from_static(e)));
    }
    out
}

/// The largest reply read from a backend (gRPC's default limit on received messages).
const MAX_REPLY_BYTES: usize = 4 << 20;

/// Sends `frame` to `path` over `connection` and returns the reply message. `authority` is the backend's address
/// as the request's `:authority`; `scheme` is `http` or `https`.
pub async fn unary(
    connection: &Connection,
    uri: (&http::uri::Scheme, &http::uri::Authority),
    path: &'static str,
    frame: Bytes,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
) -> Result<Bytes, Status> {
    let uri = http::Uri::builder()
        .scheme(uri.0.clone())
        .authority(uri.1.clone())
        .path_and_query(PathAndQuery::from_static(path))
        .build()
        .map_err(|e| Status::internal(format!("request URI: {e}")))?;
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    let map = request.headers_mut();
    map.reserve(headers.len() + 1);
    for (k, v) in headers {
        map.insert(k.clone(), v.clone());
    }
    if let Ok(v) = HeaderValue::try_from(format!("{}m", timeout.as_millis().clamp(1, 99_999_999))) {
        map.insert(HeaderName::from_static("grpc-timeout"), v);
    }
    let mut sender = connection.ready().await?;
    let (response, mut stream) = sender.send_request(request, false).map_err(|e| connection::status(&e))?;
    stream.send_data(frame, true).map_err(|e| connection::status(&e))?;
    let (head, mut body) = response.await.map_err(|e| connection::status(&e))?.into_parts();
    // A trailers-only answer: the status is in the headers.
    if let Some(status) = Status::from_header_map(&head.headers) {
        if status.code() != Code::Ok {
            return Err(status);
        }
        return Err(Status::internal("the backend answered OK without a message"));
    }
    if head.status != http::StatusCode::OK {
        return Err(http_status(head.status));
    }
    let mut message = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| connection::status(&e))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if message.len() + chunk.len() > MAX_REPLY_BYTES + 5 {
            return Err(Status::resource_exhausted(format!("the backend's answer is over {MAX_REPLY_BYTES} bytes")));
        }
        message.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(|e| connection::status(&e))?;
    match trailers.as_ref().and_then(Status::from_header_map) {
        Some(status) if status.code() == Code::Ok => {}
        Some(status) => return Err(status),
        None => return Err(Status::internal("the backend's answer has no grpc-status")),
    }
    let encoding = head.headers.get("grpc-encoding").map(HeaderValue::as_bytes);
    reply_message(message.freeze(), encoding)
}

/// The message of a reply's body: one gRPC frame, decompressed per `grpc-encoding`.
fn reply_message(body: Bytes, encoding: Option<&[u8]>) -> Result<Bytes, Status> {
    if body.len() < 5 {
        return Err(Status::internal("the backend's answer has no message"));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(Status::internal(format!(
            "the backend's answer is not one gRPC message ({} bytes after a {len}-byte frame)",
            body.len() - 5
        )));
    }
    let message = body.slice(5..);
    if body[0] == 0 {
        return Ok(message);
    }
    let mut out = Vec::new();
    match encoding {
        Some(b"gzip") => {
            flate2::read::GzDecoder::new(&message[..])
                .take(MAX_REPLY_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| Status::internal(format!("the backend's answer: gzip: {e}")))?;
        }
        Some(b"zstd") => {
            out = zstd::bulk::decompress(&message, MAX_REPLY_BYTES)
                .map_err(|e| Status::internal(format!("the backend's answer: zstd: {e}")))?;
        }
        other => {
            let name = other.map(String::from_utf8_lossy).unwrap_or_else(|| "no grpc-encoding".into());
            return Err(Status::unimplemented(format!("the backend answered a compressed message in {name}")));
        }
    }
    if out.len() > MAX_REPLY_BYTES {
        return Err(Status::resource_exhausted(format!("the backend's answer is over {MAX_REPLY_BYTES} bytes")));
    }
    Ok(Bytes::from(out))
}

/// The gRPC status of an HTTP answer without `grpc-status` (a proxy's, or a server that is not gRPC), as gRPC's
/// HTTP-to-gRPC mapping gives it.
fn http_status(status: http::StatusCode) -> Status {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("the backend answered HTTP {status} without a gRPC status"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&frame[5..]).read_to_end(&mut out).expect("a gzip stream");
        out
    }

    #[test]
    fn frames_carry_flag_length_and_the_message_a_reused_compressor_compressed() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        // Larger than the buffers a thread keeps: they are dropped after it, and the next message still framed.
        let huge: Vec<u8> = (0..400_000u32).flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()).collect();
        for message in [&b"hello"[..], &big, &[], &huge, &b"hello again"[..]] {
            let f = frame(&[message], Compression::Gzip.into()).expect("framed");
            assert_eq!(f[0], 1, "compressed flag");
            assert_eq!(u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize, f.len() - 5);
            assert_eq!(gunzip(&f), message, "each message is a whole gzip stream of its own");
        }
        let f = frame(&[b"plain"], Compression::None.into()).expect("framed");
        assert_eq!(&f[..], &[0, 0, 0, 0, 5, b'p', b'l', b'a', b'i', b'n']);
        for message in [&b"zstd message"[..], &big] {
            let f = frame(&[message], Compression::Zstd.into()).expect("framed");
            assert_eq!(f[0], 1);
            assert_eq!(zstd::decode_all(&f[5..]).expect("a zstd frame"), message);
        }
    }

    #[test]
    fn the_level_is_the_configured_one_and_a_thread_switches_between_levels() {
        // Compressible enough that the levels differ in size.
        let text: Vec<u8> =
            (0..20_000u32).flat_map(|i| format!("span-{} service-{} ", i % 97, (i * 7) % 13).into_bytes()).collect();
        let at = |compression, level| frame(&[&text], Encoding { compression, level }).expect("framed");
        let (fast, default, small) =
            (at(Compression::Gzip, Some(1)), at(Compression::Gzip, None), at(Compression::Gzip, Some(9)));
        for f in [&fast, &default, &small] {
            assert_eq!(gunzip(f), text);
        }
        assert!(fast.len() > small.len(), "level 1 {} bytes, level 9 {} bytes", fast.len(), small.len());
        let mut reference =
            libdeflater::Compressor::new(libdeflater::CompressionLvl::new(GZIP_DEFAULT_LEVEL).expect("level"));
        let mut out = vec![0; reference.gzip_compress_bound(text.len())];
        let n = reference.gzip_compress(&text, &mut out).expect("gzip");
        assert_eq!(&default[5..], &out[..n], "no level: the default level");
        assert_eq!(at(Compression::Gzip, Some(1)), fast, "back to level 1 on the same thread");
        let (z1, z19) = (at(Compression::Zstd, Some(1)), at(Compression::Zstd, Some(19)));
        for f in [&z1, &z19] {
            assert_eq!(zstd::decode_all(&f[5..]).expect("a zstd frame"), text);
        }
        assert!(z1.len() > z19.len(), "zstd level 1 {} bytes, level 19 {} bytes", z1.len(), z19.len());
    }

    #[test]
    fn pieces_are_framed_as_their_concatenation() {
        let big: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 241).to_le_bytes()).collect();
        let pieces: [&[u8]; 5] = [b"first ", &[], &big, b" middle ", &big[..70_000]];
        let whole = pieces.concat();
        let f = frame(&pieces, Compression::Gzip.into()).expect("framed");
        assert_eq!(u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize, f.len() - 5);
        assert_eq!(gunzip(&f), whole);
        let f = frame(&pieces, Compression::Zstd.into()).expect("framed");
        assert_eq!(zstd::decode_all(&f[5..]).expect("a zstd frame"), whole);
        let f = frame(&pieces, Compression::None.into()).expect("framed");
        assert_eq!((f[0], &f[5..]), (0, &whole[..]));
        assert_eq!(gunzip(&frame(&[], Compression::Gzip.into()).expect("framed")), b"", "no piece: the empty message");
    }

    #[test]
    fn headers_name_the_encoding_and_keep_the_configured_ones() {
        let configured = [(HeaderName::from_static("x-tenant"), HeaderValue::from_static("a"))];
        let h = headers(Compression::Gzip, &configured);
        let get = |name: &str| {
            h.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v.to_str().unwrap_or_default().to_string())
        };
        assert_eq!(get("grpc-encoding").as_deref(), Some("gzip"));
        assert_eq!(get("content-type").as_deref(), Some("application/grpc"));
        assert_eq!(get("te").as_deref(), Some("trailers"));
        assert_eq!(get("x-tenant").as_deref(), Some("a"));
        assert!(headers(Compression::None, &[]).iter().all(|(k, _)| k.as_str() != "grpc-encoding"));
    }
}
