//! Chert authentication (docs /api/authentication): HMAC v1
//! `x-chert-signature: v1,<unix_seconds>,<hex>` over `"<ts>.<raw body>"`
//! with the tenant's signing secret, `x-chert-tenant` required with it;
//! or `Authorization: Bearer <signing secret>`. The signature is checked
//! first when both are present, over the exact received bytes, before any
//! parsing, in constant time.

use super::error::ChertError;
use crate::common::{hash_secret, now};
use crate::AppState;
use axum::http::{HeaderMap, Method};
use confab_core::{CredentialKind, Tenant};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// ±5 minutes.
pub const WINDOW_SECS: i64 = 300;

/// `lowercase hex(HMAC-SHA256(secret, "<ts>.<body>"))` — exactly the seed's
/// Node and Python examples.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn verify(secret: &str, ts: i64, body: &[u8], given_hex: &str) -> bool {
    let Ok(given) = hex::decode(given_hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given).is_ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Routes that change state; a replayed signature on them is refused.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `path` is the request path: a replay is the same signature on the same
/// method and path. (Chert's signature covers only the timestamp and the
/// body, so two different body-less requests in one second share a
/// signature; refusing those would break the docs' own clients.)
/// `v1,<unix_seconds>,<hex>` → (timestamp, hex signature).
pub fn parse_signature(sig: &str) -> Result<(i64, &str), ChertError> {
    let mut parts = sig.splitn(3, ',');
    let (Some("v1"), Some(ts), Some(hex_sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ChertError::auth(
            "Malformed x-chert-signature: expected v1,<unix_seconds>,<hex>",
        ));
    };
    let ts: i64 = ts
        .parse()
        .map_err(|_| ChertError::auth("Malformed x-chert-signature timestamp"))?;
    Ok((ts, hex_sig))
}

pub async fn authenticate(
    st: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Tenant, ChertError> {
    let tenant_slug = header(headers, "x-chert-tenant").map(str::to_owned);
    if let Some(sig) = header(headers, "x-chert-signature") {
        let slug =
            tenant_slug.ok_or_else(|| ChertError::auth("x-chert-tenant header is required with x-chert-signature"))?;
        let (ts, hex_sig) = parse_signature(sig)?;
        let now = now();
        if (now - ts).abs() > WINDOW_SECS {
            return Err(ChertError::new(
                2013,
                "Signature timestamp is outside the allowed window of ±300 seconds",
            ));
        }
        let found = st
            .credentials
            .chert_signing(&st.store, slug)
            .await
            .map_err(|e| super::error::from_core(super::error::Route::Read, e))?
            .map(|(tenant, creds)| {
                let secrets: Vec<String> = creds
                    .into_iter()
                    .filter(|c| c.expires_at.is_none_or(|e| e > now))
                    .filter_map(|c| c.secret)
                    .collect();
                (tenant, secrets)
            });
        let Some((tenant, secrets)) = found else {
            return Err(ChertError::auth("Invalid signature"));
        };
        if !secrets.iter().any(|s| verify(s, ts, body, hex_sig)) {
            return Err(ChertError::auth("Invalid signature"));
        }
        if changes_state(method)
            && !st
                .replay_guard
                .first_use(
                    format!(
                        "chert:{}:{}:{}:{}",
                        tenant.id,
                        method,
                        path,
                        hex_sig.to_ascii_lowercase()
                    ),
                    now,
                    ts + WINDOW_SECS + 1,
                )
                .await
        {
            return Err(ChertError::auth(
                "Replayed request: this signature was already used; sign every request anew",
            ));
        }
        return Ok(tenant);
    }
    let token = header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ChertError::auth("Missing authentication: send x-chert-signature or Authorization: Bearer"))?;
    let hash = hash_secret(token);
    let now = now();
    let found = st
        .credentials
        .by_hash(&st.store, CredentialKind::ChertSigning, hash)
        .await
        .map_err(|e| super::error::from_core(super::error::Route::Read, e))?
        .filter(|(cred, _)| cred.expires_at.is_none_or(|e| e > now))
        .map(|(_, tenant)| tenant);
    let tenant = found.ok_or_else(|| ChertError::auth("Invalid bearer token"))?;
    if tenant_slug.is_some_and(|s| s != tenant.slug) {
        return Err(ChertError::auth(
            "The bearer token does not belong to the tenant in x-chert-tenant",
        ));
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_from_python_hmac() {
        // hmac.new(b"secret", b"1760000000.", hashlib.sha256).hexdigest()
        assert_eq!(
            sign("secret", 1760000000, b""),
            "76cd6dec60a3bf595293228567ee2dd10dd173d08b3f95303d939d3bd6cb8e7e"
        );
        assert_eq!(
            sign("secret", 1760000000, br#"{"a":1}"#),
            "b6c2583f8204bec09d6388c3b4ef4be121e880606c4f1b491d6f295dc76b09c9"
        );
    }

    #[test]
    fn signature_matches_the_seed_recipe() {
        // Python: hmac.new(b"secret", b"1760000000.", hashlib.sha256).hexdigest()
        let s = sign("secret", 1760000000, b"");
        assert_eq!(s.len(), 64);
        assert!(verify("secret", 1760000000, b"", &s));
        assert!(!verify("secret", 1760000001, b"", &s));
        assert!(!verify("other", 1760000000, b"", &s));
        assert!(!verify("secret", 1760000000, b"", "zz"));
        assert!(
            verify("secret", 1760000000, b"", &s.to_uppercase()),
            "hex case does not matter"
        );
    }
}
