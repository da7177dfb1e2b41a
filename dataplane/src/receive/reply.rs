//! Encodings shared by both receivers: the Export*ServiceResponse with its partial success, and the
//! `google.rpc.Status` (with `RetryInfo` where the client should come back later).

use std::time::Duration;

use crate::wire;

/// An `Export*ServiceResponse`: empty on full success, else `partial_success { rejected_*, error_message }`
/// (the field numbers are the same for all three signals).
pub fn export_response(rejected: u64, message: &str) -> Vec<u8> {
    if rejected == 0 && message.is_empty() {
        return Vec::new();
    }
    let mut partial = Vec::new();
    if rejected > 0 {
        wire::put_varint(&mut partial, 1 << 3);
        wire::put_varint(&mut partial, rejected);
    }
    if !message.is_empty() {
        wire::put_len_field(&mut partial, 2, message.as_bytes());
    }
    let mut out = Vec::new();
    wire::put_len_field(&mut out, 1, &partial);
    out
}

/// A `google.rpc.Status { code, message, details }`, with a `google.rpc.RetryInfo` detail when `retry_after`
/// is given (OTLP clients retry RESOURCE_EXHAUSTED only when it is present).
pub fn rpc_status(code: i32, message: &str, retry_after: Option<Duration>) -> Vec<u8> {
    let mut out = Vec::new();
    if code != 0 {
        wire::put_varint(&mut out, 1 << 3);
        wire::put_varint(&mut out, code as u32 as u64);
    }
    if !message.is_empty() {
        wire::put_len_field(&mut out, 2, message.as_bytes());
    }
    if let Some(delay) = retry_after {
        let mut duration = Vec::new();
        wire::put_varint(&mut duration, 1 << 3);
        wire::put_varint(&mut duration, delay.as_secs());
        if delay.subsec_nanos() > 0 {
            wire::put_varint(&mut duration, 2 << 3);
            wire::put_varint(&mut duration, u64::from(delay.subsec_nanos()));
        }
        let mut retry_info = Vec::new();
        wire::put_len_field(&mut retry_info, 1, &duration);
        let mut any = Vec::new();
        wire::put_len_field(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
        wire::put_len_field(&mut any, 2, &retry_info);
        wire::put_len_field(&mut out, 3, &any);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use prost::Message;

    #[test]
    fn partial_success_decodes_with_prost() {
        assert!(export_response(0, "").is_empty());
        let r = ExportLogsServiceResponse::decode(&export_response(3, "bad record")[..]).expect("decodes");
        let p = r.partial_success.expect("partial success");
        assert_eq!((p.rejected_log_records, p.error_message.as_str()), (3, "bad record"));
    }

    #[test]
    fn status_carries_retry_info() {
        let s = rpc_status(8, "busy", Some(Duration::from_millis(1500)));
        let fields: Vec<_> = wire::fields(&s).collect::<Result<_, _>>().expect("valid");
        assert_eq!(fields[0].varint(), Ok(8));
        assert_eq!(fields[1].str(), Ok("busy"));
        let any: Vec<_> = wire::fields(fields[2].bytes().expect("any")).collect::<Result<_, _>>().expect("valid");
        assert_eq!(any[0].str(), Ok("type.googleapis.com/google.rpc.RetryInfo"));
        let info = wire::fields(any[1].bytes().expect("info")).next().expect("delay").expect("valid");
        let d: Vec<_> = wire::fields(info.bytes().expect("duration")).collect::<Result<_, _>>().expect("valid");
        assert_eq!((d[0].varint(), d[1].varint()), (Ok(1), Ok(500_000_000)));
    }
}
