//! The faces: each module translates one wire API into core commands and
//! core results/errors back into that API's envelopes. No business rule
//! lives here (see `confab_core::policy`).

pub mod admin;
pub mod common;

use confab_store::Store;
use std::sync::Arc;

/// The wire faces and whether this build serves them (the demo banner
/// says which curl examples will answer 404).
pub const FACES: &[(&str, bool)] = &[
    ("bitrix", false),
    ("vibecode", false),
    ("chert", false),
    ("linq", false),
];

/// What every face handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Hex SHA-256 of the admin bearer token.
    pub admin_token_hash: Arc<String>,
}

/// Every face's routes, merged. The server adds the cross-cutting layers.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().merge(admin::router()).with_state(state)
}
