//! Credential lookups, shared by every face's authentication and cached for
//! a moment on each node.
//!
//! Every request authenticates, and without a cache that is one read
//! transaction before the request's own work: on PostgreSQL two round
//! trips (begin with the credential and its tenant in one statement, then
//! the end) for a leave whose own transaction is two more. Credentials are
//! never changed after they are issued (expiry is fixed at creation and
//! checked by the faces at every use, from the cached row), so a cached
//! hit stays right; what a cache could miss is a credential issued since,
//! which is why misses are never cached, and the Chert signing secrets of a
//! tenant, listed by slug, which a newly issued secret extends. Admin
//! writes on this node clear the cache at once; another node sharing the
//! database sees a new signing secret within [`TTL`].

use confab_core::{CoreError, Credential, CredentialKind, Tenant};
use confab_store::{Store, StoreExt};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a looked-up credential is reused without asking the store.
pub const TTL: Duration = Duration::from_secs(2);

/// Entries kept before the cache is emptied (a bound on memory, not an
/// eviction policy: credentials in use are looked up again at once).
const MAX_ENTRIES: usize = 100_000;

/// A small time-bounded map of found values.
struct Ttl<K, V> {
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Ttl<K, V> {
    fn new() -> Self {
        Ttl {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k).filter(|(at, _)| at.elapsed() < TTL).map(|(_, v)| v.clone())
    }

    fn put(&self, k: K, v: V) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(k, (Instant::now(), v));
    }

    fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The credentials a node has looked up recently.
pub struct CredentialCache {
    by_hash: Ttl<(CredentialKind, String), (Credential, Tenant)>,
    chert_by_slug: Ttl<String, (Tenant, Vec<Credential>)>,
    /// Bumped by `clear`: a lookup that began before a clear does not
    /// store what it read (it may predate the admin write).
    generation: std::sync::atomic::AtomicU64,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            by_hash: Ttl::new(),
            chert_by_slug: Ttl::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl CredentialCache {
    /// The credential of `kind` whose secret hashes to `hash`, with its
    /// tenant; `None` when there is none (not cached).
    pub async fn by_hash(
        &self,
        store: &Arc<dyn Store>,
        kind: CredentialKind,
        hash: String,
    ) -> Result<Option<(Credential, Tenant)>, CoreError> {
        let key = (kind, hash);
        if let Some(hit) = self.by_hash.get(&key) {
            return Ok(Some(hit));
        }
        let hash = key.1.clone();
        let generation = self.generation();
        let found = crate::common::bounded(store.read(move |tx| tx.credential_and_tenant_by_hash(kind, &hash))).await?;
        if let Some(v) = found.as_ref().filter(|_| self.generation() == generation) {
            self.by_hash.put(key, v.clone());
        }
        Ok(found)
    }

    /// The tenant called `slug` with its Chert signing credentials (expired
    /// ones included: the caller checks expiry); `None` when no tenant has
    /// that slug (not cached).
    pub async fn chert_signing(
        &self,
        store: &Arc<dyn Store>,
        slug: String,
    ) -> Result<Option<(Tenant, Vec<Credential>)>, CoreError> {
        if let Some(hit) = self.chert_by_slug.get(&slug) {
            return Ok(Some(hit));
        }
        let s = slug.clone();
        let generation = self.generation();
        let found = crate::common::bounded(store.read(move |tx| {
            let Some(tenant) = tx.tenant_by_slug(&s)? else {
                return Ok(None);
            };
            let creds: Vec<Credential> = tx
                .credentials(tenant.id)?
                .into_iter()
                .filter(|c| c.kind == CredentialKind::ChertSigning)
                .collect();
            Ok(Some((tenant, creds)))
        }))
        .await?;
        if let Some(v) = found.as_ref().filter(|_| self.generation() == generation) {
            self.chert_by_slug.put(slug, v.clone());
        }
        Ok(found)
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets everything (after an admin write on this node).
    pub fn clear(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.by_hash.clear();
        self.chert_by_slug.clear();
    }
}
