//! Rate limits shared by faces. Bitrix24 meters requests with a leaky
//! bucket per portal (docs `settings/performance/limits.md`: each request
//! adds 1, the counter drains `drain` per second, a request that would take
//! it above `burst` is refused). The Vibecode gateway sits in front of the
//! same portal and passes the refusal on as 429 `RATE_LIMITED`, so both
//! faces draw from one bucket per tenant.

use confab_core::TenantId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}

impl PortalLimiter {
    pub fn new(config: Option<BucketConfig>) -> Self {
        PortalLimiter {
            config,
            levels: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request; `Err(retry_after)` when the bucket is full.
    pub fn hit(&self, tenant: TenantId) -> Result<(), Duration> {
        let Some(cfg) = self.config else { return Ok(()) };
        let now = Instant::now();
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let (level, last) = levels.entry(tenant).or_insert((0.0, now));
        let drained = (*level - now.duration_since(*last).as_secs_f64() * cfg.drain_per_sec).max(0.0);
        *last = now;
        if drained + 1.0 > cfg.burst {
            *level = drained;
            let wait = (drained + 1.0 - cfg.burst) / cfg.drain_per_sec;
            return Err(Duration::from_secs_f64(wait.max(0.001)));
        }
        *level = drained + 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse() {
        let l = PortalLimiter::new(Some(BucketConfig {
            drain_per_sec: 0.001,
            burst: 3.0,
        }));
        let t = TenantId(1);
        assert!(l.hit(t).is_ok() && l.hit(t).is_ok() && l.hit(t).is_ok());
        let wait = l.hit(t).unwrap_err();
        assert!(wait.as_secs() > 100, "{wait:?}");
        assert!(l.hit(TenantId(2)).is_ok(), "buckets are per tenant");
    }

    #[test]
    fn drains_over_time() {
        let l = PortalLimiter::new(Some(BucketConfig {
            drain_per_sec: 1000.0,
            burst: 1.0,
        }));
        let t = TenantId(1);
        assert!(l.hit(t).is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.hit(t).is_ok());
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
    seen: Mutex<HashMap<String, i64>>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayGuard {
    pub fn new() -> Self {
        ReplayGuard {
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records `key` until `expires_at` (unix seconds); false if it was
    /// already recorded and has not expired.
    pub fn first_use(&self, key: String, now: i64, expires_at: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 10_000 {
            seen.retain(|_, exp| *exp > now);
        }
        match seen.get(&key) {
            Some(exp) if *exp > now => false,
            _ => {
                seen.insert(key, expires_at);
                true
            }
        }
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    #[test]
    fn replay_within_window_is_refused() {
        let g = ReplayGuard::new();
        assert!(g.first_use("a".into(), 100, 400));
        assert!(!g.first_use("a".into(), 200, 500));
        assert!(g.first_use("a".into(), 401, 700), "expired entries may be used again");
        assert!(g.first_use("b".into(), 200, 500));
    }
}

/// A sliding window per key: at most `max` hits in `window` (Linq: 30
/// messages per 60 s per sender–recipient pair).
pub struct WindowLimiter {
    max: Option<usize>,
    window: Duration,
    hits: Mutex<HashMap<String, std::collections::VecDeque<Instant>>>,
}

impl WindowLimiter {
    pub fn new(max: Option<usize>, window: Duration) -> Self {
        WindowLimiter {
            max,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a hit; `Err(retry_after)` when the window is full.
    pub fn hit(&self, key: &str) -> Result<(), Duration> {
        let Some(max) = self.max else { return Ok(()) };
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        let q = hits.entry(key.to_string()).or_default();
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
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn window_refuses_then_forgets() {
        let w = WindowLimiter::new(Some(2), Duration::from_millis(50));
        assert!(w.hit("a").is_ok() && w.hit("a").is_ok());
        assert!(w.hit("a").is_err());
        assert!(w.hit("b").is_ok(), "per key");
        std::thread::sleep(Duration::from_millis(60));
        assert!(w.hit("a").is_ok());
        assert!(WindowLimiter::new(None, Duration::from_secs(1)).hit("x").is_ok());
    }
}
