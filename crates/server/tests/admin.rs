#![allow(clippy::unwrap_used)]
//! The admin API over HTTP: auth, creation with secrets shown once, tenant
//! isolation, bad input in the admin envelope, body limit, health.

mod common;

use common::*;
use confab_store::StoreExt;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn assert_error(r: &Reply, status: StatusCode, code: &str, message_part: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    let msg = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(message_part), "message {msg:?} lacks {message_part:?}");
}

#[tokio::test]
async fn admin_token_is_required_and_checked() {
    let s = TestServer::start().await;
    let r = s.call(Method::GET, "/admin/v1/tenants", &[], None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", "missing admin token");
    let r = s
        .call(
            Method::GET,
            "/admin/v1/tenants",
            &[("authorization", "Bearer wrong")],
            None,
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", "invalid admin token");
    let r = s
        .call(
            Method::GET,
            "/admin/v1/tenants",
            &[("authorization", "Basic abc")],
            None,
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
    let r = s.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn build_a_world_over_http() {
    let s = TestServer::start().await;
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .admin(Method::POST, "/admin/v1/tenants", Some(json!({"slug": "acme"})))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", "tenant acme");

    for (path, body) in [
        ("users", json!({"id": 1, "name": "Alice"})),
        ("users", json!({"name": "Bob"})),
        ("apps", json!({"client_id": "app.one"})),
        ("bots", json!({"id": 100, "app": "app.one", "name": "Bot"})),
        ("lines", json!({"number": "+15550000000"})),
    ] {
        let r = s
            .admin(Method::POST, &format!("/admin/v1/tenants/acme/{path}"), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text);
    }
    let users = s.admin(Method::GET, "/admin/v1/tenants/acme/users", None).await;
    let ids: Vec<i64> = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&1) && ids.contains(&2) && ids.contains(&100), "{ids:?}");

    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/chats",
            Some(json!({"id": 7, "title": "Room", "owner": 1, "members": [2, 100]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 3);
    assert_eq!(r.body["chat"]["owner_id"], 1);

    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/chats",
            Some(json!({"id": 8, "line": "+15550000000", "members": ["+15551111111", "+15552222222"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["chat"]["network"], "imessage");
    assert!(r.body["chert_id"].as_str().unwrap().starts_with("ch_"));

    let r = s
        .admin(Method::DELETE, "/admin/v1/tenants/acme/chats/7/members/2", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .admin(Method::DELETE, "/admin/v1/tenants/acme/chats/7/members/2", None)
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rule_violation",
        "no longer a member",
    );
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/chats/7/members",
            Some(json!({"member": 2})),
        )
        .await;
    assert_eq!(r.body["added"], true, "{}", r.text);
    let r = s.admin(Method::GET, "/admin/v1/tenants/acme/chats/7", None).await;
    assert_eq!(
        r.body["history"].as_array().unwrap().len(),
        4,
        "history keeps the left row: {}",
        r.text
    );
    let kinds: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["chat_created", "joined", "joined", "joined", "removed", "joined"]
    );

    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/crm-links",
            Some(json!({"entity_type": "LEAD", "entity_id": 5, "chat_id": 7})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s.admin(Method::GET, "/admin/v1/tenants/acme/crm-links", None).await;
    assert_eq!(r.body, json!([{"entity_type": "lead", "entity_id": 5, "chat_id": 7}]));
}

#[tokio::test]
async fn secrets_are_returned_once_and_hashed_at_rest() {
    let s = TestServer::with_world(Tenant::new("acme").user(1, "Alice").app(1, "app.one").world()).await;
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/credentials",
            Some(json!({"kind": "vibecode_personal", "user": 1, "scopes": ["im"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("vibe_api_"), "{secret}");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/credentials",
            Some(json!({"kind": "chert_signing"})),
        )
        .await;
    let signing = r.body["secret"].as_str().unwrap().to_string();
    assert_eq!(signing.len(), 64);

    let list = s.admin(Method::GET, "/admin/v1/tenants/acme/credentials", None).await;
    assert!(
        !list.text.contains(&secret) && !list.text.contains(&signing),
        "secrets leaked: {}",
        list.text
    );
    let dump = s.admin(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert!(!dump.text.contains(&secret) && !dump.text.contains(&signing));

    // Keys confab only compares are stored as a hash; the signing secret in clear.
    let found = s
        .store
        .read(move |tx| {
            tx.credential_by_hash(
                confab_core::CredentialKind::VibecodePersonal,
                &confab_faces::common::hash_secret(&secret),
            )
        })
        .await
        .unwrap()
        .expect("found by hash");
    assert_eq!(found.secret, None);

    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/credentials",
            Some(json!({"kind": "bitrix_webhook"})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "needs a user");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/credentials",
            Some(json!({"kind": "nope"})),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "credential kind must be one of",
    );
}

#[tokio::test]
async fn other_tenants_ids_are_not_found() {
    let s = TestServer::with_world(worlds(vec![
        Tenant::new("a").user(1, "A1").group(5, 1, &[]),
        Tenant::new("b").user(1, "B1"),
    ]))
    .await;
    let r = s.admin(Method::GET, "/admin/v1/tenants/b/chats/5", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", "chat not found");
    let r = s.admin(Method::GET, "/admin/v1/tenants/zzz/users", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", "tenant \"zzz\" not found");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/b/chats/5/members",
            Some(json!({"member": 1})),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", "chat not found");
}

#[tokio::test]
async fn bad_input_gets_the_admin_envelope_and_changes_nothing() {
    let s = TestServer::with_world(Tenant::new("acme").user(1, "Alice").world()).await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let r = s
        .raw(Method::POST, "/admin/v1/tenants/acme/users", &h, b"{not json".to_vec())
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", "invalid JSON body");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/users",
            Some(json!({"id": "one", "name": "X"})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", "invalid type");
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/users",
            Some(json!({"name": "X", "colour": "red"})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", "unknown field");
    let r = s.admin(Method::GET, "/admin/v1/tenants/acme/chats/abc", None).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "chat id must be a positive integer",
    );
    // A chat whose member is unknown is refused as a whole: no chat row left.
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/chats",
            Some(json!({"id": 3, "owner": 1, "members": [99]})),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", "user not found");
    let r = s.admin(Method::GET, "/admin/v1/tenants/acme/chats", None).await;
    assert_eq!(r.body, json!([]));
    // A world that fails half-way applies nothing.
    let bad = json!({"tenants": [{"slug": "new", "users": [{"id": 1, "name": "N"}], "chats": [{"id": 1, "owner": 1, "members": [42]}]}]});
    let r = s.admin(Method::POST, "/admin/v1/world", Some(bad)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = s.admin(Method::GET, "/admin/v1/tenants/new", None).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "tenant of the failed world must not exist"
    );
}

#[tokio::test]
async fn oversized_body_is_413_json() {
    let s = TestServer::start().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let big = vec![b' '; 1024 * 1024 + 10];
    let r = s
        .raw(
            Method::POST,
            "/admin/v1/tenants",
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            big,
        )
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "size limit");
}

#[tokio::test]
async fn world_documents_apply_idempotently_over_http() {
    let s = TestServer::start().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let toml = confab_server::demo::DEMO_WORLD.as_bytes().to_vec();
    let h = [("authorization", auth.as_str()), ("content-type", "application/toml")];
    let first = s.raw(Method::POST, "/admin/v1/world", &h, toml.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert!(first.body["created"].as_u64().unwrap() > 10);
    let second = s.raw(Method::POST, "/admin/v1/world", &h, toml).await;
    assert_eq!(second.body["created"], 0, "{}", second.text);
    assert_eq!(second.body["unchanged"], first.body["created"]);
    // Erin is inactive but still in open-line chat 5.
    assert!(s.members("demo", 5).await.contains(&5));
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let s = TestServer::start().await;
    let r = s.call(Method::GET, "/healthz", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!(
        (r.status, r.body["store"].as_str()),
        (StatusCode::OK, Some(confab_store::testing::backend()))
    );
    assert!(r.headers.get("x-request-id").is_some(), "request id is propagated");
    s.faults.set_failing(true);
    let r = s.call(Method::GET, "/readyz", &[], None).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "not_ready", "unreachable");
    let r = s.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "unreachable");
    s.faults.set_failing(false);
    let r = s.call(Method::GET, "/openapi/admin.json", &[], None).await;
    assert_eq!(r.body["openapi"], "3.1.0");
    assert!(r.body["paths"]["/admin/v1/tenants/{slug}/credentials"]["post"].is_object());
    let r = s.call(Method::GET, "/nowhere", &[], None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", "no route for GET /nowhere");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_json() {
    use axum::routing::get;
    let router = axum::Router::new().route(
        "/boom",
        get(|| async {
            if true {
                panic!("boom");
            }
            "unreachable"
        }),
    );
    let app = confab_server::app::with_layers(router, &confab_server::app::HttpLimits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let res = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal");
}

#[tokio::test]
async fn metrics_count_requests_and_show_queues() {
    let s = TestServer::with_world(
        Tenant::new("acme")
            .user(1, "A")
            .user(2, "B")
            .group(10, 1, &[2])
            .credential("vibecode_personal", "vibe_api_b", Some(2), None, &["im"])
            .world(),
    )
    .await;
    let before = s.call(Method::GET, "/metrics", &[], None).await;
    assert!(!before.text.contains("face=\"vibecode\""), "{}", before.text);
    let writes = "confab_store_transaction_seconds_count{mode=\"write\"}";
    let reads = "confab_store_transaction_seconds_count{mode=\"read\"}";
    let groups = "confab_store_group_commit_commands_count";
    let trips = "confab_store_pg_round_trips_count";
    let waits = "confab_store_pg_pool_wait_seconds_count";
    let (writes_before, reads_before, groups_before, trips_before, waits_before) = (
        s.metric(writes).await,
        s.metric(reads).await,
        s.metric(groups).await,
        s.metric(trips).await,
        s.metric(waits).await,
    );
    s.call(Method::POST, "/v1/chats/10/leave", &[("x-api-key", "vibe_api_b")], None)
        .await;
    s.call(Method::POST, "/v1/chats/10/leave", &[("x-api-key", "vibe_api_b")], None)
        .await;
    s.call(Method::GET, "/healthz", &[], None).await;
    let r = s.call(Method::GET, "/metrics", &[], None).await;
    assert_eq!(r.headers["content-type"], "text/plain; version=0.0.4");
    let t = &r.text;
    assert!(t.contains("confab_http_requests_total{face=\"vibecode\",method=\"POST\",route=\"/v1/chats/{chatId}/leave\",status=\"200\"} 1"), "{t}");
    assert!(t.contains("confab_http_requests_total{face=\"vibecode\",method=\"POST\",route=\"/v1/chats/{chatId}/leave\",status=\"422\"} 1"), "{t}");
    assert!(
        t.contains("confab_http_request_duration_seconds_count{face=\"vibecode\"} 2"),
        "{t}"
    );
    assert!(t.contains("confab_outbox_pending 0"), "{t}");
    assert!(t.contains("confab_operations_queued 0"), "{t}");
    // Two leaves: two write transactions at least (one group commit each on
    // SQLite); the credential lookup and the scrapes read.
    assert!(s.metric(writes).await >= writes_before + 2.0, "{t}");
    assert!(s.metric(reads).await > reads_before, "{t}");
    // Each store's own series moves; the other's stays put.
    let (group_moves, trip_moves) = match s.store.backend() {
        "sqlite" => (2.0, 0.0),
        _ => (0.0, 2.0),
    };
    assert!(s.metric(groups).await >= groups_before + group_moves, "{t}");
    assert!(s.metric(trips).await >= trips_before + trip_moves, "{t}");
    // Every PostgreSQL job waits for a connection, if only for a moment.
    assert!(s.metric(waits).await >= waits_before + trip_moves, "{t}");
    if trip_moves == 0.0 {
        assert_eq!(s.metric(trips).await, trips_before, "{t}");
        assert_eq!(s.metric(waits).await, waits_before, "{t}");
    }
}
