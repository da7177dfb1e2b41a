//! `dataplane::wire::fields` on arbitrary bytes, recursing into every length-delimited field to depth 4.
//! Must not panic; every field's `raw` re-reads as that one field; the raws of a message without a framing error
//! put back together give the message.
#![no_main]

use dataplane::wire::{self, Value};
use libfuzzer_sys::fuzz_target;

fn walk(buf: &[u8], depth: u32) {
    let mut rebuilt: Vec<u8> = Vec::with_capacity(buf.len());
    let mut failed = false;
    for f in wire::fields(buf) {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                let _ = e.to_string();
                failed = true;
                continue;
            }
        };
        assert!(!failed, "a field after a framing error");
        assert!(f.number > 0, "field number 0 accepted");
        rebuilt.extend_from_slice(f.raw);
        // The field's own encoding re-reads as exactly that field.
        let mut again = wire::fields(f.raw);
        let g = again.next().expect("raw holds a field").expect("raw re-reads");
        assert!(again.next().is_none(), "raw holds one field");
        assert_eq!((g.number, g.value), (f.number, f.value));
        match f.value {
            Value::Len(payload) => {
                assert!(f.raw.ends_with(payload), "payload is the tail of raw");
                let mut header = Vec::new();
                wire::put_len_header(&mut header, f.number, payload.len());
                // Non-minimal varints (padded tags or lengths) are valid protobuf; only minimal ones match exactly.
                assert_eq!(header.len() + payload.len(), wire::len_field_size(f.number, payload.len()));
                if f.raw.len() == header.len() + payload.len() {
                    assert_eq!(&f.raw[..header.len()], &header[..]);
                }
                assert_eq!(f.bytes().ok(), Some(payload));
                let _ = f.str();
                if depth < 4 {
                    walk(payload, depth + 1);
                }
            }
            Value::Varint(v) => {
                assert_eq!(f.varint().ok(), Some(v));
                assert!(f.bytes().is_err());
            }
            Value::Fixed32(_) => assert_eq!(f.raw.len() - 4, tag_len(f.raw)),
            Value::Fixed64(_) => assert_eq!(f.raw.len() - 8, tag_len(f.raw)),
        }
    }
    if !failed {
        assert_eq!(rebuilt, buf, "raws put back together give the message");
    }
}

/// Bytes of the tag varint at the start of `raw`.
fn tag_len(raw: &[u8]) -> usize {
    raw.iter().position(|b| b & 0x80 == 0).map_or(raw.len(), |i| i + 1)
}

fuzz_target!(|data: &[u8]| {
    walk(data, 0);
});
