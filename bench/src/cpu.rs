//! CPU time spent over a phase, read from `/proc` (Linux): the server's
//! (`--pid`), the load generator's own, and, with `--cpu-of NAME`, that of
//! every process whose name starts with NAME (`postgres`: the database
//! server's backends, writers and checkpointer). Each process counts with
//! its children that have ended (a backend's time moves to the postmaster
//! when it is reaped); a process whose parent is not counted is lost when
//! it ends. NAME is matched against the kernel's 15-character name; a
//! NAME that also matches the server or this program counts them again.

use serde_json::{json, Value};

/// Clock ticks per second of `/proc/*/stat`'s times (`USER_HZ`: 100 on
/// x86-64 and arm64, where confab is measured).
const TICKS_PER_SECOND: f64 = 100.0;

pub(crate) struct CpuClock {
    pub(crate) server: Option<u32>,
    pub(crate) others: Option<String>,
}

#[derive(Clone, Copy)]
pub(crate) struct CpuSample {
    server: Option<u64>,
    own: Option<u64>,
    others: Option<u64>,
}

/// utime + stime + cutime + cstime of one `/proc/PID/stat` text (its own
/// time and that of its children that ended), and its command name.
fn ticks(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // Fields 14 to 17 of proc(5); the first field after the name is 3.
    let mut total = 0;
    for i in 11..=14 {
        total += fields.get(i)?.parse::<u64>().ok()?;
    }
    Some((comm, total))
}

fn ticks_of(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    ticks(&stat).map(|(_, t)| t)
}

fn ticks_of_named(prefix: &str) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            if let Some((comm, t)) = ticks(&stat) {
                if comm.starts_with(prefix) {
                    total += t;
                }
            }
        }
    }
    Some(total)
}

impl CpuClock {
    pub(crate) fn sample(&self) -> CpuSample {
        CpuSample {
            server: self.server.and_then(|pid| ticks_of(&format!("/proc/{pid}/stat"))),
            own: ticks_of("/proc/self/stat"),
            others: self.others.as_deref().and_then(ticks_of_named),
        }
    }

    /// Microseconds of CPU per request between `before` and `after`, by
    /// whom: JSON for the report, and one line of text.
    pub(crate) fn per_request(&self, before: CpuSample, after: CpuSample, requests: usize) -> (Value, String) {
        let us = |b: Option<u64>, a: Option<u64>| {
            let (b, a) = (b?, a?);
            Some(a.saturating_sub(b) as f64 / TICKS_PER_SECOND * 1e6 / requests.max(1) as f64)
        };
        let mut parts = Vec::new();
        let mut out = serde_json::Map::new();
        let mut add = |label: &str, v: Option<f64>| {
            if let Some(v) = v {
                parts.push(format!("{label} {v:.1}"));
                out.insert(label.replace(' ', "_"), json!(v));
            }
        };
        add("server", us(before.server, after.server));
        add("load generator", us(before.own, after.own));
        if let Some(name) = &self.others {
            add(name, us(before.others, after.others));
        }
        (Value::Object(out), parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_times_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) w) S 1 2 3 4 5 6 7 8 9 10 250 50 7 3 20 0 1";
        assert_eq!(ticks(stat), Some(("tokio (rt) w", 310)));
        assert_eq!(ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn per_request_divides_by_the_requests() {
        let clock = CpuClock {
            server: Some(1),
            others: Some("postgres".into()),
        };
        let before = CpuSample {
            server: Some(100),
            own: Some(10),
            others: Some(0),
        };
        let after = CpuSample {
            server: Some(300),
            own: Some(30),
            others: Some(500),
        };
        // 200 ticks = 2 s over 20,000 requests = 100 µs each.
        let (v, text) = clock.per_request(before, after, 20_000);
        assert_eq!(v["server"], json!(100.0));
        assert_eq!(v["load_generator"], json!(10.0));
        assert_eq!(v["postgres"], json!(250.0));
        assert_eq!(text, "server 100.0, load generator 10.0, postgres 250.0");
    }
}
