//! Optional bearer-token authentication of clients: `Authorization: Bearer <token>` on every request, compared in
//! constant time. Missing or wrong → UNAUTHENTICATED / HTTP 401.

use http::HeaderMap;

use crate::config::ReceiverAuth;

/// The accepted token, if authentication is on.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<Vec<u8>>);

impl Bearer {
    pub fn from_config(auth: Option<&ReceiverAuth>) -> Result<Bearer, String> {
        Bearer::from_field("receivers.otlp.auth", auth)
    }

    /// The token of the `auth` block at `field` of the configuration.
    pub fn from_field(field: &str, auth: Option<&ReceiverAuth>) -> Result<Bearer, String> {
        let Some(auth) = auth else { return Ok(Bearer(None)) };
        let token = match (&auth.bearer_token, &auth.bearer_token_file) {
            (Some(t), None) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("{field}.bearer_token_file {f}: {e}"))?,
            _ => return Err(format!("{field}: set exactly one of bearer_token, bearer_token_file")),
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("{field}: the token is empty"));
        }
        Ok(Bearer(Some(token.as_bytes().to_vec())))
    }

    /// The `Authorization` header value that passes [`Bearer::check`], if authentication is on.
    pub fn header(&self) -> Option<Vec<u8>> {
        self.0.as_ref().map(|t| [b"Bearer ".as_slice(), t].concat())
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(want) = &self.0 else { return Ok(()) };
        let got = headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        let Some(token) = got.strip_prefix(b"Bearer ").or_else(|| got.strip_prefix(b"bearer ")) else {
            return Err("missing bearer token");
        };
        let same = token.len() == want.len() && token.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same { Ok(()) } else { Err("invalid bearer token") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_token() {
        let b =
            Bearer::from_config(Some(&ReceiverAuth { bearer_token: Some("s3cret".into()), bearer_token_file: None }))
                .expect("valid");
        let mut h = HeaderMap::new();
        assert_eq!(b.check(&h), Err("missing bearer token"));
        h.insert("authorization", "Bearer s3cre".parse().expect("ascii"));
        assert_eq!(b.check(&h), Err("invalid bearer token"));
        h.insert("authorization", "Bearer s3cret".parse().expect("ascii"));
        assert_eq!(b.check(&h), Ok(()));
        assert_eq!(Bearer::default().check(&HeaderMap::new()), Ok(()), "off by default");
        assert!(Bearer::from_config(Some(&ReceiverAuth::default())).is_err());
    }
}
