//! confab's load generator and storage baseline.
//!
//! `confab-bench load`: provisions a world through the admin API (one
//! tenant, C group chats of M members, a Vibecode key per member), then, at
//! a chosen concurrency, measures `GET /healthz` (the ceiling of this
//! machine right now) and a bounded number of leaves, adds, message sends
//! or a mix of them (`--op`, see `plan`); reports
//! throughput, p50/p99/p99.9, errors, the ratio to the `/healthz` ceiling and
//! the server's peak RSS (`--pid`). Prints a table and writes JSON.
//!
//! `confab-bench storage`: the same SQL a leave does (close a membership,
//! insert an event, insert an outbox row) directly on SQLite in WAL mode, with
//! `synchronous` FULL and NORMAL, 1 and 100 leaves per transaction.

mod cpu;
mod crash;
mod hold;
mod imessage;
mod plan;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "confab-bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, Debug)]
pub(crate) enum Workload {
    /// Leaves spread over many chats (realistic traffic).
    Scattered,
    /// Leaves within a few large groups.
    Concentrated,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
enum Face {
    Vibecode,
    Bitrix,
    /// Bitrix `imbot.chat.leave`: bots of one app leave, called with the
    /// app's OAuth token (members 2.. of every chat are the app's bots).
    BitrixBot,
    Chert,
    Linq,
}

#[derive(Subcommand)]
enum Cmd {
    Load {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long)]
        admin_token: String,
        #[arg(long, value_enum, default_value = "scattered")]
        workload: Workload,
        /// Which face leaves: vibecode, bitrix (im.chat.leave by webhook),
        /// bitrix-bot (imbot.chat.leave: the members are an app's bots,
        /// called with its OAuth token), chert (HMAC-signed) or linq
        /// (accept, then the webhook).
        #[arg(long, value_enum, default_value = "vibecode")]
        face: Face,
        /// Vibecode and Bitrix: what each request does: leave
        /// (`POST /v1/chats/:id/leave`, `im.chat.leave`), remove (the owner
        /// removes a member: `DELETE /v1/chats/:id/members/:user`,
        /// `im.chat.user.delete`), add (the owner
        /// adds a user who is in no chat: `POST /v1/chats/:id/members`,
        /// `im.chat.user.add`), send (a member posts a message:
        /// `POST /v1/chats/:id/messages`, `im.message.add`) or mixed (of
        /// every ten requests, eight sends, one add and one leave).
        #[arg(long, value_enum, default_value = "leave")]
        op: plan::Op,
        /// Chats (scattered default 10000; concentrated default 4).
        #[arg(long)]
        chats: Option<usize>,
        /// Members per chat (scattered default 20; concentrated default 2000).
        #[arg(long)]
        members: Option<usize>,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Requests to make (bounded; also the number of /healthz calls).
        #[arg(long, default_value_t = 20000)]
        requests: usize,
        /// Linq only: send at this many leaves per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Server process id, to report its peak RSS (and, for Vibecode
        /// and Bitrix, its CPU per request in each phase).
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Vibecode and Bitrix: also report the CPU per request of every
        /// process whose name starts with this (`postgres`: the database
        /// server), next to the server's (`--pid`) and the load generator's.
        #[arg(long)]
        cpu_of: Option<String>,
        /// Vibecode and Bitrix: the tenant's slug (default: a new random
        /// one per run).
        #[arg(long)]
        tenant: Option<String>,
        /// Vibecode and Bitrix: do not provision; `--tenant` names a world
        /// provisioned before with the same `--workload`, `--chats` and
        /// `--members` and no leaves yet (a copy of its database, so that
        /// a large world is provisioned once). `--requests 0` provisions
        /// and exits. Adds need `--outsiders` users in no chat.
        #[arg(long, requires = "tenant")]
        reuse: bool,
        /// Vibecode and Bitrix: users in no chat, for adds to bring in
        /// (default: as many as this run's adds need; with `--reuse`, the
        /// world must have been provisioned with at least that many).
        #[arg(long)]
        outsiders: Option<usize>,
        /// Chert: subscribe a receiver in this process to
        /// `participant.removed` (through Linq's API) before the leaves, so
        /// that each leave also writes an outbox row, as the raw storage
        /// baseline's does, and is delivered; reports when the last webhook
        /// arrived. (Linq's leaves always have one; no face announces a
        /// user's leave from a Vibecode or Bitrix chat.)
        #[arg(long)]
        webhook: bool,
    },
    /// SIGKILL a confab at random moments under load; check nothing
    /// acknowledged is lost and nothing is half-applied.
    Crash {
        /// The confab binary.
        #[arg(long, default_value = "target/release/confab")]
        confab: std::path::PathBuf,
        #[arg(long, default_value_t = 20)]
        kills: usize,
        #[arg(long, default_value_t = 200)]
        chats: usize,
        /// Run on this PostgreSQL database instead of SQLite.
        #[arg(long)]
        database_url: Option<String>,
        /// A `scripts/pg-cluster` directory: crash and restart that
        /// PostgreSQL server every third round as well.
        #[arg(long, requires = "database_url")]
        pg_cluster: Option<std::path::PathBuf>,
    },
    /// Hold N connections for S seconds with reads over every face; report
    /// errors and the server's memory before, at the peak and after.
    Hold {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long)]
        admin_token: String,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Server process id, to report its memory.
        #[arg(long)]
        pid: Option<u32>,
    },
    Storage {
        #[arg(long, default_value_t = 10000)]
        chats: usize,
        #[arg(long, default_value_t = 20)]
        members: usize,
        #[arg(long, default_value_t = 20000)]
        leaves: usize,
    },
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn peak_rss_mb(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) struct Phase {
    pub(crate) name: String,
    pub(crate) ok: usize,
    pub(crate) errors: usize,
    pub(crate) seconds: f64,
    pub(crate) latencies_ms: Vec<f64>,
    /// CPU per request over the phase, by whom (see `cpu`), when measured.
    pub(crate) cpu: Option<Value>,
}

/// What one worker of a phase returns: (ok, errors, latencies in ms).
pub(crate) type WorkerResult = (usize, usize, Vec<f64>);

impl Phase {
    /// Sums the workers' results into the phase's figures.
    pub(crate) async fn collect(
        name: &str,
        started: Instant,
        handles: Vec<tokio::task::JoinHandle<WorkerResult>>,
    ) -> Phase {
        let (mut ok, mut errors, mut latencies_ms) = (0, 0, Vec::new());
        for h in handles {
            if let Ok((o, e, l)) = h.await {
                ok += o;
                errors += e;
                latencies_ms.extend(l);
            }
        }
        latencies_ms.sort_by(|a, b| a.total_cmp(b));
        Phase {
            name: name.into(),
            ok,
            errors,
            seconds: started.elapsed().as_secs_f64(),
            latencies_ms,
            cpu: None,
        }
    }

    pub(crate) fn throughput(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }
    pub(crate) fn json(&self, ceiling: f64) -> Value {
        let l = &self.latencies_ms;
        json!({
            "phase": self.name, "ok": self.ok, "errors": self.errors, "seconds": self.seconds,
            "throughput_per_s": self.throughput(), "ratio_to_healthz": self.throughput() / ceiling.max(1e-9),
            "p50_ms": percentile(l, 0.5), "p99_ms": percentile(l, 0.99), "p999_ms": percentile(l, 0.999),
            "cpu_us_per_request": self.cpu,
        })
    }
}

/// Runs `jobs` requests with `concurrency` workers; `make(i)` builds request i.
pub(crate) async fn drive<F>(name: &str, concurrency: usize, jobs: usize, make: F) -> Phase
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (make, next) = (make.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let (mut ok, mut err, mut lat) = (0usize, 0usize, Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                let t = Instant::now();
                match make(i).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => err += 1,
                }
            }
            (ok, err, lat)
        }));
    }
    Phase::collect(name, started, handles).await
}

/// The app whose bots leave with `--face bitrix-bot`.
const BENCH_APP: &str = "confab.bench";

/// Its OAuth token in tenant `slug`.
fn oauth_token(slug: &str) -> String {
    format!("oauth{slug}")
}

#[allow(clippy::too_many_arguments)]
async fn provision(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    slug: &str,
    chats: usize,
    members: usize,
    outsiders: usize,
    bots: bool,
) -> anyhow::Result<()> {
    // With bots, members 2.. of every chat are one app's bots, and the
    // owner (user 1) has the app's OAuth token; otherwise every member is a
    // person with a Vibecode key and a Bitrix webhook.
    let people = if bots { 1 } else { members };
    let users: Vec<Value> = (1..=people)
        .chain(members + 1..=members + outsiders)
        .map(|u| json!({"id": u, "name": format!("u{u}")}))
        .collect();
    let mut creds: Vec<Value> = (1..=people)
        .flat_map(|u| {
            [
                json!({"kind": "vibecode_personal", "secret": format!("vibe_api_{slug}_{u}"), "user": u, "scopes": ["im"]}),
                json!({"kind": "bitrix_webhook", "secret": format!("hook{slug}{u}"), "user": u, "scopes": ["im"]}),
            ]
        })
        .collect();
    let (mut apps, mut bot_users) = (Vec::new(), Vec::new());
    if bots {
        apps.push(json!({"client_id": BENCH_APP}));
        bot_users = (2..=members)
            .map(|u| json!({"id": u, "app": BENCH_APP, "name": format!("bot{u}")}))
            .collect();
        creds.push(json!({"kind": "bitrix_oauth", "secret": oauth_token(slug), "user": 1, "app": BENCH_APP, "scopes": ["imbot"]}));
    }
    let base_world =
        json!({"tenants": [{"slug": slug, "users": users, "apps": apps, "bots": bot_users, "credentials": creds}]});
    let post = |w: Value| {
        let req = client
            .post(format!("{base}/admin/v1/world"))
            .bearer_auth(token)
            .json(&w);
        async move {
            let r = req.send().await?;
            if !r.status().is_success() {
                bail!(
                    "world apply failed: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
            }
            Ok(())
        }
    };
    post(base_world).await?;
    // Chats in chunks that stay under the 1 MiB body limit.
    // (Small enough that a chunk applies well within the request timeout on
    // PostgreSQL, where every row is a round trip.)
    let per_chunk = (5_000 / members.max(1)).clamp(1, 250);
    let others: Vec<usize> = (2..=members).collect();
    let mut start = 1;
    while start <= chats {
        let end = (start + per_chunk - 1).min(chats);
        let cs: Vec<Value> = (start..=end)
            .map(|c| json!({"id": c, "owner": 1, "members": others}))
            .collect();
        post(json!({"tenants": [{"slug": slug, "chats": cs}]})).await?;
        start = end + 1;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn load(
    base: String,
    token: String,
    workload: Workload,
    face: Face,
    op: plan::Op,
    chats: Option<usize>,
    members: Option<usize>,
    concurrency: usize,
    requests: usize,
    pid: Option<u32>,
    out: Option<std::path::PathBuf>,
    tenant: Option<String>,
    reuse: bool,
    outsiders: Option<usize>,
    cpu_of: Option<String>,
) -> anyhow::Result<()> {
    let (chats, members) = match workload {
        Workload::Scattered => (chats.unwrap_or(10_000), members.unwrap_or(20)),
        Workload::Concentrated => (chats.unwrap_or(4), members.unwrap_or(2000)),
    };
    if face == Face::BitrixBot && op != plan::Op::Leave {
        bail!("--face bitrix-bot measures leaves only (bots leave with imbot.chat.leave), not --op {op:?}");
    }
    let (reqs, needed) = plan::plan(op, workload, chats, members, requests)?;
    let outsiders = outsiders.unwrap_or(needed);
    if outsiders < needed {
        bail!("{requests} requests add {needed} users per chat, more than --outsiders {outsiders}");
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let slug = tenant.unwrap_or_else(|| format!("bench{}", rand::random::<u32>()));
    let t = Instant::now();
    if !reuse {
        provision(
            &client,
            &base,
            &token,
            &slug,
            chats,
            members,
            outsiders,
            face == Face::BitrixBot,
        )
        .await
        .context("provisioning")?;
    }
    let provision_s = t.elapsed().as_secs_f64();
    if requests == 0 {
        println!("provisioned tenant {slug}: {chats} chats x {members} members and {outsiders} users in no chat in {provision_s:.1} s");
        return Ok(());
    }
    // On stderr at once, so a profiler can start measuring here.
    eprintln!("ready: provisioned in {provision_s:.1} s; measuring");
    let reqs = Arc::new(reqs);
    let clock = cpu::CpuClock {
        server: pid,
        others: cpu_of,
    };
    let (c1, b1) = (client.clone(), base.clone());
    let before = clock.sample();
    let mut health = drive("healthz", concurrency, requests, move |_| {
        c1.get(format!("{b1}/healthz"))
    })
    .await;
    let between = clock.sample();
    let (health_cpu, health_cpu_text) = clock.per_request(before, between, requests);
    let (c2, b2, s2) = (client.clone(), base.clone(), slug.clone());
    let name = match (face, op) {
        (Face::Bitrix, plan::Op::Leave) => "bitrix im.chat.leave".to_string(),
        (Face::BitrixBot, _) => "bitrix imbot.chat.leave".to_string(),
        (Face::Bitrix, plan::Op::Remove) => "bitrix im.chat.user.delete".to_string(),
        (Face::Bitrix, plan::Op::Add) => "bitrix im.chat.user.add".to_string(),
        (Face::Bitrix, plan::Op::Send) => "bitrix im.message.add".to_string(),
        (face, op) => format!("{face:?} {op:?}").to_lowercase(),
    };
    let bitrix = face == Face::Bitrix;
    let bot_leave = {
        let (c, url, token) = (
            client.clone(),
            format!("{base}/rest/imbot.chat.leave.json"),
            oauth_token(&slug),
        );
        move |chat: usize, bot: usize| {
            c.post(&url)
                .json(&json!({"CHAT_ID": chat, "BOT_ID": bot, "auth": token}))
        }
    };
    let mut measured = drive(&name, concurrency, requests, move |i| {
        let vibecode_as = |method: reqwest::Method, path: String, user: usize| {
            c2.request(method, format!("{b2}/v1/chats/{path}"))
                .header("x-api-key", format!("vibe_api_{s2}_{user}"))
        };
        let vibecode = |path: String, user: usize| vibecode_as(reqwest::Method::POST, path, user);
        let bitrix_call = |method: &str, user: usize, body: Value| {
            c2.post(format!("{b2}/rest/{user}/hook{s2}{user}/{method}.json"))
                .json(&body)
        };
        match reqs[i] {
            plan::Req::Leave { chat, user } if face == Face::BitrixBot => bot_leave(chat, user),
            plan::Req::Leave { chat, user } if bitrix => bitrix_call("im.chat.leave", user, json!({"CHAT_ID": chat})),
            plan::Req::Leave { chat, user } => vibecode(format!("{chat}/leave"), user),
            // The owner (user 1) removes.
            plan::Req::Remove { chat, user } if bitrix => {
                bitrix_call("im.chat.user.delete", 1, json!({"CHAT_ID": chat, "USER_ID": user}))
            }
            plan::Req::Remove { chat, user } => {
                vibecode_as(reqwest::Method::DELETE, format!("{chat}/members/{user}"), 1)
            }
            // The owner (user 1) adds.
            plan::Req::Add { chat, user } if bitrix => {
                bitrix_call("im.chat.user.add", 1, json!({"CHAT_ID": chat, "USERS": [user]}))
            }
            plan::Req::Add { chat, user } => vibecode(format!("{chat}/members"), 1).json(&json!({"userIds": [user]})),
            plan::Req::Send { chat, user } if bitrix => bitrix_call(
                "im.message.add",
                user,
                json!({"DIALOG_ID": format!("chat{chat}"), "MESSAGE": format!("load {i}")}),
            ),
            plan::Req::Send { chat, user } => {
                vibecode(format!("{chat}/messages"), user).json(&json!({"message": format!("load {i}")}))
            }
        }
    })
    .await;
    let (leaves_cpu, leaves_cpu_text) = clock.per_request(between, clock.sample(), requests);
    health.cpu = Some(health_cpu);
    measured.cpu = Some(leaves_cpu);
    let ceiling = health.throughput();
    let rss = peak_rss_mb(pid);
    println!("workload {workload:?}, {op:?}: {chats} chats x {members} members, concurrency {concurrency}, provisioned in {provision_s:.1} s");
    println!(
        "{:<24} {:>9} {:>7} {:>11} {:>7} {:>8} {:>8} {:>9}",
        "phase", "ok", "errors", "per second", "ratio", "p50 ms", "p99 ms", "p99.9 ms"
    );
    for p in [&health, &measured] {
        let l = &p.latencies_ms;
        println!(
            "{:<24} {:>9} {:>7} {:>11.0} {:>7.3} {:>8.2} {:>8.2} {:>9.2}",
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
    if let Some(mb) = rss {
        println!("server peak RSS: {mb:.1} MB");
    }
    println!("CPU per request, µs (from /proc): healthz: {health_cpu_text}; {name}: {leaves_cpu_text}");
    let report = json!({
        "workload": format!("{workload:?}").to_lowercase(), "op": format!("{op:?}").to_lowercase(), "chats": chats, "members": members, "concurrency": concurrency,
        "provision_seconds": provision_s, "phases": [health.json(ceiling), measured.json(ceiling)], "server_peak_rss_mb": rss,
    });
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Scattered leaves: (chat, member) pairs taking one member from every chat
/// in a shuffled order (the same order on every run) before a second from
/// any, so neighbouring leaves land in unrelated chats and pages, as real
/// traffic over many chats does. The storage baseline uses the same order.
pub(crate) fn scattered_pairs(chats: usize, members: usize, n: usize) -> Vec<(usize, usize)> {
    let order = shuffled_chats(chats);
    (0..n.min(chats * (members - 1)))
        .map(|a| (order[a % chats], a / chats + 2))
        .collect()
}

/// Chats 1..=`chats` in a shuffled order, the same on every run.
pub(crate) fn shuffled_chats(chats: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (1..=chats).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0x636f_6e66_6162));
    order
}

/// The raw storage baseline: leave-shaped SQL straight on SQLite.
fn storage(chats: usize, members: usize, leaves: usize) -> anyhow::Result<()> {
    println!("{:<10} {:>6} {:<12} {:>12}", "sync", "batch", "order", "leaves/s");
    let scattered = scattered_pairs(chats, members, leaves);
    // Neighbouring: every member of one chat, then the next chat.
    let neighbouring: Vec<(usize, usize)> = (0..leaves.min(chats * (members - 1)))
        .map(|a| (a / (members - 1) + 1, a % (members - 1) + 2))
        .collect();
    for sync in ["FULL", "NORMAL"] {
        for (batch, order, pairs) in [
            (1usize, "scattered", &scattered),
            (100, "scattered", &scattered),
            (100, "neighbouring", &neighbouring),
        ] {
            let dir = tempfile::tempdir()?;
            let mut c = rusqlite::Connection::open(dir.path().join("b.db"))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", sync)?;
            c.execute_batch(
                "CREATE TABLE memberships (seq INTEGER PRIMARY KEY, tenant_id INTEGER, chat_id INTEGER, user_id INTEGER, left_at INTEGER);
                 CREATE INDEX m ON memberships(tenant_id, chat_id, user_id) ;
                 CREATE TABLE events (id INTEGER PRIMARY KEY, uuid TEXT, tenant_id INTEGER, chat_id INTEGER, kind TEXT, subject_id INTEGER, at INTEGER);
                 CREATE TABLE outbox (id INTEGER PRIMARY KEY, tenant_id INTEGER, event_id INTEGER, status TEXT, next_attempt_at INTEGER);",
            )?;
            {
                let t = c.transaction()?;
                {
                    let mut ins =
                        t.prepare("INSERT INTO memberships (tenant_id, chat_id, user_id) VALUES (1, ?1, ?2)")?;
                    for chat in 1..=chats {
                        for user in 1..=members {
                            ins.execute([chat as i64, user as i64])?;
                        }
                    }
                }
                t.commit()?;
            }
            let started = Instant::now();
            for group in pairs.chunks(batch) {
                let t = c.transaction()?;
                for &(chat, user) in group {
                    let (chat, user) = (chat as i64, user as i64);
                    t.prepare_cached("UPDATE memberships SET left_at = 1 WHERE tenant_id = 1 AND chat_id = ?1 AND user_id = ?2 AND left_at IS NULL")?
                        .execute([chat, user])?;
                    t.prepare_cached("INSERT INTO events (uuid, tenant_id, chat_id, kind, subject_id, at) VALUES (hex(randomblob(16)), 1, ?1, 'left', ?2, 1)")?
                        .execute([chat, user])?;
                    let id = t.last_insert_rowid();
                    t.prepare_cached("INSERT INTO outbox (tenant_id, event_id, status, next_attempt_at) VALUES (1, ?1, 'pending', 0)")?
                        .execute([id])?;
                }
                t.commit()?;
            }
            let rate = pairs.len() as f64 / started.elapsed().as_secs_f64();
            println!("{sync:<10} {batch:>6} {order:<12} {rate:>12.0}");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Load {
            base,
            admin_token,
            workload,
            face,
            op,
            chats,
            members,
            concurrency,
            requests,
            rate,
            pid,
            json,
            cpu_of,
            tenant,
            reuse,
            outsiders,
            webhook,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            if matches!(face, Face::Vibecode | Face::Bitrix | Face::BitrixBot) {
                if webhook {
                    bail!("--webhook is for the chert face: no face announces a user's leave from a Vibecode or Bitrix chat");
                }
                rt.block_on(load(
                    base,
                    admin_token,
                    workload,
                    face,
                    op,
                    chats,
                    members,
                    concurrency,
                    requests,
                    pid,
                    json,
                    tenant,
                    reuse,
                    outsiders,
                    cpu_of,
                ))?;
            } else {
                if cpu_of.is_some() {
                    bail!("--cpu-of is for the vibecode and bitrix faces");
                }
                if tenant.is_some() || outsiders.is_some() {
                    bail!("--tenant, --reuse and --outsiders are for the vibecode and bitrix faces");
                }
                if op != plan::Op::Leave {
                    bail!("--op is for the vibecode and bitrix faces (chert and linq measure leaves)");
                }
                if webhook && face != Face::Chert {
                    bail!("--webhook is for the chert face (linq's leaves always have a webhook)");
                }
                rt.block_on(imessage::load(
                    base,
                    admin_token,
                    face == Face::Linq,
                    webhook,
                    concurrency,
                    requests,
                    rate,
                    pid,
                    json,
                ))?;
            }
            Ok(())
        }
        Cmd::Storage { chats, members, leaves } => storage(chats, members, leaves),
        Cmd::Hold {
            base,
            admin_token,
            connections,
            seconds,
            pid,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(hold::run(base, admin_token, connections, seconds, pid))
        }
        Cmd::Crash {
            confab,
            kills,
            chats,
            database_url,
            pg_cluster,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(crash::run(
                &confab,
                kills,
                chats,
                crash::Target {
                    database_url: database_url.as_deref(),
                    pg_cluster: pg_cluster.as_deref(),
                },
            ))
        }
    }
}
