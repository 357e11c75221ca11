//! Helpers shared by every face: secrets, clocks, body parsing.

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Hex SHA-256: how keys and tokens that confab only compares are stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time comparison of two secrets (or their hashes).
pub fn secret_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A random alphanumeric secret of `len` characters, lower-cased.
pub fn random_token(len: usize) -> String {
    Alphanumeric
        .sample_string(&mut rand::thread_rng(), len)
        .to_ascii_lowercase()
}

/// 32 random bytes as 64 lowercase hex characters.
pub fn random_hex32() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// RFC 3339 / ISO 8601 in UTC, e.g. `2026-05-01T12:00:00Z`.
pub fn iso8601(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// How long a face waits for the store before answering "unavailable".
pub const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Bounds a store call: a store that does not answer in time is
/// "unavailable", which every face maps to its own retryable error.
pub async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, confab_core::CoreError>>,
) -> Result<T, confab_core::CoreError> {
    match tokio::time::timeout(STORE_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(confab_core::CoreError::Unavailable(
            "the database did not answer in time".into(),
        )),
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Parses a JSON body; the error text says where and what, for the face to
/// wrap in its own envelope.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return serde_json::from_slice(b"{}").map_err(|e| format!("request body is required: {e}"));
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

/// E.164: `+` then 8 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// OpenAPI path parameters for every `{name}` in `path` (strings).
pub fn path_params(path: &str, examples: &[(&str, &str)]) -> Vec<serde_json::Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let mut p = serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
            // An example naming a chat of the demo world lets a generator
            // (schemathesis' examples phase) reach the success responses.
            if let Some((_, ex)) = examples.iter().find(|(n, _)| *n == name) {
                p["example"] = serde_json::json!(ex);
            }
            p
        })
        .collect()
}

/// An OpenAPI response whose body is JSON of `schema`.
pub fn json_response(description: &str, schema: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(is_e164("+14155551234"));
        assert!(!is_e164("14155551234"));
        assert!(!is_e164("+0123456789"));
        assert!(!is_e164("+1415555abcd"));
        assert!(!is_e164("+1234567"));
    }

    #[test]
    fn hashing_and_comparison() {
        assert_eq!(hash_secret("a").len(), 64);
        assert!(secret_eq(&hash_secret("x"), &hash_secret("x")));
        assert!(!secret_eq(&hash_secret("x"), &hash_secret("y")));
        assert_eq!(random_hex32().len(), 64);
    }
}
