//! Why a request was not accepted, in terms every receiver translates into its protocol's status codes.

use std::time::Duration;

use tonic::Code;

use crate::export::Undelivered;

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The payload is malformed: 400 / INVALID_ARGUMENT.
    Invalid(String),
    /// The in-flight budget is full: 429 / RESOURCE_EXHAUSTED, retry later.
    Overloaded(String),
    /// No backend could take the data in time: 503 / UNAVAILABLE, retry later.
    Unavailable(String),
    /// Every backend rejected its part for good, with this code.
    Rejected(Code, String),
}

/// How long a client is told to wait before retrying a refused request.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

impl From<Undelivered> for Refusal {
    fn from(u: Undelivered) -> Refusal {
        match u.code {
            Code::Unavailable => Refusal::Unavailable(u.message),
            code => Refusal::Rejected(code, u.message),
        }
    }
}
