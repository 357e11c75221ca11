//! `confab-bench hold`: N concurrent connections (default 1,000) for S
//! seconds (default 60) against a running confab, each looping over a read
//! of every face (Vibecode chat, Bitrix `im.chat.get`, Chert phone numbers,
//! Linq phone numbers). Reports responses by status — anything but 2xx and
//! the documented rate limits (Bitrix 503 QUERY_LIMIT_EXCEEDED, 429s) is an
//! error — and the server's memory before, at the peak, and after 10 s of
//! rest.

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn rss_mb(pid: Option<u32>, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn run(
    base: String,
    token: String,
    connections: usize,
    seconds: u64,
    pid: Option<u32>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let run: u32 = rand::random();
    let slug = format!("hold{run}");
    let members: Vec<i64> = (2..=20).collect();
    let world = json!({"tenants": [{
        "slug": slug,
        "users": (1..=20).map(|u| json!({"id": u, "name": format!("u{u}")})).collect::<Vec<_>>(),
        "lines": [{"number": "+15550000000"}],
        "chats": [{"id": 1, "owner": 1, "members": members}],
        "credentials": [
            {"kind": "vibecode_personal", "secret": format!("vibe_api_{slug}"), "user": 1, "scopes": ["im"]},
            {"kind": "bitrix_webhook", "secret": format!("hook{slug}"), "user": 1, "scopes": ["im"]},
            {"kind": "chert_signing", "secret": format!("chert-{slug}")},
            {"kind": "linq_api_key", "secret": format!("linq-{slug}")},
        ]
    }]});
    let r = client
        .post(format!("{base}/admin/v1/world"))
        .bearer_auth(&token)
        .json(&world)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "world apply failed: {}", r.status());
    let before = rss_mb(pid, "VmRSS:");
    let statuses: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..connections {
        let (client, base, slug, statuses) = (client.clone(), base.clone(), slug.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = i;
            let mut local: BTreeMap<String, usize> = BTreeMap::new();
            while Instant::now() < stop_at {
                n += 1;
                let (face, req) = match n % 4 {
                    0 => (
                        "vibecode",
                        client
                            .get(format!("{base}/v1/chats/1"))
                            .header("x-api-key", format!("vibe_api_{slug}")),
                    ),
                    1 => (
                        "bitrix",
                        client
                            .post(format!("{base}/rest/1/hook{slug}/im.chat.get"))
                            .json(&json!({"CHAT_ID": 1})),
                    ),
                    2 => (
                        "chert",
                        client
                            .get(format!("{base}/api/v1/phone-numbers"))
                            .bearer_auth(format!("chert-{slug}")),
                    ),
                    _ => (
                        "linq",
                        client
                            .get(format!("{base}/api/partner/v3/phone_numbers"))
                            .bearer_auth(format!("linq-{slug}")),
                    ),
                };
                let key = match req.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap_or_default();
                        let limited = status == 429 || (status == 503 && text.contains("QUERY_LIMIT_EXCEEDED"));
                        match status {
                            200..=299 => format!("{face} {status}"),
                            _ if limited => format!("{face} {status} (rate limit)"),
                            _ => format!("ERROR {face} {status}"),
                        }
                    }
                    Err(e) => format!(
                        "ERROR {face} transport: {}",
                        if e.is_timeout() { "timeout" } else { "connection" }
                    ),
                };
                *local.entry(key).or_default() += 1;
            }
            if let Ok(mut s) = statuses.lock() {
                for (k, v) in local {
                    *s.entry(k).or_default() += v;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let peak = rss_mb(pid, "VmHWM:");
    drop(client);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = rss_mb(pid, "VmRSS:");
    let statuses = statuses.lock().map(|s| s.clone()).unwrap_or_default();
    let total: usize = statuses.values().sum();
    let errors: usize = statuses
        .iter()
        .filter(|(k, _)| k.starts_with("ERROR"))
        .map(|(_, v)| v)
        .sum();
    println!(
        "{connections} connections for {seconds} s: {total} responses ({:.0}/s)",
        total as f64 / seconds as f64
    );
    for (k, v) in &statuses {
        println!("  {k:<40} {v}");
    }
    let mb = |v: Option<f64>| {
        v.map(|m| format!("{m:.1} MB"))
            .unwrap_or_else(|| "n/a (pass --pid)".into())
    };
    println!(
        "server RSS: before {}, peak {}, 10 s after {}",
        mb(before),
        mb(peak),
        mb(after)
    );
    println!("errors (other than documented rate limits): {errors}");
    anyhow::ensure!(errors == 0, "{errors} error responses");
    Ok(())
}
