//! The gzip decompression with a size limit of the OTLP/HTTP receiver (`Content-Encoding: gzip`).
//!
//! That code sits inside `dataplane::receive::http::handle` and is not public, so this target fuzzes a copy,
//! [`fuzz_support::gunzip_limited`], written the same way (`GzDecoder` → `take(max + 1)` → `read_to_end`).
//!
//! Input: byte 0 chooses the mode, bytes 1..3 the limit (0..=65535 bytes), the rest is the payload.
//! - mode even: the payload is the raw body (arbitrary bytes, mostly not gzip);
//! - mode odd: the payload is compressed first (level from the mode byte), so that the limit is reached in real
//!   streams, at and around the boundary.
//!
//! Must not panic; never returns more than the limit; "too large" exactly when the stream holds more than the limit;
//! what it returns is the whole stream, byte for byte (checked against an unlimited decoder, itself capped).
#![no_main]

use std::io::{Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use fuzz_support::{GunzipError, gunzip_limited};
use libfuzzer_sys::fuzz_target;

/// Reference: the first gzip member, decoded with no limit but `cap`.
fn reference(raw: &[u8], cap: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw).take(cap).read_to_end(&mut out)?;
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let [mode, lo, hi, payload @ ..] = data else { return };
    let max = usize::from(u16::from_le_bytes([*lo, *hi]));
    let compressed;
    let raw: &[u8] = if mode % 2 == 1 {
        let mut enc = GzEncoder::new(Vec::new(), Compression::new(u32::from(mode / 2 % 10)));
        enc.write_all(payload).expect("compress");
        compressed = enc.finish().expect("compress");
        &compressed
    } else {
        payload
    };
    let got = gunzip_limited(raw, max);
    // 4 MiB is far above any limit here (64 KiB) and bounds a bomb's cost.
    let truth = reference(raw, 4 << 20);
    match (&got, &truth) {
        (Ok(out), Ok(all)) => {
            assert!(out.len() <= max, "returned {} bytes over the limit of {max}", out.len());
            assert!(out == all, "returned a prefix of the stream as if it were all of it");
        }
        (Err(GunzipError::TooLarge), Ok(all)) => assert!(all.len() > max, "too large, yet {} <= {max}", all.len()),
        (Ok(_), Err(e)) => panic!("accepted a stream the reference rejects: {e}"),
        // The reference reads further than the limited reader: an error past the limit is not seen by the latter.
        (Err(GunzipError::TooLarge), Err(_)) => {}
        (Err(GunzipError::Invalid(e)), Ok(all)) => {
            panic!("rejected a stream of {} bytes the reference accepts: {e}", all.len())
        }
        (Err(GunzipError::Invalid(_)), Err(_)) => {}
    }
    if mode % 2 == 1 {
        match got {
            Ok(out) => assert!(out == payload, "round trip"),
            Err(GunzipError::TooLarge) => assert!(payload.len() > max),
            Err(GunzipError::Invalid(e)) => panic!("our own gzip stream is invalid: {e}"),
        }
    }
});
