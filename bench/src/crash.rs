//! `confab-bench crash`: kills a confab with SIGKILL at random moments while
//! it acknowledges a mixed load over all four faces — leaves through
//! Vibecode and Bitrix (`im.chat.leave`), removals by the owner through
//! Bitrix (`im.chat.user.delete`), adds and messages by the owner through
//! Vibecode, in group chats; the line leaving iMessage groups through Chert
//! (HMAC-signed, synchronous) and through Linq (accepted at once, carried
//! out by the worker) — restarts it, and checks at the end that every
//! acknowledged change is in the database (a queued Linq leave, once the
//! worker has run it), that no change is half-applied (each closed
//! membership has exactly one `left` or `removed` event, each added member
//! one `joined` event, each acknowledged message its `message_sent` event),
//! that nobody is active twice, that no iMessage group fell below 3, and
//! that every acknowledged Chert leave's `participant.removed` webhook
//! reached the tool's own receiver at least once (a Linq subscription).

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Members of every group chat: users 2..=USERS (user 1 owns them all).
const USERS: usize = 40;
/// Users the owner adds to every group chat during the run.
const NEWCOMERS: std::ops::RangeInclusive<usize> = 41..=44;
/// Messages the owner sends to every group chat.
const MESSAGES: usize = 4;
const ADMIN: &str = "crash-admin";
const LINE: &str = "+15550000000";
const CHERT_SECRET: &str = "crash-chert-secret";

/// The UUID of iMessage group `g` (its Chert id is `ch_` + the hex).
fn group_uuid(g: usize) -> String {
    format!("00000000-0000-4000-8000-{g:012}")
}

fn world(chats: usize) -> String {
    let mut w = String::from("[[tenants]]\nslug = \"crash\"\nusers = [\n");
    for u in 1..=*NEWCOMERS.end() {
        w += &format!("  {{ id = {u}, name = \"u{u}\" }},\n");
    }
    w += &format!("]\nlines = [{{ number = \"{LINE}\" }}]\nchats = [\n");
    let members: Vec<String> = (2..=USERS).map(|u| u.to_string()).collect();
    for c in 1..=chats {
        w += &format!("  {{ id = {c}, owner = 1, members = [{}] }},\n", members.join(", "));
    }
    // Twice as many iMessage groups of 4 (the line and 3 contacts): the
    // first half for Chert, the second for Linq.
    for g in 1..=2 * chats {
        let h = |i: usize| format!("\"+1556{:07}\"", g * 3 + i);
        w += &format!(
            "  {{ id = {}, uuid = \"{}\", line = \"{LINE}\", members = [{}, {}, {}] }},\n",
            chats + g,
            group_uuid(g),
            h(0),
            h(1),
            h(2)
        );
    }
    w += "]\ncredentials = [\n";
    for u in 1..=USERS {
        w += &format!(
            "  {{ kind = \"vibecode_personal\", secret = \"vibe_api_crash_{u}\", user = {u}, scopes = [\"im\"] }},\n"
        );
        w += &format!("  {{ kind = \"bitrix_webhook\", secret = \"crashhook{u}\", user = {u}, scopes = [\"im\"] }},\n");
    }
    w += &format!("  {{ kind = \"chert_signing\", secret = \"{CHERT_SECRET}\" }},\n");
    w += "  { kind = \"linq_api_key\", secret = \"crash-linq\" },\n";
    w + "]\n"
}

fn start(confab: &Path, dir: &Path, port: u16, db: Option<&str>) -> anyhow::Result<Child> {
    let mut cmd = Command::new(confab);
    if let Some(url) = db {
        cmd.env("CONFAB_DATABASE_URL", url);
    }
    let child = cmd
        .current_dir(dir)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-token",
            ADMIN,
            "--world",
            "world.toml",
        ])
        .args([
            "--bitrix-rate-limit",
            "off",
            "--bitrix-operating-limit",
            "off",
            "--log-level",
            "warn",
        ])
        // Short retries, so deliveries interrupted by a kill finish soon.
        .args(["--webhook-retry-base-ms", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting confab")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("confab did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// Where the run keeps its data: the default SQLite file, or a PostgreSQL
/// database; with `pg_cluster` (a `scripts/pg-cluster` directory) the
/// PostgreSQL server itself is crashed (`stop -m immediate`) and restarted
/// every third round, while confab is serving.
pub struct Target<'a> {
    pub database_url: Option<&'a str>,
    pub pg_cluster: Option<&'a Path>,
}

fn crash_database(cluster: &Path) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-cluster");
    let out = Command::new(script)
        .args(["crash", &cluster.to_string_lossy()])
        .output()
        .context("running scripts/pg-cluster crash")?;
    if !out.status.success() {
        bail!("restarting PostgreSQL failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// One change the load asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// (group chat, member): the member leaves (Vibecode or Bitrix) or is
    /// removed by the owner (Bitrix), by the member's number.
    Exit(usize, usize),
    /// (group chat, newcomer): the owner adds them (Vibecode).
    Add(usize, usize),
    /// The owner sends a message to the group chat (Vibecode).
    Message(usize),
    /// The line leaves this iMessage group through Chert.
    ChertLeave(usize),
    /// The line leaves this iMessage group through Linq (queued).
    LinqLeave(usize),
}

/// An acknowledged change: the op, or the message with the id confab gave.
#[derive(Debug, Clone, Copy)]
enum Acked {
    Change(Op),
    Message(usize, u64),
}

pub async fn run(confab: &Path, kills: usize, chats: usize, target: Target<'_>) -> anyhow::Result<()> {
    let db = target.database_url;
    let confab = &confab
        .canonicalize()
        .with_context(|| format!("no confab binary at {}", confab.display()))?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("world.toml"), world(chats))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // Every change the run asks for, shuffled so that every round mixes
    // the faces and the kinds.
    let mut ops: Vec<Op> = Vec::new();
    for c in 1..=chats {
        ops.extend((2..=USERS).map(|u| Op::Exit(c, u)));
        ops.extend(NEWCOMERS.map(|u| Op::Add(c, u)));
        ops.extend((0..MESSAGES).map(|_| Op::Message(c)));
        ops.push(Op::ChertLeave(chats + c));
        ops.push(Op::LinqLeave(2 * chats + c));
    }
    {
        use rand::seq::SliceRandom;
        ops.shuffle(&mut rand::thread_rng());
    }
    let queue = Arc::new(Mutex::new(ops));
    // The webhook receiver: every body that arrives.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook_url = {
        let r = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let r = r.clone();
                async move {
                    if let Ok(mut r) = r.lock() {
                        r.push(String::from_utf8_lossy(&body).into_owned());
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
        url
    };
    let mut subscribed = false;
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let base = format!("http://127.0.0.1:{port}");
    let (mut killed, mut db_restarts) = (0, 0);
    for round in 0..=kills {
        let mut child = start(confab, dir.path(), port, db)?;
        if !subscribed {
            let r = client
                .post(format!("{base}/api/partner/v3/webhook-subscriptions"))
                .bearer_auth("crash-linq")
                .json(&serde_json::json!({"target_url": hook_url, "subscribed_events": ["participant.removed"]}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "subscription failed: {}", r.status());
            subscribed = true;
        }
        let run_for = Duration::from_millis(150 + rand::random::<u64>() % 500);
        let stop_at = Instant::now() + run_for;
        let mut workers = Vec::new();
        for _ in 0..16 {
            let (q, a, c, b) = (queue.clone(), acked.clone(), client.clone(), base.clone());
            workers.push(tokio::spawn(async move {
                while Instant::now() < stop_at {
                    let Some(op) = q.lock().map(|mut q| q.pop()).ok().flatten() else {
                        break;
                    };
                    let req = match op {
                        Op::ChertLeave(chat) => {
                            let ts = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_secs() as i64)
                                .unwrap_or(0);
                            let mut mac = Hmac::<Sha256>::new_from_slice(CHERT_SECRET.as_bytes()).expect("hmac");
                            mac.update(format!("{ts}.").as_bytes());
                            let sig = hex::encode(mac.finalize().into_bytes());
                            c.post(format!(
                                "{b}/api/v1/chats/ch_{}/leave",
                                group_uuid(chat - chats).replace('-', "")
                            ))
                            .header("x-chert-tenant", "crash")
                            .header("x-chert-signature", format!("v1,{ts},{sig}"))
                        }
                        Op::LinqLeave(chat) => c
                            .post(format!("{b}/api/partner/v3/chats/{}/leave", group_uuid(chat - chats)))
                            .bearer_auth("crash-linq"),
                        // Every fourth member is removed by the owner.
                        Op::Exit(chat, user) if user % 4 == 3 => c
                            .post(format!("{b}/rest/1/crashhook1/im.chat.user.delete"))
                            .json(&serde_json::json!({"CHAT_ID": chat, "USER_ID": user})),
                        Op::Exit(chat, user) if user % 2 == 1 => c
                            .post(format!("{b}/rest/{user}/crashhook{user}/im.chat.leave"))
                            .json(&serde_json::json!({"CHAT_ID": chat})),
                        Op::Exit(chat, user) => c
                            .post(format!("{b}/v1/chats/{chat}/leave"))
                            .header("x-api-key", format!("vibe_api_crash_{user}")),
                        Op::Add(chat, user) => c
                            .post(format!("{b}/v1/chats/{chat}/members"))
                            .header("x-api-key", "vibe_api_crash_1")
                            .json(&serde_json::json!({"userIds": [user]})),
                        Op::Message(chat) => c
                            .post(format!("{b}/v1/chats/{chat}/messages"))
                            .header("x-api-key", "vibe_api_crash_1")
                            .json(&serde_json::json!({"message": "crash test"})),
                    };
                    let Ok(r) = req.send().await else { continue };
                    if !r.status().is_success() {
                        continue;
                    }
                    let ack = match op {
                        // The message's id, from {"success": true, "data": id}.
                        Op::Message(chat) => match r.json::<Value>().await {
                            Ok(v) => match v["data"].as_u64() {
                                Some(id) => Acked::Message(chat, id),
                                None => continue,
                            },
                            // Acknowledged, but the answer was cut: not counted.
                            Err(_) => continue,
                        },
                        op => Acked::Change(op),
                    };
                    if let Ok(mut a) = a.lock() {
                        a.push(ack);
                    }
                }
            }));
        }
        if let Some(cluster) = target.pg_cluster.filter(|_| round % 3 == 1) {
            // The database crashes under confab mid-round, then comes back.
            tokio::time::sleep(run_for / 2).await;
            let cluster = cluster.to_path_buf();
            tokio::task::spawn_blocking(move || crash_database(&cluster)).await??;
            db_restarts += 1;
        }
        // Kill while the workers are still sending.
        tokio::time::sleep(run_for.saturating_sub(Duration::from_millis(30))).await;
        if round < kills {
            child.kill()?; // SIGKILL: no graceful shutdown
            killed += 1;
        }
        for w in workers {
            let _ = w.await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    // Verify on a fresh start.
    let mut child = start(confab, dir.path(), port, db)?;
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    // Queued Linq leaves are carried out by the worker after the restart.
    let linq_acked: Vec<usize> = acked
        .iter()
        .filter_map(|a| match a {
            Acked::Change(Op::LinqLeave(c)) => Some(*c),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = client.get(format!("{base}/metrics")).send().await?.text().await?;
        if metrics.lines().any(|l| l == "confab_operations_queued 0") || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut lost, mut violations, mut closed_total, mut added_total, mut messages_total) = (0, 0, 0, 0, 0);
    // Message ids are per tenant: an acknowledged message that was lost
    // leaves its id to the next one, so two acknowledgements with one id
    // mean a loss even if a message with that id exists.
    let mut message_ids = HashSet::new();
    for a in &acked {
        if let Acked::Message(_, id) = a {
            if !message_ids.insert(*id) {
                lost += 1;
            }
        }
    }
    let mut below_floor = 0;
    for chat in 1..=chats * 3 {
        let v: Value = client
            .get(format!("{base}/admin/v1/tenants/crash/chats/{chat}"))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .json()
            .await?;
        let history = v["history"].as_array().cloned().unwrap_or_default();
        let events = v["events"].as_array().cloned().unwrap_or_default();
        let mut active = HashSet::new();
        let mut closed = HashSet::new();
        for m in &history {
            let u = m["user_id"].as_u64().unwrap_or(0) as usize;
            if m["left_at"].is_null() {
                if !active.insert(u) {
                    violations += 1; // active twice
                }
            } else {
                closed.insert(u);
            }
        }
        let subjects = |kinds: &[&str]| -> Vec<usize> {
            events
                .iter()
                .filter(|e| kinds.iter().any(|k| e["kind"] == *k))
                .map(|e| e["subject_id"].as_u64().unwrap_or(0) as usize)
                .collect()
        };
        let exits = subjects(&["left", "removed"]);
        if exits.len() != closed.len() || exits.iter().any(|u| !closed.contains(u)) {
            violations += 1; // a change without its event, or an event without its change
        }
        // Newcomers: an active membership exactly when a `joined` event.
        let joined: Vec<usize> = subjects(&["joined"])
            .into_iter()
            .filter(|u| NEWCOMERS.contains(u))
            .collect();
        let newcomers: HashSet<usize> = active.iter().copied().filter(|u| NEWCOMERS.contains(u)).collect();
        if joined.len() != newcomers.len() || joined.iter().any(|u| !newcomers.contains(u)) {
            violations += 1;
        }
        let messages: HashSet<u64> = events
            .iter()
            .filter(|e| e["kind"] == "message_sent")
            .filter_map(|e| e["message_id"].as_u64())
            .collect();
        closed_total += closed.len();
        added_total += newcomers.len();
        messages_total += messages.len();
        if chat > chats && active.len() < 3 {
            below_floor += 1; // an iMessage group below 3
        }
        for a in &acked {
            let present = match *a {
                Acked::Change(Op::Exit(c, u)) if c == chat => closed.contains(&u),
                Acked::Change(Op::Add(c, u)) if c == chat => active.contains(&u),
                // The line is the only one who leaves an iMessage group.
                Acked::Change(Op::ChertLeave(c) | Op::LinqLeave(c)) if c == chat => !closed.is_empty(),
                Acked::Message(c, id) if c == chat => messages.contains(&id),
                _ => true,
            };
            if !present {
                lost += 1;
            }
        }
    }
    // Every acknowledged Chert leave's webhook arrives, at least once.
    let groups_acked: Vec<usize> = acked
        .iter()
        .filter_map(|a| match a {
            Acked::Change(Op::ChertLeave(c)) => Some(c - chats),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let undelivered = loop {
        let bodies = received.lock().map(|r| r.clone()).unwrap_or_default();
        let missing = groups_acked
            .iter()
            .filter(|g| !bodies.iter().any(|b| b.contains(&group_uuid(**g))))
            .count();
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    println!("store: {}", if db.is_some() { "postgres" } else { "sqlite" });
    println!("kills: {killed}");
    println!("database restarts: {db_restarts}");
    let count = |f: fn(&Acked) -> bool| acked.iter().filter(|a| f(a)).count();
    println!("changes acknowledged: {}", acked.len());
    println!(
        "  leaves and removals in group chats: {}",
        count(|a| matches!(a, Acked::Change(Op::Exit(..))))
    );
    println!("  adds: {}", count(|a| matches!(a, Acked::Change(Op::Add(..)))));
    println!("  messages: {}", count(|a| matches!(a, Acked::Message(..))));
    println!("  Chert leaves of the line in iMessage groups: {}", groups_acked.len());
    println!("  Linq leaves (queued, then carried out): {}", linq_acked.len());
    println!("in the database: {closed_total} closed memberships, {added_total} newcomers, {messages_total} messages");
    println!("acknowledged but lost: {lost}");
    println!("iMessage groups below 3: {below_floor}");
    println!("invariant violations: {violations}");
    println!(
        "webhooks received: {}; acknowledged Chert leaves without their webhook: {undelivered}",
        received.lock().map(|r| r.len()).unwrap_or(0)
    );
    if lost > 0 || violations > 0 || below_floor > 0 || undelivered > 0 {
        bail!("crash safety failed: {lost} lost, {violations} violations, {below_floor} below the floor, {undelivered} webhooks missing");
    }
    Ok(())
}
