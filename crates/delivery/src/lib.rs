//! Delivery: background workers that drain the outbox.
//!
//! * Webhooks: every outbox row (written in the same transaction as its
//!   event) is delivered over HTTP to its subscription's URL, in the
//!   subscription's face's format and signature. At-least-once: the event
//!   id stays the same across attempts so receivers can de-duplicate.
//!   Retries on 5xx, 429 and network errors with exponential backoff and
//!   jitter, no retry on other 4xx, dead-letter after `max_attempts`
//!   (Linq's documented policy: 10 attempts over about 25 minutes). Every
//!   attempt is recorded.
//! * Operations: queued asynchronous commands (Linq leave/add/remove) are
//!   carried out with the same core commands, in their own transaction;
//!   their events then flow into the outbox like any other.
//!
//! Claims are leases in the database, so after a crash the rows of the dead
//! worker become due again when the lease runs out: nothing is lost.

use confab_core::tx::StoreTx;
use confab_core::*;
use confab_store::{Store, StoreExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A webhook ready to send: the body (the same on every attempt) and the
/// headers (signatures may carry the attempt's timestamp).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
}

/// How one face renders and signs its webhooks.
pub trait WebhookFormat: Send + Sync {
    /// Renders `event` for `sub`; `None` = this face does not announce it.
    fn render(
        &self,
        tx: &mut dyn StoreTx,
        sub: &Subscription,
        event: &Event,
        attempt: i64,
        now_ms: i64,
    ) -> Result<Option<Rendered>, CoreError>;
}

/// The formats by face name ("linq", "chert", "bitrix").
pub type Formats = HashMap<&'static str, Arc<dyn WebhookFormat>>;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: i64,
    /// The first retry waits this long; each next one twice as long.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Per-attempt HTTP timeout.
    pub timeout: Duration,
    /// How often idle workers look for due rows.
    pub poll: Duration,
    /// How long a claim lasts before another worker may take the row.
    pub lease: Duration,
}

impl Default for DeliveryConfig {
    /// Linq's documented policy: up to 10 attempts over about 25 minutes
    /// (1.5 s doubling: 1.5 + 3 + ... + 384 s ≈ 12.8 min of waits, capped at
    /// 10 min each).
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: 10,
            base_delay: Duration::from_millis(1500),
            max_delay: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(100),
            lease: Duration::from_secs(60),
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wait before attempt `attempts + 1`: base · 2^(attempts-1), capped, ±20 %.
pub fn backoff(cfg: &DeliveryConfig, attempts: i64) -> Duration {
    let exp = (attempts.max(1) - 1).min(30) as u32;
    let raw = cfg
        .base_delay
        .saturating_mul(2u32.saturating_pow(exp))
        .min(cfg.max_delay);
    let jitter: f64 = 0.8 + rand::random::<f64>() * 0.4;
    raw.mul_f64(jitter)
}

/// What to do after an HTTP outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry,
    Dead,
}

/// 2xx delivered; 5xx, 429, 408 and network errors retried; other 4xx (and
/// anything else) dead at once.
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(s) if s >= 500 || s == 429 || s == 408 => Verdict::Retry,
        None => Verdict::Retry,
        Some(_) => Verdict::Dead,
    }
}

enum Prepared {
    Gone,
    Skip,
    Ready(Box<(Subscription, Rendered)>),
}

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub formats: Arc<Formats>,
    pub config: DeliveryConfig,
    client: reqwest::Client,
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, formats: Formats, config: DeliveryConfig) -> Worker {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Worker {
            store,
            formats: Arc::new(formats),
            config,
            client,
        }
    }

    /// Runs both loops until the task is dropped/aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let (keep, stop) = tokio::sync::watch::channel(false);
        let task = self.spawn_until(stop);
        tokio::spawn(async move {
            let _keep = keep;
            let _ = task.await;
        })
    }

    /// Runs both loops until `stop` turns true (or its sender is dropped):
    /// the round under way — the operations and webhook attempts it
    /// claimed — is finished and recorded first, so a graceful shutdown
    /// leaves nothing leased to wait for its lease to run out.
    pub fn spawn_until(self, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = Arc::new(self);
        // Woken when this node queues work; the poll finds what other
        // nodes queued, retries coming due and anything a wake-up missed.
        // (A wake-up while busy is kept for the next idle wait, so none
        // is lost; at worst it costs one empty round.)
        let wakeup = me.store.worker_wakeup().unwrap_or_default();
        tokio::spawn(async move {
            // Stops when told to, or when the sender is gone (the task
            // that held it was aborted), busy or idle.
            while !*stop.borrow() && stop.has_changed().is_ok() {
                let ops = me.run_operations_once().await;
                let sent = me.deliver_once().await;
                if ops == 0 && sent == 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(me.config.poll) => {}
                        _ = wakeup.notified() => {}
                        changed = stop.changed() => {
                            if changed.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        })
    }

    /// Executes due queued operations; returns how many were handled.
    pub async fn run_operations_once(&self) -> usize {
        let lease = self.config.lease.as_millis() as i64;
        let ops = match self
            .store
            .write(move |tx| tx.claim_operations(now_ms(), lease, 64))
            .await
        {
            Ok(ops) => ops,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim operations");
                return 0;
            }
        };
        let n = ops.len();
        // One chat's operations run one after another, in queue order (an
        // add queued before a leave is applied before it); different chats
        // run concurrently, so the store's group commit (SQLite) or its
        // pool (PostgreSQL) carries many at once without piling up on one
        // chat's lock.
        let mut by_chat: Vec<((TenantId, ChatId), Vec<Operation>)> = Vec::new();
        for op in ops {
            let key = (op.tenant_id, op.chat_id);
            match by_chat.iter_mut().find(|(k, _)| *k == key) {
                Some((_, queue)) => queue.push(op),
                None => by_chat.push((key, vec![op])),
            }
        }
        futures_util::future::join_all(by_chat.into_iter().map(|(_, queue)| async move {
            for op in queue {
                self.run_operation(op).await;
            }
        }))
        .await;
        n
    }

    async fn run_operation(&self, op: Operation) {
        let run = op.clone();
        let result = self
            .store
            .write(move |tx| {
                commands::run_operation(tx.as_tx(), &run)?;
                let at = tx.now();
                tx.finish_operation(&run.trace_id, OperationStatus::Done, None, at)
            })
            .await;
        match result {
            Ok(()) => tracing::info!(trace_id = %op.trace_id, kind = op.kind.as_str(), "operation done"),
            // The store is away: the lease runs out and it is tried again.
            Err(CoreError::Unavailable(e)) => {
                tracing::warn!(trace_id = %op.trace_id, error = %e, "operation postponed")
            }
            Err(rule) => {
                let reason = rule.to_string();
                let trace = op.trace_id.clone();
                let recorded = self
                    .store
                    .write(move |tx| {
                        let at = tx.now();
                        tx.finish_operation(&trace, OperationStatus::Failed, Some(&reason), at)
                    })
                    .await;
                tracing::info!(trace_id = %op.trace_id, error = %rule, recorded = recorded.is_ok(), "operation failed");
            }
        }
    }

    /// Sends due deliveries; returns how many were attempted.
    pub async fn deliver_once(&self) -> usize {
        let lease = self.config.lease.as_millis() as i64;
        let due = match self
            .store
            .write(move |tx| tx.claim_deliveries(now_ms(), lease, 64))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deliveries");
                return 0;
            }
        };
        let n = due.len();
        futures_util::future::join_all(due.into_iter().map(|d| self.attempt(d))).await;
        n
    }

    async fn attempt(&self, d: Delivery) {
        let attempt = d.attempts + 1;
        let formats = self.formats.clone();
        let (sub_id, event_id) = (d.subscription_id.clone(), d.event_id);
        let now = now_ms();
        let prepared = self
            .store
            .read(move |tx| {
                let Some(sub) = tx.subscription(&sub_id)? else {
                    return Ok(Prepared::Gone);
                };
                let Some(event) = tx.event(event_id)? else {
                    return Ok(Prepared::Gone);
                };
                let Some(format) = formats.get(sub.face.as_str()).cloned() else {
                    return Ok(Prepared::Gone);
                };
                Ok(match format.render(tx, &sub, &event, attempt, now)? {
                    Some(r) => Prepared::Ready(Box::new((sub, r))),
                    None => Prepared::Skip,
                })
            })
            .await;
        let started = Instant::now();
        let (status, error) = match prepared {
            // The face does not announce this event to this subscription
            // (e.g. message.received to a message.sent-only subscriber).
            Ok(Prepared::Skip) => {
                let record = Attempt {
                    delivery_id: d.id,
                    attempt,
                    at: now,
                    status_code: None,
                    latency_ms: 0,
                    error: Some("skipped: not announced to this subscription".into()),
                };
                if let Err(e) = self
                    .store
                    .write(move |tx| tx.record_attempt(&record, DeliveryStatus::Delivered, now))
                    .await
                {
                    tracing::warn!(error = %e, delivery = d.id, "cannot record a skipped delivery");
                }
                return;
            }
            Ok(Prepared::Ready(ready)) => {
                let (sub, rendered) = *ready;
                let mut req = self
                    .client
                    .post(&sub.target_url)
                    .header(reqwest::header::CONTENT_TYPE, rendered.content_type)
                    .body(rendered.body);
                for (k, v) in rendered.headers {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Ok(res) => (Some(res.status().as_u16()), None),
                    Err(e) => (None, Some(format!("network error: {e}"))),
                }
            }
            // Subscription deleted or event gone: nothing left to send.
            Ok(Prepared::Gone) => (Some(410), Some("subscription or event no longer exists".to_string())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot render a delivery; will retry");
                (None, Some(e.to_string()))
            }
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        let v = verdict(status);
        let (state, next) = match v {
            Verdict::Delivered => (DeliveryStatus::Delivered, now),
            Verdict::Retry if attempt < self.config.max_attempts => (
                DeliveryStatus::Pending,
                now_ms() + backoff(&self.config, attempt).as_millis() as i64,
            ),
            Verdict::Retry | Verdict::Dead => (DeliveryStatus::Dead, now),
        };
        let record = Attempt {
            delivery_id: d.id,
            attempt,
            at: now,
            status_code: status.map(i64::from),
            latency_ms,
            error: error.or_else(|| status.filter(|s| !(200..300).contains(s)).map(|s| format!("HTTP {s}"))),
        };
        let h = match (v, state) {
            (Verdict::Delivered, _) => &confab_store::stats::WEBHOOK_DELIVERED,
            (_, DeliveryStatus::Dead) => &confab_store::stats::WEBHOOK_DEAD,
            _ => &confab_store::stats::WEBHOOK_RETRY,
        };
        h.observe(started.elapsed().as_secs_f64());
        tracing::info!(delivery = d.id, attempt, status = ?status, outcome = state.as_str(), "webhook attempt");
        if let Err(e) = self
            .store
            .write(move |tx| tx.record_attempt(&record, state, next))
            .await
        {
            tracing::warn!(error = %e, delivery = d.id, "cannot record a delivery attempt");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(Some(200)), Verdict::Delivered);
        assert_eq!(verdict(Some(204)), Verdict::Delivered);
        assert_eq!(verdict(Some(500)), Verdict::Retry);
        assert_eq!(verdict(Some(503)), Verdict::Retry);
        assert_eq!(verdict(Some(429)), Verdict::Retry);
        assert_eq!(verdict(None), Verdict::Retry);
        assert_eq!(verdict(Some(400)), Verdict::Dead);
        assert_eq!(verdict(Some(404)), Verdict::Dead);
        assert_eq!(verdict(Some(302)), Verdict::Dead);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = DeliveryConfig {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            ..Default::default()
        };
        let b1 = backoff(&cfg, 1).as_secs_f64();
        let b3 = backoff(&cfg, 3).as_secs_f64();
        let b9 = backoff(&cfg, 9).as_secs_f64();
        assert!((0.8..=1.2).contains(&b1), "{b1}");
        assert!((3.2..=4.8).contains(&b3), "{b3}");
        assert!(b9 <= 12.0, "capped: {b9}");
        // Linq's policy: ten attempts over roughly 25 minutes.
        let d = DeliveryConfig::default();
        let total: f64 = (1..10)
            .map(|a| {
                d.base_delay
                    .saturating_mul(2u32.pow(a - 1))
                    .min(d.max_delay)
                    .as_secs_f64()
            })
            .sum();
        assert!((600.0..=1800.0).contains(&total), "{total}");
    }
}
