#![allow(clippy::unwrap_used)]
//! The node's credential cache (`confab_faces::credentials`) must not
//! change what a client sees: a key expires on time even while it is
//! cached, and a credential issued through the admin API works at once.

mod common;

use common::*;
use confab_faces::chert::auth::sign;
use reqwest::Method;
use serde_json::json;

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

/// Invariant: a cached credential is refused from its expiry on, although
/// the cache would still hold it (its lifetime is longer than the wait).
#[tokio::test]
async fn a_cached_key_still_expires_on_time() {
    let s = TestServer::with_world(Tenant::new("acme").line("+14155550000").world()).await;
    let expires_at = unix_now() + 1;
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/credentials",
            Some(json!({"kind": "linq_api_key", "secret": "short-lived-key", "expires_at": expires_at})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Looked up and cached now.
    let r = numbers(&s).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Past the expiry second, well inside the cache's two seconds.
    let wait = (expires_at * 1000 - unix_now_ms() + 50).max(0) as u64;
    assert!(wait <= 1_100, "the expiry is at most a second away");
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let r = numbers(&s).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["error"]["code"], 2004, "{}", r.body);
}

/// Invariant: a Chert signing secret added to a tenant whose secrets this
/// node has just looked up (and cached) signs requests at once.
#[tokio::test]
async fn a_signing_secret_issued_through_admin_works_at_once() {
    let s = TestServer::with_world(
        Tenant::new("acme")
            .line("+14155550000")
            .credential("chert_signing", "first-secret", None, None, &[])
            .world(),
    )
    .await;
    assert_eq!(signed_get(&s, "first-secret").await.status, 200);
    let r = signed_get(&s, "second-secret").await;
    assert_eq!(r.status, 401, "not issued yet: {}", r.body);
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/credentials",
            Some(json!({"kind": "chert_signing", "secret": "second-secret"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = signed_get(&s, "second-secret").await;
    assert_eq!(r.status, 200, "issued: {}", r.body);
    assert_eq!(signed_get(&s, "first-secret").await.status, 200);
}

async fn numbers(s: &TestServer) -> Reply {
    s.call(
        Method::GET,
        "/api/partner/v3/phone_numbers",
        &[("authorization", "Bearer short-lived-key")],
        None,
    )
    .await
}

async fn signed_get(s: &TestServer, secret: &str) -> Reply {
    let ts = unix_now();
    let sig = format!("v1,{ts},{}", sign(secret, ts, b""));
    s.call(
        Method::GET,
        "/api/v1/phone-numbers",
        &[("x-chert-tenant", "acme"), ("x-chert-signature", sig.as_str())],
        None,
    )
    .await
}
