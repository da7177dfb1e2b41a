//! A backend's answer to one export: the items it rejected for good (OTLP partial success), and whether a failed
//! export may be tried again.

use tonic::Code;

use crate::signal::fields;
use crate::wire;

/// A backend's answer to one export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Items the backend rejected for good (OTLP partial success).
    pub rejected: u64,
    pub message: String,
}

/// Reads `partial_success` (`rejected_*` and `error_message`) of any Export*ServiceResponse.
pub fn parse_reply(body: &[u8]) -> Reply {
    let mut reply = Reply::default();
    let partial = wire::fields(body).filter_map(Result::ok).find(|f| f.number == fields::RESPONSE_PARTIAL_SUCCESS);
    if let Some(Ok(p)) = partial.map(|f| f.bytes()) {
        for f in wire::fields(p).filter_map(Result::ok) {
            match f.number {
                fields::PARTIAL_SUCCESS_REJECTED => reply.rejected = f.varint().unwrap_or(0),
                fields::PARTIAL_SUCCESS_ERROR_MESSAGE => reply.message = f.str().unwrap_or_default().to_string(),
                _ => {}
            }
        }
    }
    reply
}

/// Whether a failed export may succeed if tried again: the OTLP specification's retryable codes, plus UNKNOWN,
/// which is what the client reports when the connection breaks mid-request (a backend killed while answering) —
/// treating it as a rejection would drop data the backend never took.
pub fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
            | Code::OutOfRange
            | Code::DataLoss
            | Code::Unknown
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
    use prost::Message;

    #[test]
    fn reads_partial_success() {
        let r = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess { rejected_spans: 7, error_message: "bad span".into() }),
        };
        assert_eq!(parse_reply(&r.encode_to_vec()), Reply { rejected: 7, message: "bad span".into() });
        assert_eq!(parse_reply(&[]), Reply::default());
    }

    #[test]
    fn retryable_codes_follow_the_otlp_specification() {
        assert!(
            retryable(Code::Unavailable) && retryable(Code::ResourceExhausted) && retryable(Code::DeadlineExceeded)
        );
        assert!(retryable(Code::Unknown), "a broken connection mid-request");
        assert!(
            !retryable(Code::InvalidArgument) && !retryable(Code::Unauthenticated) && !retryable(Code::Unimplemented)
        );
    }
}
