//! Who is calling: an incoming webhook (`/rest/{user_id}/{code}/…`, the
//! code is the secret) or an OAuth access token (`auth` parameter, or
//! `Authorization: Bearer`).

use super::envelope::system;
use super::errors::BitrixError;
use crate::common::{hash_secret, now};
use crate::AppState;
use confab_core::{AppId, CredentialKind, Tenant, UserId};

#[derive(Debug, Clone)]
pub struct Ctx {
    pub tenant: Tenant,
    /// The webhook's creator or the token's user: calls run as them.
    pub user: UserId,
    /// The OAuth token's application (webhooks name one with CLIENT_ID).
    pub app: Option<AppId>,
    pub scopes: Vec<String>,
    pub credential_id: i64,
    pub webhook: bool,
}

pub enum Presented {
    Webhook { user_id: i64, code: String },
    Token(String),
    Nothing,
}

pub async fn authenticate(st: &AppState, presented: Presented) -> Result<Ctx, BitrixError> {
    let (kind, secret, webhook_user) = match presented {
        Presented::Nothing => return Err(system::no_auth()),
        Presented::Webhook { user_id, code } => (CredentialKind::BitrixWebhook, code, Some(user_id)),
        Presented::Token(t) => (CredentialKind::BitrixOauth, t, None),
    };
    let hash = hash_secret(&secret);
    let found = st
        .credentials
        .by_hash(&st.store, kind, hash)
        .await
        .map_err(|_| system::internal())?;
    let webhook = webhook_user.is_some();
    let Some((cred, tenant)) = found else {
        return Err(if webhook {
            system::invalid_credentials()
        } else {
            system::invalid_token()
        });
    };
    if let Some(u) = webhook_user {
        if cred.user_id != Some(UserId(u)) {
            return Err(system::invalid_credentials());
        }
    }
    if cred.expires_at.is_some_and(|e| e <= now()) {
        // "Webhooks may have an expiry date; after it the call returns an
        // authorization error"; tokens say expired_token (refresh + retry).
        return Err(if webhook {
            system::invalid_credentials()
        } else {
            system::expired_token()
        });
    }
    let user = cred.user_id.ok_or_else(system::invalid_credentials)?;
    Ok(Ctx {
        tenant,
        user,
        app: cred.app_id,
        scopes: cred.scopes,
        credential_id: cred.id,
        webhook,
    })
}
