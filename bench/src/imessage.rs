//! Chert and Linq leaves: C iMessage groups of 4 (the line + 3 contacts),
//! one leave each (the line leaves). For Linq, the accept latency and the
//! time until the `participant.removed` webhook reaches a local receiver.

use crate::{drive, peak_rss_mb, percentile, Phase};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LINE: &str = "+15550000000";

/// Chat UUIDs are unique across tenants: each run gets its own prefix.
fn uuid_of(run: u32, c: usize) -> String {
    format!("{run:08x}-0000-4000-8000-{c:012}")
}

#[allow(clippy::too_many_arguments)]
pub async fn load(
    base: String,
    token: String,
    linq: bool,
    webhook: bool,
    concurrency: usize,
    requests: usize,
    rate: u64,
    pid: Option<u32>,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let run: u32 = rand::random();
    let slug = format!("im{run}");
    let secret = format!("chert-{slug}");
    // Provision in chunks under the body limit.
    let head = json!({"tenants": [{"slug": slug, "lines": [{"number": LINE}],
        "credentials": [{"kind": "chert_signing", "secret": secret}, {"kind": "linq_api_key", "secret": format!("linq-{slug}")}]}]});
    let post = |w: Value| {
        let req = client
            .post(format!("{base}/admin/v1/world"))
            .bearer_auth(&token)
            .json(&w);
        async move {
            let r = req.send().await?;
            anyhow::ensure!(r.status().is_success(), "world apply failed: {}", r.status());
            Ok::<(), anyhow::Error>(())
        }
    };
    let t = Instant::now();
    post(head).await?;
    for start in (1..=requests).step_by(2000) {
        let end = (start + 1999).min(requests);
        let chats: Vec<Value> = (start..=end)
            .map(|c| json!({"id": c, "line": LINE, "uuid": uuid_of(run, c), "members": [format!("+1555{:07}", c * 3), format!("+1555{:07}", c * 3 + 1), format!("+1555{:07}", c * 3 + 2)]}))
            .collect();
        post(json!({"tenants": [{"slug": slug, "chats": chats}]})).await?;
    }
    let provision_s = t.elapsed().as_secs_f64();

    // A local receiver notes when each trace id's webhook arrives (Linq),
    // and how many arrived and when the last did.
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let count: Arc<Mutex<(usize, Option<Instant>)>> = Arc::default();
    if linq || webhook {
        let (a, n) = (arrivals.clone(), count.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (a, n) = (a.clone(), n.clone());
                async move {
                    if let Ok(mut n) = n.lock() {
                        n.0 += 1;
                        n.1 = Some(Instant::now());
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        if let Some(t) = v["trace_id"].as_str() {
                            if let Ok(mut a) = a.lock() {
                                a.insert(t.to_string(), Instant::now());
                            }
                        }
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let r = client
            .post(format!("{base}/api/partner/v3/webhook-subscriptions"))
            .bearer_auth(format!("linq-{slug}"))
            .json(&json!({"target_url": url, "subscribed_events": ["participant.removed"]}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "subscription failed: {}", r.status());
    }

    let (c1, b1) = (client.clone(), base.clone());
    let health = drive("healthz", concurrency, requests, move |_| {
        c1.get(format!("{b1}/healthz"))
    })
    .await;
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let leaves_started = Instant::now();
    let (c2, b2, s2) = (client.clone(), base.clone(), slug.clone());
    let name = if linq { "linq leave accept" } else { "chert leave" };
    let leaves: Phase = if linq {
        let acc = accepted.clone();
        drive_linq(name, concurrency, requests, c2, b2, s2, acc, run, rate).await
    } else {
        drive(name, concurrency, requests, move |i| {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0) as i64
                - (i % 200) as i64;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
            mac.update(format!("{ts}.").as_bytes());
            let sig = hex::encode(mac.finalize().into_bytes());
            let id = format!("ch_{}", uuid_of(run, i + 1).replace('-', ""));
            c2.post(format!("{b2}/api/v1/chats/{id}/leave"))
                .header("x-chert-tenant", s2.clone())
                .header("x-chert-signature", format!("v1,{ts},{sig}"))
        })
        .await
    };
    let ceiling = health.throughput();
    let mut report = json!({"face": if linq { "linq" } else { "chert" }, "chats": requests, "concurrency": concurrency, "provision_seconds": provision_s,
        "phases": [health.json(ceiling), leaves.json(ceiling)], "server_peak_rss_mb": peak_rss_mb(pid)});
    println!("{name}: {requests} groups of 4, concurrency {concurrency}, provisioned in {provision_s:.1} s");
    println!(
        "{:<20} {:>9} {:>7} {:>11} {:>7} {:>8} {:>8} {:>9}",
        "phase", "ok", "errors", "per second", "ratio", "p50 ms", "p99 ms", "p99.9 ms"
    );
    for p in [&health, &leaves] {
        let l = &p.latencies_ms;
        println!(
            "{:<20} {:>9} {:>7} {:>11.0} {:>7.3} {:>8.2} {:>8.2} {:>9.2}",
            p.name,
            p.ok,
            p.errors,
            p.throughput(),
            p.throughput() / ceiling.max(1e-9),
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 0.999)
        );
    }
    if linq {
        let deadline = Instant::now() + Duration::from_secs(60);
        while arrivals.lock().map(|a| a.len()).unwrap_or(0) < leaves.ok && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let acc = accepted.lock().map(|a| a.clone()).unwrap_or_default();
        let arr = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let mut lat: Vec<f64> = acc
            .iter()
            .filter_map(|(t, at)| arr.get(t).map(|w| w.duration_since(*at).as_secs_f64() * 1000.0))
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        println!(
            "accept → participant.removed webhook: {} of {} arrived; p50 {:.1} ms, p99 {:.1} ms",
            lat.len(),
            acc.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        report["webhook_ms"] = json!({"arrived": lat.len(), "accepted": acc.len(), "p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99)});
    }
    if webhook && !linq {
        let deadline = Instant::now() + Duration::from_secs(60);
        while count.lock().map(|n| n.0).unwrap_or(0) < leaves.ok && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (n, last) = count.lock().map(|n| *n).unwrap_or((0, None));
        let secs = last.map_or(0.0, |l| l.duration_since(leaves_started).as_secs_f64());
        println!(
            "participant.removed webhooks: {n} of {} arrived, the last {secs:.2} s after the first leave ({:.0} leaves/s counted to it)",
            leaves.ok,
            n as f64 / secs.max(1e-9)
        );
        report["webhooks"] = json!({"arrived": n, "last_after_seconds": secs});
    }
    if let Some(mb) = peak_rss_mb(pid) {
        println!("server peak RSS: {mb:.1} MB");
    }
    if let Some(path) = out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Linq leaves, remembering when each trace id was accepted.
#[allow(clippy::too_many_arguments)]
async fn drive_linq(
    name: &str,
    concurrency: usize,
    jobs: usize,
    c: reqwest::Client,
    base: String,
    slug: String,
    accepted: Arc<Mutex<HashMap<String, Instant>>>,
    run: u32,
    rate: u64,
) -> Phase {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (c, base, slug, next, accepted) = (c.clone(), base.clone(), slug.clone(), next.clone(), accepted.clone());
        handles.push(tokio::spawn(async move {
            let (mut ok, mut err, mut lat) = (0usize, 0usize, Vec::new());
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                if rate > 0 {
                    // Job i is due at i / rate seconds after the start.
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                }
                let t = Instant::now();
                let r = c
                    .post(format!("{base}/api/partner/v3/chats/{}/leave", uuid_of(run, i + 1)))
                    .bearer_auth(format!("linq-{slug}"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        ok += 1;
                        if let (Some(trace), Ok(mut a)) = (v["trace_id"].as_str(), accepted.lock()) {
                            a.insert(trace.to_string(), Instant::now());
                        }
                    }
                    _ => err += 1,
                }
            }
            (ok, err, lat)
        }));
    }
    Phase::collect(name, started, handles).await
}
