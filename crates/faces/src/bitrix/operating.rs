//! Bitrix's `operating` limit (`settings/performance/limits.md`): per method
//! and per app/webhook, the execution seconds of the last 10 one-minute
//! baskets; above the limit the next call is refused with 429
//! OPERATION_TIME_LIMIT until baskets expire (`operating_reset_at`).

use std::collections::HashMap;
use std::sync::Mutex;

const BASKETS: i64 = 10;

/// The on-premise default when the limit is enabled: 420 s per 10 minutes.
pub const DEFAULT_LIMIT_SECS: f64 = 420.0;

/// (minute, seconds used in it).
type Baskets = Vec<(i64, f64)>;

pub struct OperatingLimiter {
    /// Seconds allowed per 10 minutes; None = accounting only, no limit.
    limit: Option<f64>,
    /// (credential id, method) → per-minute baskets (minute → seconds).
    used: Mutex<HashMap<(i64, String), Baskets>>,
}

/// What the accounting says about a key right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub operating: f64,
    pub reset_at: i64,
}

impl OperatingLimiter {
    pub fn new(limit: Option<f64>) -> Self {
        OperatingLimiter {
            limit,
            used: Mutex::new(HashMap::new()),
        }
    }

    fn usage_of(baskets: &mut Baskets, now: i64) -> Usage {
        let minute = now / 60;
        baskets.retain(|(m, _)| *m > minute - BASKETS);
        let operating = baskets.iter().map(|(_, s)| s).sum();
        let oldest = baskets.iter().map(|(m, _)| *m).min().unwrap_or(minute);
        Usage {
            operating,
            reset_at: (oldest + BASKETS) * 60,
        }
    }

    /// Before a call: Err(usage) when the method is blocked.
    pub fn check(&self, cred: i64, method: &str, now: i64) -> Result<Usage, Usage> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let baskets = used.entry((cred, method.to_string())).or_default();
        let usage = Self::usage_of(baskets, now);
        match self.limit {
            Some(limit) if usage.operating > limit => Err(usage),
            _ => Ok(usage),
        }
    }

    /// After a call: adds its execution time.
    pub fn record(&self, cred: i64, method: &str, now: i64, seconds: f64) -> Usage {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let baskets = used.entry((cred, method.to_string())).or_default();
        let minute = now / 60;
        match baskets.iter_mut().find(|(m, _)| *m == minute) {
            Some((_, s)) => *s += seconds,
            None => baskets.push((minute, seconds)),
        }
        Self::usage_of(baskets, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_above_the_limit_until_baskets_expire() {
        let l = OperatingLimiter::new(Some(1.0));
        assert!(l.check(1, "m", 6000).is_ok());
        l.record(1, "m", 6000, 1.5);
        let blocked = l.check(1, "m", 6001).unwrap_err();
        assert_eq!(blocked.operating, 1.5);
        assert_eq!(blocked.reset_at, 6000 + 600);
        assert!(l.check(2, "m", 6001).is_ok(), "per credential");
        assert!(l.check(1, "other", 6001).is_ok(), "per method");
        assert!(l.check(1, "m", 6000 + 600).is_ok(), "ten minutes later");
    }
}
