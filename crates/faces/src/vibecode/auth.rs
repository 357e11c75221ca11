//! Vibecode keys (docs /docs/keys-auth): a personal key `vibe_api_…` acts
//! as its owner; an OAuth app key `vibe_app_…` needs `Authorization:
//! Bearer <user session token>` and acts as that user.

use super::error::VibeError;
use crate::common::{hash_secret, now};
use crate::AppState;
use axum::http::{HeaderMap, StatusCode};
use confab_core::{CredentialKind, Tenant, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Personal,
    App,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Personal => "personal",
            KeyType::App => "app",
        }
    }
}

/// The authenticated caller of a Vibecode route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Tenant,
    pub user: UserId,
    pub key_type: KeyType,
    pub scopes: Vec<String>,
}

fn unauthorized(code: &'static str, message: &str) -> VibeError {
    VibeError::new(StatusCode::UNAUTHORIZED, code, message)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?.trim();
    (!token.is_empty()).then_some(token)
}

/// What the store lookup found, decided outside the transaction.
enum Found {
    NoKey,
    NoSession,
    SessionExpired,
    KeyExpired,
    NoTokens,
    Ok(Caller),
}

pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Caller, VibeError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            unauthorized(
                "MISSING_API_KEY",
                "API key is required. Pass it in the X-Api-Key header",
            )
        })?;
    let (kind, key_type) = if key.starts_with("vibe_app_") {
        (CredentialKind::VibecodeApp, KeyType::App)
    } else if key.starts_with("vibe_api_") {
        (CredentialKind::VibecodePersonal, KeyType::Personal)
    } else {
        return Err(unauthorized("INVALID_API_KEY", "Invalid API key"));
    };
    let session = match key_type {
        KeyType::App => Some(bearer(headers).map(hash_secret).ok_or_else(|| {
            unauthorized(
                "INVALID_APP_KEY",
                "Application key requires a user session token in the Authorization: Bearer header",
            )
        })?),
        KeyType::Personal => None,
    };
    let key_hash = hash_secret(key);
    let now = now();
    let found = async {
        let cache = &st.credentials;
        let Some((cred, tenant)) = cache.by_hash(&st.store, kind, key_hash).await? else {
            return Ok(Found::NoKey);
        };
        if cred.expires_at.is_some_and(|e| e <= now) {
            return Ok(Found::KeyExpired);
        }
        let user = match session {
            None => match cred.user_id {
                Some(u) => u,
                None => return Ok(Found::NoTokens),
            },
            Some(session_hash) => {
                let found = cache
                    .by_hash(&st.store, CredentialKind::VibecodeSession, session_hash)
                    .await?;
                let Some((s, _)) = found else {
                    return Ok(Found::NoSession);
                };
                if s.tenant_id != cred.tenant_id || s.app_id != cred.app_id {
                    return Ok(Found::NoSession);
                }
                if s.expires_at.is_some_and(|e| e <= now) {
                    return Ok(Found::SessionExpired);
                }
                match s.user_id {
                    Some(u) => u,
                    None => return Ok(Found::NoTokens),
                }
            }
        };
        Ok::<_, confab_core::CoreError>(Found::Ok(Caller {
            tenant,
            user,
            key_type,
            scopes: cred.scopes,
        }))
    }
    .await
    .map_err(|e| VibeError::from_core(crate::bitrix::errors::Method::ImChatGet, e))?;
    match found {
        Found::Ok(c) => Ok(c),
        Found::NoKey => Err(unauthorized("INVALID_API_KEY", "Invalid API key")),
        // Unknown session tokens are reported with the documented
        // INVALID_API_KEY code (no dedicated code is published).
        Found::NoSession => Err(unauthorized(
            "INVALID_API_KEY",
            "Invalid user session token for this application key",
        )),
        Found::SessionExpired => Err(unauthorized("TOKEN_EXPIRED", "User session token has expired")
            .hint("Sign the user in again to obtain a new session token")),
        Found::KeyExpired => Err(unauthorized("TOKEN_EXPIRED", "API key has expired")),
        Found::NoTokens => Err(unauthorized("TOKEN_MISSING", "The API key has no configured tokens")
            .hint("Connect the key to a Bitrix24 portal user first")),
    }
}

/// Seed 000: chat routes need the `im` scope (→ 403 SCOPE_DENIED).
pub fn require_scope(caller: &Caller, scope: &'static str) -> Result<(), VibeError> {
    if caller.scopes.iter().any(|s| s == scope) {
        Ok(())
    } else {
        Err(VibeError::new(
            StatusCode::FORBIDDEN,
            "SCOPE_DENIED",
            format!("The API key lacks the {scope} scope"),
        ))
    }
}

/// The portal's leaky bucket; refusal → 429 RATE_LIMITED with retryAfter.
pub async fn rate_limit(st: &AppState, caller: &Caller) -> Result<(), VibeError> {
    st.portal_limiter.hit(caller.tenant.id).await.map_err(|wait| {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        VibeError {
            retry_after: Some(secs),
            ..VibeError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "QUERY_LIMIT_EXCEEDED")
        }
    })
}
