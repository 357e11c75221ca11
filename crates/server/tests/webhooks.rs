#![allow(clippy::unwrap_used)]
//! Delivery: retries after 5xx, none after 4xx, dead-letter after the
//! maximum, a stable event id across attempts, replay from the admin API,
//! Chert's format and signature, and resumption after a restart.

mod common;

use common::receiver::{Received, Receiver};
use common::*;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

const LINE: &str = "+14155550000";
const SECRET: &str = "chert-secret";

fn world() -> confab_faces::admin::world::World {
    Tenant::new("acme")
        .line(LINE)
        .imessage_group(
            1,
            LINE,
            &["+14155550101", "+14155550102", "+14155550103", "+14155550104"],
        )
        .user(1, "Owner")
        .group(2, 1, &[])
        .app(1, "app.hooks")
        .credential("linq_api_key", "linq-key", None, None, &[])
        .credential("chert_signing", SECRET, None, None, &[])
        .credential("bitrix_oauth", "bx-token", Some(1), Some("app.hooks"), &["im", "imbot"])
        .world()
}

/// The three faces that deliver webhooks, driven the same way.
#[derive(Debug, Clone, Copy)]
enum Face {
    Linq,
    Chert,
    Bitrix,
}

const FACES: [Face; 3] = [Face::Linq, Face::Chert, Face::Bitrix];

impl Face {
    /// Subscribes `url` to membership additions; returns what `trigger`
    /// needs (the Bitrix bot's id) and the signing secret.
    async fn subscribe(self, s: &TestServer, url: &str) -> (Option<i64>, String) {
        match self {
            Face::Linq => (None, linq_subscribe(s, url).await),
            Face::Chert => {
                let r = s
                    .call(
                        Method::POST,
                        "/api/v1/webhook-subscriptions",
                        &[("authorization", "Bearer chert-secret")],
                        Some(json!({"url": url, "events": ["participant.added"]})),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                (None, r.body["subscription"]["secret"].as_str().unwrap().to_string())
            }
            Face::Bitrix => {
                let r = s
                    .call(Method::POST, "/rest/imbot.register", &[], Some(json!({"auth": "bx-token", "CODE": format!("b{}", rand_suffix()), "EVENT_HANDLER": url, "PROPERTIES": {"NAME": "Hooked"}})))
                    .await;
                let bot = r.body["result"].as_i64().unwrap_or_else(|| panic!("{}", r.text));
                let token = s
                    .call(Method::POST, "/rest/app.info", &[], Some(json!({"auth": "bx-token"})))
                    .await;
                (
                    Some(bot),
                    token.body["result"]["APPLICATION_TOKEN"].as_str().unwrap().to_string(),
                )
            }
        }
    }

    /// One membership change the subscription hears about.
    async fn trigger(self, s: &TestServer, bot: Option<i64>) {
        match (self, bot) {
            (Face::Bitrix, Some(bot)) => {
                let r = s
                    .admin(
                        Method::POST,
                        "/admin/v1/tenants/acme/chats/2/members",
                        Some(json!({"member": bot})),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            }
            _ => add_member(s, "+14155550199").await,
        }
    }

    /// The id a receiver de-duplicates on.
    fn event_id(self, got: &Received) -> String {
        match self {
            Face::Linq => got.header("webhook-id"),
            Face::Chert => got.json()["event_id"].as_str().unwrap().to_string(),
            // Bitrix events carry no id: the handler id and the event time.
            Face::Bitrix => {
                let f = form(&got.body);
                format!("{}@{}", f["event_handler_id"], f["ts"])
            }
        }
    }

    /// Checks the signature the way the face's docs tell receivers to.
    fn verify(self, got: &Received, secret: &str) {
        match self {
            Face::Linq => {
                let ts = got.header("x-webhook-timestamp");
                let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                m.update(format!("{ts}.").as_bytes());
                m.update(&got.body);
                assert_eq!(
                    got.header("x-webhook-signature"),
                    hex::encode(m.finalize().into_bytes())
                );
            }
            Face::Chert => {
                let ts = got.header("x-webhook-timestamp");
                assert_eq!(
                    got.header("x-webhook-signature"),
                    format!("t={ts},v1={}", chert_sign(secret, &ts, &got.body))
                );
            }
            Face::Bitrix => assert_eq!(form(&got.body)["auth[application_token]"], secret),
        }
    }
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn linq_subscribe(s: &TestServer, url: &str) -> String {
    let r = s
        .call(
            Method::POST,
            "/api/partner/v3/webhook-subscriptions",
            &[("authorization", "Bearer linq-key")],
            Some(json!({"target_url": url, "subscribed_events": ["participant.added", "participant.removed"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["signing_secret"].as_str().unwrap().to_string()
}

/// A membership change through the admin API (synchronous): one event.
async fn add_member(s: &TestServer, handle: &str) {
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/chats/1/members",
            Some(json!({"member": handle})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn deliveries(s: &TestServer, status: &str) -> Vec<Value> {
    let r = s
        .admin(Method::GET, &format!("/admin/v1/deliveries?status={status}"), None)
        .await;
    r.body.as_array().unwrap().clone()
}

async fn wait_status(s: &TestServer, status: &str, n: usize) -> Vec<Value> {
    for _ in 0..250 {
        let d = deliveries(s, status).await;
        if d.len() >= n {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {n} delivery(ies) reached {status}");
}

#[tokio::test]
async fn each_face_retries_after_500_with_a_stable_id_and_valid_signature() {
    for (i, face) in FACES.iter().enumerate() {
        let s = TestServer::with_world(world()).await;
        let rx = Receiver::start(&[500, 200]).await;
        let (bot, secret) = face.subscribe(&s, &rx.url).await;
        face.trigger(&s, bot).await;
        let got = rx.wait_for(2).await;
        assert_eq!(
            face.event_id(&got[0]),
            face.event_id(&got[1]),
            "{face:?}: same event id across retries"
        );
        assert_eq!(got[0].body, got[1].body, "{face:?}: the same body on every attempt");
        face.verify(&got[0], &secret);
        face.verify(&got[1], &secret);
        let d = wait_status(&s, "delivered", 1).await;
        let log = d[0]["attempt_log"].as_array().unwrap();
        assert_eq!(log.len(), 2, "{face:?}");
        assert_eq!(
            (log[0]["status_code"].as_i64(), log[1]["status_code"].as_i64()),
            (Some(500), Some(200)),
            "{face:?}"
        );
        assert!(log[0]["latency_ms"].is_number());
        // The attempts are in /metrics too (process-wide, so at least this
        // face's and the ones before it).
        let n = i as f64 + 1.0;
        let delivered = s
            .metric("confab_webhook_attempt_seconds_count{outcome=\"delivered\"}")
            .await;
        let retried = s
            .metric("confab_webhook_attempt_seconds_count{outcome=\"retry\"}")
            .await;
        assert!(
            delivered >= n && retried >= n,
            "{face:?}: {delivered} delivered, {retried} retried"
        );
    }
}

#[tokio::test]
async fn each_face_does_not_retry_after_a_400() {
    for face in FACES {
        let s = TestServer::with_world(world()).await;
        let rx = Receiver::start(&[400]).await;
        let (bot, _) = face.subscribe(&s, &rx.url).await;
        face.trigger(&s, bot).await;
        let dead = wait_status(&s, "dead", 1).await;
        assert_eq!(dead[0]["attempts"], 1, "{face:?}");
        assert_eq!(dead[0]["last_status"], 400, "{face:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.count(), 1, "{face:?}: never retried");
    }
}

#[tokio::test]
async fn each_face_dead_letters_after_the_maximum_then_replays() {
    for face in FACES {
        let s = TestServer::with_world(world()).await;
        let rx = Receiver::start(&[503]).await;
        let (bot, _) = face.subscribe(&s, &rx.url).await;
        face.trigger(&s, bot).await;
        let dead = wait_status(&s, "dead", 1).await;
        assert_eq!(dead[0]["attempts"], 3, "{face:?}: fast_delivery allows 3 attempts");
        assert_eq!(rx.count(), 3, "{face:?}");
        rx.set_script(&[200]);
        let id = dead[0]["id"].as_i64().unwrap();
        let r = s
            .admin(Method::POST, &format!("/admin/v1/deliveries/{id}/replay"), None)
            .await;
        assert_eq!(r.body, json!({"replayed": id}), "{}", r.text);
        wait_status(&s, "delivered", 1).await;
        assert_eq!(rx.count(), 4, "{face:?}");
    }
}

#[tokio::test]
async fn replay_and_listing_errors() {
    let s = TestServer::with_world(world()).await;
    let r = s.admin(Method::POST, "/admin/v1/deliveries/999999/replay", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.admin(Method::GET, "/admin/v1/deliveries?status=bogus", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn nothing_is_announced_for_a_refused_change() {
    let s = TestServer::with_world(world()).await;
    let rx = Receiver::start(&[200]).await;
    linq_subscribe(&s, &rx.url).await;
    // Removing someone who is not a member fails: no event, no delivery.
    let r = s
        .admin(Method::DELETE, "/admin/v1/tenants/acme/chats/1/members/999", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 0);
    assert!(deliveries(&s, "pending").await.is_empty());
}

fn chert_sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(ts.as_bytes());
    m.update(b".");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

#[tokio::test]
async fn chert_subscriptions_deliver_signed_membership_events() {
    let s = TestServer::with_world(world()).await;
    let rx = Receiver::start(&[200]).await;
    let bearer = format!("Bearer {SECRET}");
    let h = [("authorization", bearer.as_str())];
    let r = s
        .call(
            Method::POST,
            "/api/v1/webhook-subscriptions",
            &h,
            Some(json!({"url": rx.url, "events": ["participant.removed"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let sub = r.body["subscription"].clone();
    let secret = sub["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    let list = s.call(Method::GET, "/api/v1/webhook-subscriptions", &h, None).await;
    assert!(!list.text.contains(&secret), "secret shown once");
    let r = s
        .call(
            Method::POST,
            "/api/v1/webhook-subscriptions",
            &h,
            Some(json!({"url": "http://example.com/x"})),
        )
        .await;
    assert_eq!(r.body["error"]["code"], 1001, "{}", r.text);

    let chat = s.chat("acme", 1).await.chert_id();
    let r = s
        .call(
            Method::DELETE,
            &format!("/api/v1/chats/{chat}/participants/%2B14155550104"),
            &h,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = rx.wait_for(1).await;
    let w = got[0].json();
    assert_eq!(w["event_type"], "participant.removed");
    assert_eq!(w["api_version"], "v1");
    assert_eq!(w["partner_id"], "acme");
    assert_eq!(w["data"]["chat"]["id"], chat);
    assert_eq!(w["data"]["participant"]["handle"], "+14155550104");
    assert_eq!(got[0].header("x-webhook-subscription-id"), sub["id"].as_str().unwrap());
    let ts = got[0].header("x-webhook-timestamp");
    assert_eq!(
        got[0].header("x-webhook-signature"),
        format!("t={ts},v1={}", chert_sign(&secret, &ts, &got[0].body))
    );

    let id = sub["id"].as_str().unwrap();
    let r = s
        .call(
            Method::PATCH,
            &format!("/api/v1/webhook-subscriptions/{id}"),
            &h,
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(r.body["subscription"]["is_active"], false, "{}", r.text);
    let r = s
        .call(Method::DELETE, &format!("/api/v1/webhook-subscriptions/{id}"), &h, None)
        .await;
    assert_eq!(r.body, json!({"deleted": true}));
}

#[test]
fn deliveries_of_every_face_survive_a_restart_mid_backoff() {
    use common::process::{start, stop};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let receivers: Vec<Receiver> = (0..3).map(|_| rt.block_on(Receiver::start(&[500, 200]))).collect();
    let (dir, world_file) = world_in_a_dir(&format!(
        r#"[[tenants]]
slug = "acme"
users = [{{ id = 1, name = "Owner" }}]
apps = [{{ id = 1, client_id = "app.hooks" }}]
lines = [{{ number = "{LINE}" }}]
chats = [
  {{ id = 1, line = "{LINE}", members = ["+14155550101", "+14155550102", "+14155550103"] }},
  {{ id = 2, owner = 1, members = [] }},
]
credentials = [
  {{ kind = "linq_api_key", secret = "linq-key" }},
  {{ kind = "chert_signing", secret = "{SECRET}" }},
  {{ kind = "bitrix_oauth", secret = "bx-token", user = 1, app = "app.hooks", scopes = ["im", "imbot"] }},
]
"#
    ));
    // Retries 6 s apart (±20%): long enough to stop the server in between,
    // even on a loaded machine.
    let args = [
        "--world",
        world_file.to_str().unwrap(),
        "--admin-token",
        "t",
        "--webhook-retry-base-ms",
        "6000",
    ];
    let (child, listen) = start(dir.path(), &args);
    let base = format!("http://{listen}");
    let post = |path: &str, auth: (&str, &str), body: Value| {
        let req = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .header(auth.0, auth.1)
            .json(&body);
        rt.block_on(async {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let (st, _) = post(
        "/api/partner/v3/webhook-subscriptions",
        ("authorization", "Bearer linq-key"),
        json!({"target_url": receivers[0].url, "subscribed_events": ["participant.added"]}),
    );
    assert_eq!(st, StatusCode::CREATED);
    let chert_auth = format!("Bearer {SECRET}");
    let (st, _) = post(
        "/api/v1/webhook-subscriptions",
        ("authorization", &chert_auth),
        json!({"url": receivers[1].url, "events": ["participant.added"]}),
    );
    assert_eq!(st, StatusCode::OK);
    let (_, bot) = post(
        "/rest/imbot.register",
        ("x-none", "-"),
        json!({"auth": "bx-token", "CODE": "rb", "EVENT_HANDLER": receivers[2].url, "PROPERTIES": {"NAME": "R"}}),
    );
    let bot = bot["result"].as_i64().unwrap();
    let (st, _) = post(
        "/admin/v1/tenants/acme/chats/1/members",
        ("authorization", "Bearer t"),
        json!({"member": "+14155550199"}),
    );
    assert_eq!(st, StatusCode::OK);
    let (st, _) = post(
        "/admin/v1/tenants/acme/chats/2/members",
        ("authorization", "Bearer t"),
        json!({"member": bot}),
    );
    assert_eq!(st, StatusCode::OK);
    for rx in &receivers {
        rt.block_on(rx.wait_for(1)); // each first attempt got a 500
    }
    // Stop only once the three failed attempts are recorded: an attempt in
    // flight when the server stops stays leased until its lease runs out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let recorded = rt.block_on(async {
            let r = reqwest::Client::new()
                .get(format!("{base}/admin/v1/deliveries?status=pending"))
                .bearer_auth("t")
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            v.as_array()
                .map(|a| a.iter().filter(|d| d["attempts"].as_i64() == Some(1)).count())
                .unwrap_or(0)
        });
        if recorded >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "first attempts not recorded: {recorded}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, _) = stop(child);
    assert!(status.success());
    let counts: Vec<usize> = receivers.iter().map(|r| r.count()).collect();
    let bodies: Vec<String> = receivers
        .iter()
        .flat_map(|r| r.all())
        .map(|g| String::from_utf8_lossy(&g.body).to_string())
        .collect();
    assert_eq!(
        counts,
        vec![1, 1, 1],
        "nothing more while the server is down: {bodies:?}"
    );
    let (child, _) = start(dir.path(), &args);
    for (face, rx) in FACES.iter().zip(&receivers) {
        let got = rt.block_on(rx.wait_for(2));
        assert_eq!(face.event_id(&got[0]), face.event_id(&got[1]), "{face:?}");
    }
    stop(child);
}

/// Invariant: a graceful stop (SIGTERM) finishes the webhook attempt in
/// flight and records it, instead of leaving the delivery leased (to be
/// sent again only when its 30 s lease runs out).
#[test]
fn a_graceful_stop_finishes_the_attempt_in_flight() {
    use common::process::{start, stop};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // A receiver that answers 200 after a second and a half.
    let arrived = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = rt.block_on(async {
        let a = arrived.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let a = a.clone();
                async move {
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url
    });
    let (dir, world_file) = world_in_a_dir(&format!(
        r#"[[tenants]]
slug = "acme"
lines = [{{ number = "{LINE}" }}]
chats = [{{ id = 1, line = "{LINE}", members = ["+14155550101", "+14155550102", "+14155550103"] }}]
credentials = [{{ kind = "linq_api_key", secret = "linq-key" }}]
"#
    ));
    let args = ["--world", world_file.to_str().unwrap(), "--admin-token", "t"];
    let (child, listen) = start(dir.path(), &args);
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    rt.block_on(async {
        let r = client
            .post(format!("{base}/api/partner/v3/webhook-subscriptions"))
            .bearer_auth("linq-key")
            .json(&json!({"target_url": url, "subscribed_events": ["participant.added"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = client
            .post(format!("{base}/admin/v1/tenants/acme/chats/1/members"))
            .bearer_auth("t")
            .json(&json!({"member": "+14155550199"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while arrived.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "the attempt never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // The attempt is in flight: stop now.
    let (status, _) = stop(child);
    assert!(status.success());
    let (child, listen) = start(dir.path(), &args);
    let deliveries: Value = rt.block_on(async {
        client
            .get(format!("http://{listen}/admin/v1/deliveries"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    stop(child);
    let d = &deliveries.as_array().unwrap()[0];
    assert_eq!(d["status"], "delivered", "recorded before the stop: {deliveries}");
    assert_eq!(d["attempts"], 1, "{deliveries}");
    assert_eq!(arrived.load(std::sync::atomic::Ordering::SeqCst), 1, "sent once");
}

/// A temporary directory holding `world.toml` with this text.
fn world_in_a_dir(toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("world.toml");
    std::fs::write(&file, toml).unwrap();
    (dir, file)
}

/// Decodes a form body with the face's own decoder (PHP-style keys stay flat).
fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    confab_faces::bitrix::params::form_urlencoded(&String::from_utf8_lossy(body))
        .into_iter()
        .collect()
}

#[tokio::test]
async fn bitrix_bot_handlers_and_event_bind() {
    let s = TestServer::with_world(
        Tenant::new("portal")
            .user(1, "Alice")
            .user(2, "Bob")
            .app(1, "app.bots")
            .credential("bitrix_oauth", "tok", Some(1), Some("app.bots"), &["im", "imbot"])
            .credential("bitrix_webhook", "hook", Some(1), None, &["im", "imbot"])
            .world(),
    )
    .await;
    let rx = Receiver::start(&[200]).await;
    let call = |m: &str, mut p: Value| {
        p["auth"] = json!("tok");
        let path = format!("/rest/{m}");
        let s = &s;
        async move { s.call(Method::POST, &path, &[], Some(p)).await }
    };
    let r = call(
        "imbot.register",
        json!({"CODE": "hb", "EVENT_HANDLER": rx.url, "PROPERTIES": {"NAME": "Hook bot"}}),
    )
    .await;
    let bot = r.body["result"].as_i64().unwrap();
    let token = call("app.info", json!({})).await.body["result"]["APPLICATION_TOKEN"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call("im.chat.add", json!({"USERS": [2, bot], "TITLE": "With bot"})).await;
    let chat = r.body["result"].as_i64().unwrap();
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].header("content-type"), "application/x-www-form-urlencoded");
    let f = form(&got[0].body);
    assert_eq!(f["event"], "ONIMBOTJOINCHAT");
    assert_eq!(f[&format!("data[BOT][{bot}][BOT_ID]")], bot.to_string());
    assert_eq!(f[&format!("data[BOT][{bot}][BOT_CODE]")], "hb");
    assert_eq!(f["data[PARAMS][CHAT_ID]"], chat.to_string());
    assert_eq!(f["data[PARAMS][DIALOG_ID]"], format!("chat{chat}"));
    assert_eq!(f["data[PARAMS][CHAT_TYPE]"], "C");
    assert_eq!(f["data[PARAMS][USER_ID]"], "1");
    assert_eq!(
        f["auth[application_token]"], token,
        "receivers authenticate by application_token"
    );
    assert!(f.contains_key("ts") && f.contains_key("event_handler_id"));

    // App handlers through event.bind (OAuth only).
    let app_rx = Receiver::start(&[200]).await;
    let r = call("event.bind", json!({"event": "onImBotJoinChat", "handler": app_rx.url})).await;
    assert_eq!(r.body["result"], true, "{}", r.text);
    let r = call("event.bind", json!({"event": "ONNOTHING", "handler": app_rx.url})).await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"].as_str()),
        (400, Some("ERROR_EVENT_NOT_FOUND"))
    );
    let r = s
        .call(
            Method::POST,
            "/rest/1/hook/event.bind",
            &[],
            Some(json!({"event": "ONIMBOTJOINCHAT", "handler": app_rx.url})),
        )
        .await;
    assert_eq!(r.body["error"], "WRONG_AUTH_TYPE", "{}", r.text);
    let r = call("event.get", json!({})).await;
    assert_eq!(r.body["result"][0]["event"], "ONIMBOTJOINCHAT", "{}", r.text);
    call("im.chat.add", json!({"USERS": [bot], "TITLE": "Second"})).await;
    let got = app_rx.wait_for(1).await;
    assert_eq!(form(&got[0].body)["event"], "ONIMBOTJOINCHAT");
    let r = call(
        "event.unbind",
        json!({"event": "ONIMBOTJOINCHAT", "handler": app_rx.url}),
    )
    .await;
    assert_eq!(r.body["result"], json!({"count": 1}));

    // Unregistering announces ONIMBOTDELETE.
    call("imbot.unregister", json!({"BOT_ID": bot})).await;
    let got = rx.wait_for(3).await;
    let last = form(&got[2].body);
    assert_eq!(last["event"], "ONIMBOTDELETE");
    assert_eq!(last["data[BOT_ID]"], bot.to_string());
    assert_eq!(last["data[BOT_CODE]"], "hb");
}
