//! The faces: each module translates one wire API into core commands and
//! core results/errors back into that API's envelopes. No business rule
//! lives here (see `confab_core::policy`).

pub mod admin;
pub mod bitrix;
pub mod chert;
pub mod common;
pub mod credentials;
#[doc(hidden)]
pub mod fuzzing;
pub mod imessage;
pub mod limits;
pub mod linq;
pub mod vibecode;

use confab_store::Store;
use std::sync::Arc;

/// The wire faces and whether this build serves them (the demo banner
/// says which curl examples will answer 404).
pub const FACES: &[(&str, bool)] = &[("bitrix", true), ("vibecode", true), ("chert", true), ("linq", true)];

/// What every face handler can reach: the [`Shared`] state behind one
/// reference count, so the router's clone of it for each request is one
/// atomic increment rather than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The state itself; build it (or adjust [`Shared::new`]'s defaults) and
/// turn it into an [`AppState`] with `into()`.
pub struct Shared {
    pub store: Arc<dyn Store>,
    /// Hex SHA-256 of the admin bearer token.
    pub admin_token_hash: Arc<String>,
    /// The Bitrix portal bucket, shared by the Bitrix and Vibecode faces.
    pub portal_limiter: Arc<limits::PortalLimiter>,
    /// Chert signatures already used (replay protection).
    pub replay_guard: Arc<limits::ReplayGuard>,
    /// Bitrix `operating` accounting per credential and method.
    pub operating: Arc<bitrix::operating::OperatingLimiter>,
    /// Linq's messages per sender–recipient pair.
    pub pair_limiter: Arc<limits::WindowLimiter>,
    /// Credentials looked up in the last moment (see `credentials`).
    pub credentials: Arc<credentials::CredentialCache>,
}

impl Shared {
    /// State with the default limits (Bitrix's 2 req/s, burst 50).
    pub fn new(store: Arc<dyn Store>, admin_token_hash: String) -> Self {
        Shared {
            admin_token_hash: Arc::new(admin_token_hash),
            portal_limiter: Arc::new(limits::PortalLimiter::for_store(
                Some(limits::BucketConfig::BITRIX_DEFAULT),
                &store,
            )),
            replay_guard: Arc::new(limits::ReplayGuard::for_store(&store)),
            operating: Arc::new(bitrix::operating::OperatingLimiter::new(Some(
                bitrix::operating::DEFAULT_LIMIT_SECS,
            ))),
            pair_limiter: Arc::new(limits::WindowLimiter::for_store(
                Some(30),
                std::time::Duration::from_secs(60),
                &store,
            )),
            credentials: Arc::default(),
            store,
        }
    }
}

impl AppState {
    /// State with the default limits (see [`Shared::new`]).
    pub fn new(store: Arc<dyn Store>, admin_token_hash: String) -> Self {
        Shared::new(store, admin_token_hash).into()
    }

    /// The state to change, while nothing else holds it yet (before the
    /// router and the worker have their clones).
    pub fn shared_mut(&mut self) -> Option<&mut Shared> {
        Arc::get_mut(&mut self.0)
    }
}

impl From<Shared> for AppState {
    fn from(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Every face's routes, merged. The server adds the cross-cutting layers.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .merge(admin::router().layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::forget_credentials_after_writes,
        )))
        .merge(vibecode::router())
        .merge(chert::router())
        .merge(bitrix::router())
        .merge(linq::router())
        .with_state(state)
}

/// The webhook formats of the faces that deliver webhooks, for the
/// delivery worker.
pub fn webhook_formats() -> confab_delivery::Formats {
    let mut f: confab_delivery::Formats = std::collections::HashMap::new();
    f.insert("linq", std::sync::Arc::new(linq::webhooks::LinqFormat));
    f.insert("chert", std::sync::Arc::new(chert::webhooks::ChertFormat));
    f.insert("bitrix", std::sync::Arc::new(bitrix::events::BitrixFormat));
    f
}
