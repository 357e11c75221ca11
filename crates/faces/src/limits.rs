//! Rate limits shared by faces. Bitrix24 meters requests with a leaky
//! bucket per portal (docs `settings/performance/limits.md`: each request
//! adds 1, the counter drains `drain` per second, a request that would take
//! it above `burst` is refused). The Vibecode gateway sits in front of the
//! same portal and passes the refusal on as 429 `RATE_LIMITED`, so both
//! faces draw from one bucket per tenant.
//!
//! Every limiter here keeps its state in memory when confab runs alone
//! (SQLite), and in the database when several nodes share a PostgreSQL
//! store ([`shares_state`]): then a limit holds across the nodes, not per
//! node. The rule itself is the same code either way. Should the database
//! fail while a limit is checked, the request is let through: the command
//! that follows meets the same database and answers "unavailable" itself.

use confab_core::TenantId;
use confab_store::{Store, StoreExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whether limiters over this store must keep their state in it: true for
/// a store several confab nodes can share.
pub fn shares_state(store: &Arc<dyn Store>) -> bool {
    store.backend() == "postgres"
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs a limiter's step in the shared store; on a store failure, `open`.
async fn in_store<R: Send + 'static>(
    store: &Arc<dyn Store>,
    open: R,
    f: impl FnOnce(&mut dyn confab_core::tx::StoreTx) -> Result<R, confab_core::CoreError> + Send + 'static,
) -> R {
    match store.write(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "shared limiter state unavailable; letting the request through");
            open
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    /// Requests per second the counter drains (Bitrix default plans: 2).
    pub drain_per_sec: f64,
    /// Counter level above which requests are refused (Bitrix default: 50).
    pub burst: f64,
}

impl BucketConfig {
    pub const BITRIX_DEFAULT: BucketConfig = BucketConfig {
        drain_per_sec: 2.0,
        burst: 50.0,
    };

    /// Parses `off`, or `DRAIN/BURST` such as `2/50`.
    pub fn parse(s: &str) -> Result<Option<BucketConfig>, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (d, b) = s
            .split_once('/')
            .ok_or_else(|| format!("rate limit must be \"off\" or DRAIN/BURST like 2/50, got {s:?}"))?;
        let drain_per_sec: f64 = d.trim().parse().map_err(|_| format!("bad drain rate {d:?}"))?;
        let burst: f64 = b.trim().parse().map_err(|_| format!("bad burst {b:?}"))?;
        if drain_per_sec <= 0.0 || burst < 1.0 {
            return Err("drain must be > 0 and burst >= 1".into());
        }
        Ok(Some(BucketConfig { drain_per_sec, burst }))
    }
}

/// One leaky bucket per tenant. `None` config = no limit.
pub struct PortalLimiter {
    config: Option<BucketConfig>,
    levels: Mutex<HashMap<TenantId, (f64, Instant)>>,
    shared: Option<Arc<dyn Store>>,
}

/// The bucket after `elapsed` seconds and one more request: the new level,
/// and `Err(retry_after)` when the request does not fit.
fn leak(cfg: BucketConfig, level: f64, elapsed: f64) -> (f64, Result<(), Duration>) {
    let drained = (level - elapsed * cfg.drain_per_sec).max(0.0);
    if drained + 1.0 > cfg.burst {
        let wait = (drained + 1.0 - cfg.burst) / cfg.drain_per_sec;
        return (drained, Err(Duration::from_secs_f64(wait.max(0.001))));
    }
    (drained + 1.0, Ok(()))
}

impl PortalLimiter {
    /// State in this process.
    pub fn new(config: Option<BucketConfig>) -> Self {
        PortalLimiter {
            config,
            levels: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// State in `store` when it is shared by several nodes.
    pub fn for_store(config: Option<BucketConfig>, store: &Arc<dyn Store>) -> Self {
        PortalLimiter {
            shared: shares_state(store).then(|| store.clone()),
            ..Self::new(config)
        }
    }

    /// Counts one request; `Err(retry_after)` when the bucket is full.
    pub async fn hit(&self, tenant: TenantId) -> Result<(), Duration> {
        let Some(cfg) = self.config else { return Ok(()) };
        if let Some(store) = &self.shared {
            let key = format!("bitrix-portal:{tenant}");
            let now = now_ms();
            return in_store(store, Ok(()), move |tx| {
                tx.lock_key(&key)?;
                let (level, at) = tx.bucket(&key)?.unwrap_or((0.0, now));
                let (level, verdict) = leak(cfg, level, (now - at).max(0) as f64 / 1000.0);
                tx.set_bucket(&key, level, now)?;
                Ok(verdict)
            })
            .await;
        }
        let now = Instant::now();
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let (level, last) = levels.entry(tenant).or_insert((0.0, now));
        let (new_level, verdict) = leak(cfg, *level, now.duration_since(*last).as_secs_f64());
        *level = new_level;
        *last = now;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn burst_then_refuse() {
        let l = PortalLimiter::new(Some(BucketConfig {
            drain_per_sec: 0.001,
            burst: 3.0,
        }));
        let t = TenantId(1);
        assert!(block(l.hit(t)).is_ok() && block(l.hit(t)).is_ok() && block(l.hit(t)).is_ok());
        let wait = block(l.hit(t)).unwrap_err();
        assert!(wait.as_secs() > 100, "{wait:?}");
        assert!(block(l.hit(TenantId(2))).is_ok(), "buckets are per tenant");
    }

    #[test]
    fn drains_over_time() {
        let l = PortalLimiter::new(Some(BucketConfig {
            drain_per_sec: 1000.0,
            burst: 1.0,
        }));
        let t = TenantId(1);
        assert!(block(l.hit(t)).is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(block(l.hit(t)).is_ok());
    }

    #[test]
    fn parse() {
        assert_eq!(BucketConfig::parse("off").unwrap(), None);
        assert_eq!(BucketConfig::parse("2/50").unwrap(), Some(BucketConfig::BITRIX_DEFAULT));
        assert!(BucketConfig::parse("x").is_err());
    }
}

/// Remembers signatures seen within the timestamp window so that a replayed
/// signed request on a non-idempotent route is refused instead of applied
/// twice (Chert HMAC v1: ±300 s window).
pub struct ReplayGuard {
    /// The signatures (hashed, see `hasher`) with their expiry, and the
    /// latest `now` a sweep has forgotten expired ones by.
    seen: Mutex<(Sweeping<u64, i64>, i64)>,
    /// Keys are kept as their hash under a random key (a collision, about
    /// one in 2^64 per pair, would refuse a request, never admit a replay).
    hasher: std::collections::hash_map::RandomState,
    shared: Option<Arc<dyn Store>>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayGuard {
    /// State in this process.
    pub fn new() -> Self {
        ReplayGuard {
            seen: Mutex::new((Sweeping::default(), i64::MIN)),
            hasher: std::collections::hash_map::RandomState::new(),
            shared: None,
        }
    }

    /// State in `store` when it is shared by several nodes.
    pub fn for_store(store: &Arc<dyn Store>) -> Self {
        ReplayGuard {
            shared: shares_state(store).then(|| store.clone()),
            ..Self::new()
        }
    }

    /// Records `key` until `expires_at` (unix seconds); false if it was
    /// already recorded and has not expired.
    pub async fn first_use(&self, key: String, now: i64, expires_at: i64) -> bool {
        if let Some(store) = &self.shared {
            return in_store(store, true, move |tx| tx.claim_nonce(&key, now, expires_at)).await;
        }
        let key = std::hash::BuildHasher::hash_one(&self.hasher, &key);
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, swept_through) = &mut *guard;
        if seen.sweep_if_due(|_, exp| *exp > now) {
            *swept_through = (*swept_through).max(now);
        }
        match seen.map.get(&key) {
            Some(exp) if *exp > now => false,
            // Not found, but a sweep by a later clock reading (another
            // request's `now`) may have forgotten it while this request
            // still counts it as live: refused, as a replay would be.
            None if expires_at <= *swept_through => false,
            _ => {
                seen.map.insert(key, expires_at);
                true
            }
        }
    }

    /// Signatures remembered in this process (expired ones not yet swept
    /// included).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).0.map.len()
    }
}

/// A map whose stale entries are swept out in one pass once it has doubled
/// since the last sweep (and holds at least [`Sweeping::FLOOR`] entries):
/// O(1) per insert on average (the pass itself walks the whole map, under
/// the caller's lock), and at most about twice the entries live at the
/// last sweep in memory. (Sweeping whenever it held more than a fixed number made every
/// request walk the whole map once the live entries passed that number:
/// Chert leaves fell from 21,000/s to 6,900/s past 10,000 signatures.)
struct Sweeping<K, V> {
    map: HashMap<K, V>,
    sweep_at: usize,
}

impl<K, V> Default for Sweeping<K, V> {
    fn default() -> Self {
        Sweeping {
            map: HashMap::new(),
            sweep_at: Self::FLOOR,
        }
    }
}

impl<K, V> Sweeping<K, V> {
    const FLOOR: usize = 10_000;

    /// Keeps only the entries `live` says are, if a sweep is due; whether
    /// it swept.
    fn sweep_if_due(&mut self, live: impl FnMut(&K, &mut V) -> bool) -> bool {
        if self.map.len() < self.sweep_at {
            return false;
        }
        self.map.retain(live);
        self.sweep_at = (self.map.len() * 2).max(Self::FLOOR);
        true
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    #[test]
    fn replay_within_window_is_refused() {
        let block = |f| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(f)
        };
        let g = ReplayGuard::new();
        assert!(block(g.first_use("a".into(), 100, 400)));
        assert!(!block(g.first_use("a".into(), 200, 500)));
        assert!(
            block(g.first_use("a".into(), 401, 700)),
            "expired entries may be used again"
        );
        assert!(block(g.first_use("b".into(), 200, 500)));
    }

    /// Expired signatures are forgotten in passes, not on every request,
    /// and live ones are kept through a pass.
    #[test]
    fn expired_signatures_are_swept_and_live_ones_kept() {
        let g = ReplayGuard::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let block = |f| rt.block_on(f);
        // 30,000 signatures that expire at 1,000, then more at 2,000: the
        // first pass after 1,000 drops the expired ones.
        for i in 0..30_000 {
            assert!(block(g.first_use(format!("old{i}"), 500, 1_000)));
        }
        assert_eq!(g.remembered(), 30_000, "all live: nothing swept");
        for i in 0..30_000 {
            assert!(block(g.first_use(format!("new{i}"), 1_500, 2_000)));
        }
        assert!(g.remembered() < 40_000, "the expired ones went: {}", g.remembered());
        for i in (0..30_000).step_by(997) {
            assert!(!block(g.first_use(format!("new{i}"), 1_600, 2_100)), "new{i} replayed");
            assert!(block(g.first_use(format!("old{i}"), 1_600, 2_100)), "old{i} expired");
        }
    }

    /// A signature swept out by a request whose clock read later is still
    /// refused to a replay whose clock reads it as live.
    #[test]
    fn a_sweep_by_a_later_clock_does_not_let_a_replay_in() {
        let g = ReplayGuard::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(rt.block_on(g.first_use("sig".into(), 700, 1_000)));
        // Enough other signatures for a sweep, the last one read at 1,000.
        for i in 0..9_999 {
            assert!(rt.block_on(g.first_use(format!("x{i}"), 700, 5_000)));
        }
        assert!(rt.block_on(g.first_use("sweeper".into(), 1_000, 5_000)));
        assert!(g.remembered() < 10_001, "swept: {}", g.remembered());
        assert!(!rt.block_on(g.first_use("sig".into(), 999, 1_000)), "replayed");
    }

    /// Sweeps walk the map O(1) times per insert on average: counted by the
    /// calls of the liveness check over 200,000 inserts of live entries.
    #[test]
    fn sweeps_cost_constant_work_per_insert() {
        let mut m: Sweeping<u64, ()> = Sweeping::default();
        let mut checks = 0u64;
        for i in 0..200_000u64 {
            m.sweep_if_due(|_, _| {
                checks += 1;
                true
            });
            m.map.insert(i, ());
        }
        assert!(checks < 2 * 200_000, "{checks} checks for 200,000 inserts");
    }
}

/// A sliding window per key: at most `max` hits in `window` (Linq: 30
/// messages per 60 s per sender–recipient pair).
pub struct WindowLimiter {
    max: Option<usize>,
    window: Duration,
    hits: Mutex<Sweeping<String, std::collections::VecDeque<Instant>>>,
    shared: Option<Arc<dyn Store>>,
}

impl WindowLimiter {
    /// State in this process.
    pub fn new(max: Option<usize>, window: Duration) -> Self {
        WindowLimiter {
            max,
            window,
            hits: Mutex::new(Sweeping::default()),
            shared: None,
        }
    }

    /// State in `store` when it is shared by several nodes.
    pub fn for_store(max: Option<usize>, window: Duration, store: &Arc<dyn Store>) -> Self {
        WindowLimiter {
            shared: shares_state(store).then(|| store.clone()),
            ..Self::new(max, window)
        }
    }

    /// Counts a hit; `Err(retry_after)` when the window is full.
    pub async fn hit(&self, key: &str) -> Result<(), Duration> {
        let Some(max) = self.max else { return Ok(()) };
        if let Some(store) = &self.shared {
            let key = format!("window:{key}");
            let (now, window) = (now_ms(), self.window.as_millis() as i64);
            return in_store(store, Ok(()), move |tx| {
                tx.lock_key(&key)?;
                let hits = tx.window_hits(&key, now - window)?;
                if hits.len() >= max {
                    let oldest = hits.first().copied().unwrap_or(now);
                    return Ok(Err(Duration::from_millis((window - (now - oldest)).max(0) as u64)));
                }
                tx.add_window_hit(&key, now)?;
                Ok(Ok(()))
            })
            .await;
        }
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the lock, so each key's hits stay in order.
        let now = Instant::now();
        // Keys whose last hit is out of the window are forgotten.
        let window = self.window;
        hits.sweep_if_due(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        let q = hits.map.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            q.pop_front();
        }
        if q.len() >= max {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }

    /// Keys remembered in this process.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.hits.lock().unwrap_or_else(|p| p.into_inner()).map.len()
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn window_refuses_then_forgets() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let w = WindowLimiter::new(Some(2), Duration::from_millis(50));
        assert!(rt.block_on(w.hit("a")).is_ok() && rt.block_on(w.hit("a")).is_ok());
        assert!(rt.block_on(w.hit("a")).is_err());
        assert!(rt.block_on(w.hit("b")).is_ok(), "per key");
        std::thread::sleep(Duration::from_millis(60));
        assert!(rt.block_on(w.hit("a")).is_ok());
        assert!(rt
            .block_on(WindowLimiter::new(None, Duration::from_secs(1)).hit("x"))
            .is_ok());
    }

    /// Keys whose hits have all left the window are forgotten (once the
    /// map has grown enough for a sweep), not kept for ever.
    #[test]
    fn keys_out_of_the_window_are_forgotten() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let w = WindowLimiter::new(Some(5), Duration::from_millis(100));
        for i in 0..9_999 {
            assert!(rt.block_on(w.hit(&format!("pair{i}"))).is_ok());
        }
        std::thread::sleep(Duration::from_millis(150));
        // The second of these hits finds 10,000 keys and sweeps: the idle
        // pairs go, the busy one stays and is held to its limit.
        for _ in 0..5 {
            assert!(rt.block_on(w.hit("busy")).is_ok());
        }
        assert!(rt.block_on(w.hit("busy")).is_err(), "the sixth hit in the window");
        assert_eq!(w.remembered(), 1, "only the key hit within the window");
    }
}
