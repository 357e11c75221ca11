//! Test harness: the real router on an ephemeral port, a fresh store of
//! the kind the run asks for (`CONFAB_TEST_STORE`: a temporary SQLite file,
//! or a new PostgreSQL database) behind a switchable fault wrapper, a reqwest client, and a
//! world builder with one line per entity.
#![allow(dead_code)]

use confab_faces::admin::world::{self, *};
use confab_faces::limits::{BucketConfig, PortalLimiter};
use confab_faces::{AppState, Shared};
use confab_server::app::{self, HttpLimits};
use confab_store::{FaultyStore, Store, StoreExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub faults: Arc<FaultyStore>,
    pub db: confab_store::testing::TestDb,
    _task: tokio::task::JoinHandle<()>,
    _worker: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self._worker.abort();
        self._task.abort();
    }
}

pub fn fast_delivery() -> confab_delivery::DeliveryConfig {
    confab_delivery::DeliveryConfig {
        max_attempts: 3,
        base_delay: std::time::Duration::from_millis(50),
        max_delay: std::time::Duration::from_millis(200),
        timeout: std::time::Duration::from_secs(5),
        poll: std::time::Duration::from_millis(20),
        lease: std::time::Duration::from_secs(30),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(HttpLimits::default()).await
    }

    pub async fn start_with(limits: HttpLimits) -> TestServer {
        Self::start_full(limits, None).await
    }

    /// A server whose Bitrix portal bucket is `bucket` (None = no limit).
    pub async fn start_limited(bucket: Option<BucketConfig>) -> TestServer {
        Self::start_full(HttpLimits::default(), bucket).await
    }

    async fn start_full(limits: HttpLimits, bucket: Option<BucketConfig>) -> TestServer {
        Self::start_bitrix(limits, bucket, None).await
    }

    /// A server whose state `tweak` adjusts first (limits, ...).
    pub async fn start_tweaked(tweak: impl FnOnce(&mut Shared)) -> TestServer {
        Self::start_inner(HttpLimits::default(), None, None, tweak).await
    }

    /// Full control: HTTP limits, the portal bucket and the Bitrix
    /// `operating` limit in seconds (None = accounting only).
    pub async fn start_bitrix(limits: HttpLimits, bucket: Option<BucketConfig>, operating: Option<f64>) -> TestServer {
        Self::start_inner(limits, bucket, operating, |_| {}).await
    }

    async fn start_inner(
        limits: HttpLimits,
        bucket: Option<BucketConfig>,
        operating: Option<f64>,
        tweak: impl FnOnce(&mut Shared),
    ) -> TestServer {
        // SQLite or PostgreSQL, as the run asks (CONFAB_TEST_STORE).
        let db = confab_store::testing::fresh_store().await;
        Self::start_on(db, limits, bucket, operating, tweak).await
    }

    /// Another confab node on this server's PostgreSQL database: its own
    /// connection pool, router, limiters and delivery worker.
    pub async fn second_node(&self, bucket: Option<BucketConfig>) -> TestServer {
        let url = self.db.url.clone().expect("a second node needs a PostgreSQL run");
        let store = confab_store::testing::open_pg(&url, &confab_store::PgOptions::default()).await;
        let db = confab_store::testing::TestDb {
            store,
            url: Some(url),
            dir: None,
        };
        Self::start_on(db, HttpLimits::default(), bucket, None, |_| {}).await
    }

    /// A server on this store (SQLite or PostgreSQL, whatever the run).
    pub async fn on_store(db: confab_store::testing::TestDb) -> TestServer {
        Self::start_on(db, HttpLimits::default(), None, None, |_| {}).await
    }

    /// Stops the delivery worker: what is queued from now on stays queued.
    pub fn stop_worker(&self) {
        self._worker.abort();
    }

    /// A node on an existing PostgreSQL database, with these options.
    pub async fn on_database(url: &str, opts: &confab_store::PgOptions) -> TestServer {
        let db = confab_store::testing::TestDb {
            store: confab_store::testing::open_pg(url, opts).await,
            url: Some(url.to_owned()),
            dir: None,
        };
        Self::start_on(db, HttpLimits::default(), None, None, |_| {}).await
    }

    /// A server with this world applied whose delivery worker runs with
    /// `delivery` instead of [`fast_delivery`].
    pub async fn with_world_delivery(w: World, delivery: confab_delivery::DeliveryConfig) -> TestServer {
        let db = confab_store::testing::fresh_store().await;
        let s = Self::start_on_with(db, HttpLimits::default(), None, None, |_| {}, delivery).await;
        s.apply(w).await;
        s
    }

    async fn start_on(
        db: confab_store::testing::TestDb,
        limits: HttpLimits,
        bucket: Option<BucketConfig>,
        operating: Option<f64>,
        tweak: impl FnOnce(&mut Shared),
    ) -> TestServer {
        Self::start_on_with(db, limits, bucket, operating, tweak, fast_delivery()).await
    }

    async fn start_on_with(
        db: confab_store::testing::TestDb,
        limits: HttpLimits,
        bucket: Option<BucketConfig>,
        operating: Option<f64>,
        tweak: impl FnOnce(&mut Shared),
        delivery: confab_delivery::DeliveryConfig,
    ) -> TestServer {
        let faults = Arc::new(FaultyStore::new(db.store.clone()));
        let store: Arc<dyn Store> = faults.clone();
        // Tests run without the portal limit unless they ask for one.
        let mut state = Shared {
            portal_limiter: Arc::new(PortalLimiter::for_store(bucket, &store)),
            operating: Arc::new(confab_faces::bitrix::operating::OperatingLimiter::new(operating)),
            ..Shared::new(store.clone(), confab_faces::common::hash_secret(ADMIN_TOKEN))
        };
        tweak(&mut state);
        let state = AppState::from(state);
        // The delivery worker, fast unless asked otherwise: retries 50 ms
        // apart, 3 attempts.
        let worker = confab_server::startup::spawn_worker(&state, delivery);
        let router = app::build(state, &limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestServer {
            _worker: worker,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            store,
            faults,
            db,
            _task: task,
        }
    }

    /// A server with this world applied.
    pub async fn with_world(w: World) -> TestServer {
        let s = Self::start().await;
        s.apply(w).await;
        s
    }

    pub async fn apply(&self, w: World) {
        self.store
            .write(move |tx| world::apply(tx, &w))
            .await
            .expect("apply world");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request; `body` None = no body, Some(json) = JSON body.
    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::reply(req.send().await.expect("request")).await
    }

    pub async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut req = self.client.request(method, self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::reply(req.send().await.expect("request")).await
    }

    pub async fn reply(res: reqwest::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.call(method, path, &[("authorization", auth.as_str())], body).await
    }

    /// Active member ids of a chat, straight from the store.
    pub async fn members(&self, tenant: &str, chat: i64) -> Vec<i64> {
        let slug = tenant.to_string();
        self.store
            .read(move |tx| {
                let t = tx.tenant_by_slug(&slug)?.expect("tenant");
                Ok(tx
                    .active_members(t.id, confab_core::ChatId(chat))?
                    .iter()
                    .map(|m| m.user_id.0)
                    .collect())
            })
            .await
            .expect("members")
    }

    pub async fn chat(&self, tenant: &str, chat: i64) -> confab_core::Chat {
        let slug = tenant.to_string();
        self.store
            .read(move |tx| {
                let t = tx.tenant_by_slug(&slug)?.expect("tenant");
                Ok(tx.chat(t.id, confab_core::ChatId(chat))?.expect("chat"))
            })
            .await
            .expect("chat")
    }
}

impl TestServer {
    /// The value of one series of `GET /metrics` (exact name with labels),
    /// 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let r = self.call(reqwest::Method::GET, "/metrics", &[], None).await;
        r.text
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// One line per entity: `Tenant::new("acme").user(1, "Alice").chat(...)`.
pub struct Tenant(pub TenantSpec);

impl Tenant {
    pub fn new(slug: &str) -> Tenant {
        Tenant(TenantSpec {
            slug: slug.into(),
            name: None,
            users: vec![],
            apps: vec![],
            bots: vec![],
            lines: vec![],
            chats: vec![],
            credentials: vec![],
        })
    }
    pub fn user(mut self, id: i64, name: &str) -> Self {
        self.0.users.push(UserSpec {
            id: Some(id),
            name: name.into(),
            kind: None,
            handle: None,
            active: true,
        });
        self
    }
    pub fn inactive_user(mut self, id: i64, name: &str) -> Self {
        self.0.users.push(UserSpec {
            id: Some(id),
            name: name.into(),
            kind: None,
            handle: None,
            active: false,
        });
        self
    }
    pub fn app(mut self, id: i64, client_id: &str) -> Self {
        self.0.apps.push(AppSpec {
            id: Some(id),
            client_id: client_id.into(),
            name: None,
        });
        self
    }
    pub fn bot(mut self, id: i64, app: &str, name: &str) -> Self {
        self.0.bots.push(BotSpec {
            id: Some(id),
            app: app.into(),
            name: name.into(),
        });
        self
    }
    pub fn line(mut self, number: &str) -> Self {
        self.0.lines.push(LineSpec {
            number: number.into(),
            user_id: None,
            active: true,
        });
        self
    }
    /// An internal group chat.
    pub fn group(mut self, id: i64, owner: i64, members: &[i64]) -> Self {
        self.0.chats.push(chat(
            id,
            "group",
            None,
            Some(owner),
            members.iter().map(|m| MemberSpec::Id(*m)).collect(),
        ));
        self
    }
    pub fn dm(mut self, id: i64, a: i64, b: i64) -> Self {
        self.0
            .chats
            .push(chat(id, "dm", None, Some(a), vec![MemberSpec::Id(b)]));
        self
    }
    /// An open-line chat linked to a CRM entity.
    pub fn open_line(mut self, id: i64, owner: i64, members: &[i64], entity_type: &str, entity_id: i64) -> Self {
        let mut c = chat(
            id,
            "open_line",
            None,
            Some(owner),
            members.iter().map(|m| MemberSpec::Id(*m)).collect(),
        );
        c.crm.push(CrmSpec {
            entity_type: entity_type.into(),
            entity_id,
        });
        self.0.chats.push(c);
        self
    }
    /// An iMessage group on `line` with these handles besides the line.
    pub fn imessage_group(mut self, id: i64, line: &str, handles: &[&str]) -> Self {
        self.0.chats.push(chat(
            id,
            "group",
            Some(line),
            None,
            handles.iter().map(|h| MemberSpec::Handle(h.to_string())).collect(),
        ));
        self
    }
    pub fn imessage_chat(mut self, c: ChatSpec) -> Self {
        self.0.chats.push(c);
        self
    }
    pub fn credential(
        mut self,
        kind: &str,
        secret: &str,
        user: Option<i64>,
        app: Option<&str>,
        scopes: &[&str],
    ) -> Self {
        self.0.credentials.push(CredentialSpec {
            kind: kind.into(),
            secret: Some(secret.into()),
            user,
            app: app.map(Into::into),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
            expires_in: None,
            label: None,
        });
        self
    }
    pub fn credential_spec(mut self, c: CredentialSpec) -> Self {
        self.0.credentials.push(c);
        self
    }
    pub fn world(self) -> World {
        World { tenants: vec![self.0] }
    }
}

/// A credential of `kind` with `secret` that expired long ago.
pub fn expired_credential(kind: &str, secret: &str) -> CredentialSpec {
    CredentialSpec {
        kind: kind.into(),
        secret: Some(secret.into()),
        user: None,
        app: None,
        scopes: vec![],
        expires_at: Some(1000),
        expires_in: None,
        label: None,
    }
}

pub fn chat(id: i64, kind: &str, line: Option<&str>, owner: Option<i64>, members: Vec<MemberSpec>) -> ChatSpec {
    ChatSpec {
        id: Some(id),
        uuid: None,
        kind: Some(kind.into()),
        network: line.map(|_| "imessage".into()),
        title: Some(format!("chat {id}")),
        owner,
        line: line.map(Into::into),
        chat_key: None,
        members,
        crm: vec![],
    }
}

pub fn worlds(ts: Vec<Tenant>) -> World {
    World {
        tenants: ts.into_iter().map(|t| t.0).collect(),
    }
}

/// The `confab` binary as a child process, for tests that need the real
/// thing (TLS, signals, official SDKs).
pub mod process {
    use std::io::Read;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub fn confab() -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_confab"));
        for var in [
            "CONFAB_DATABASE_URL",
            "CONFAB_ADMIN_TOKEN",
            "CONFAB_LISTEN",
            "CONFAB_BITRIX_RATE_LIMIT",
        ] {
            c.env_remove(var);
        }
        c
    }

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    }

    /// On a PostgreSQL run, the database of the confab started in `dir`:
    /// made on first use and remembered in `dir/.pg-url`, so a restart in
    /// the same directory finds its data again. None on SQLite runs.
    pub fn run_database(dir: &Path) -> Option<String> {
        if confab_store::testing::backend() != "postgres" {
            return None;
        }
        let file = dir.join(".pg-url");
        if let Ok(url) = std::fs::read_to_string(&file) {
            return Some(url);
        }
        let url = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(confab_store::testing::create_database())
        })
        .join()
        .expect("create database");
        std::fs::write(&file, &url).expect("remember the database");
        Some(url)
    }

    /// Starts `confab serve --listen <free port> ARGS` in `dir` and waits
    /// until it accepts connections. Returns the child and `host:port`.
    /// Without `--database-url` in ARGS it uses the run's store: the SQLite
    /// default under `dir`, or on PostgreSQL runs a database of its own.
    pub fn start(dir: &Path, args: &[&str]) -> (Child, String) {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = confab();
        if !args.contains(&"--database-url") {
            if let Some(url) = run_database(dir) {
                cmd.env("CONFAB_DATABASE_URL", url);
            }
        }
        let mut child = cmd
            .current_dir(dir)
            .args(["serve", "--listen", &listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn confab");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&listen).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("confab exited early with {status}: {err}");
            }
            assert!(Instant::now() < deadline, "confab did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        (child, listen)
    }

    /// SIGTERM, wait, and the captured stdout.
    pub fn stop(mut child: Child) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = child.wait().expect("wait");
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        (status, out)
    }
}

/// A local webhook receiver: records every request and answers with the
/// scripted statuses in turn (the last one repeats).
pub mod receiver {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[derive(Debug, Clone)]
    pub struct Received {
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    impl Received {
        pub fn header(&self, name: &str) -> String {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        }
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
        }
    }

    #[derive(Clone)]
    pub struct Receiver {
        pub url: String,
        pub got: Arc<Mutex<Vec<Received>>>,
        script: Arc<Mutex<Vec<u16>>>,
    }

    impl Receiver {
        pub async fn start(script: &[u16]) -> Receiver {
            let got: Arc<Mutex<Vec<Received>>> = Arc::default();
            let script = Arc::new(Mutex::new(script.to_vec()));
            let (g, sc) = (got.clone(), script.clone());
            let app = axum::Router::new().route(
                "/{*path}",
                post(move |headers: HeaderMap, body: Bytes| {
                    let (g, sc) = (g.clone(), sc.clone());
                    async move {
                        g.lock().unwrap().push(Received {
                            headers,
                            body: body.to_vec(),
                        });
                        let mut s = sc.lock().unwrap();
                        let code = if s.len() > 1 {
                            s.remove(0)
                        } else {
                            s.first().copied().unwrap_or(200)
                        };
                        StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Receiver {
                url: format!("http://{addr}/hook"),
                got,
                script,
            }
        }

        pub fn set_script(&self, script: &[u16]) {
            *self.script.lock().unwrap() = script.to_vec();
        }

        pub fn count(&self) -> usize {
            self.got.lock().unwrap().len()
        }

        pub fn all(&self) -> Vec<Received> {
            self.got.lock().unwrap().clone()
        }

        /// Waits until `n` requests arrived (at most 10 s).
        pub async fn wait_for(&self, n: usize) -> Vec<Received> {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.count() < n {
                assert!(
                    Instant::now() < deadline,
                    "expected {n} webhook(s), got {}",
                    self.count()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.all()
        }
    }
}
