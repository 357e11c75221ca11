//! Process-wide measurements of the store and the delivery worker, kept in
//! atomics and rendered by the server's `GET /metrics`: transaction
//! latency by mode, commands per SQLite group commit, webhook attempt
//! latency by outcome.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets, in seconds.
pub const SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Commands per commit.
pub const COMMANDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A Prometheus histogram in atomics (cumulative buckets, sum, count).
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    counts: [AtomicU64; N],
    /// Sum in millionths of the unit.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micro.fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `_bucket`, `_sum` and `_count` lines of series `name` with
    /// `labels` (`key="value"` pairs, comma-separated, or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let set = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{set} {sum}");
        let _ = writeln!(out, "{name}_count{set} {count}");
    }
}

/// Read transactions, from start to end, seconds.
pub static READ_TXN: Histogram<12> = Histogram::new(SECONDS);
/// Write transactions (on SQLite: one group commit), seconds.
pub static WRITE_TXN: Histogram<12> = Histogram::new(SECONDS);
/// SQLite: one fsync of the WAL before a group of commits is answered.
pub static WAL_SYNC: Histogram<12> = Histogram::new(SECONDS);
/// SQLite: WAL checkpoints, by who ran them.
pub static CHECKPOINT_BACKGROUND: Histogram<12> = Histogram::new(SECONDS);
pub static CHECKPOINT_WRITER: Histogram<12> = Histogram::new(SECONDS);
/// Commands carried by one SQLite group commit.
pub static GROUP_COMMIT: Histogram<9> = Histogram::new(COMMANDS);
/// PostgreSQL: round trips of one write transaction (flights of
/// statements sent together, `BEGIN` and `COMMIT` included).
pub static PG_ROUND_TRIPS: Histogram<9> = Histogram::new(COMMANDS);
/// PostgreSQL: seconds a job waited for a free connection (until a lane
/// took it, or its requester gave up).
pub static PG_POOL_WAIT: Histogram<12> = Histogram::new(SECONDS);
/// Webhook attempts, seconds from request to answer, by outcome.
pub static WEBHOOK_DELIVERED: Histogram<12> = Histogram::new(SECONDS);
pub static WEBHOOK_RETRY: Histogram<12> = Histogram::new(SECONDS);
pub static WEBHOOK_DEAD: Histogram<12> = Histogram::new(SECONDS);

/// Every series above, with HELP and TYPE lines.
pub fn render(out: &mut String) {
    let txn = "confab_store_transaction_seconds";
    head(
        out,
        txn,
        "Store transactions by mode (a SQLite write is one group commit).",
    );
    READ_TXN.render(out, txn, "mode=\"read\"");
    WRITE_TXN.render(out, txn, "mode=\"write\"");
    single(
        out,
        &GROUP_COMMIT,
        "confab_store_group_commit_commands",
        "Commands per SQLite group commit.",
    );
    single(
        out,
        &WAL_SYNC,
        "confab_store_wal_sync_seconds",
        "SQLite: fsyncs of the WAL, each answering the group commits before it.",
    );
    let ckpt = "confab_store_checkpoint_seconds";
    head(
        out,
        ckpt,
        "SQLite: WAL checkpoints, by the background checkpointer or by the writer.",
    );
    CHECKPOINT_BACKGROUND.render(out, ckpt, "by=\"checkpointer\"");
    CHECKPOINT_WRITER.render(out, ckpt, "by=\"writer\"");
    single(
        out,
        &PG_ROUND_TRIPS,
        "confab_store_pg_round_trips",
        "PostgreSQL: round trips per write transaction (statements sent together count once; a statement's first preparation on a connection is not counted).",
    );
    single(
        out,
        &PG_POOL_WAIT,
        "confab_store_pg_pool_wait_seconds",
        "PostgreSQL: time a job waited for a free connection (until a connection's thread took it, or it was given up).",
    );
    let hook = "confab_webhook_attempt_seconds";
    head(out, hook, "Webhook delivery attempts by outcome, request to answer.");
    WEBHOOK_DELIVERED.render(out, hook, "outcome=\"delivered\"");
    WEBHOOK_RETRY.render(out, hook, "outcome=\"retry\"");
    WEBHOOK_DEAD.render(out, hook, "outcome=\"dead\"");
}

/// The HELP and TYPE lines of a histogram metric.
fn head(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
}

/// A histogram that is its metric's only series, with its HELP and TYPE.
fn single<const N: usize>(out: &mut String, h: &Histogram<N>, name: &str, help: &str) {
    head(out, name, help);
    h.render(out, name, "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::new([1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(3.0);
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"2\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 5\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }
}
