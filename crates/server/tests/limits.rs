#![allow(clippy::unwrap_used)]
//! Hostile and oversized input is answered cleanly: slow clients are cut
//! off, oversized headers get 431, JSON nested a hundred thousand deep gets
//! each face's own 4xx envelope, and a 10,000-member chat pages completely.

mod common;

use common::process::{start, stop};
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Invariant: a client that never finishes its request head holds its
/// connection only for `--header-read-timeout`, and the server keeps
/// answering others meanwhile.
#[test]
fn a_slow_client_is_cut_off_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (child, listen) = start(dir.path(), &["--header-read-timeout", "1"]);
    let mut slow = std::net::TcpStream::connect(&listen).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    // Meanwhile another client is served.
    let mut other = std::net::TcpStream::connect(&listen).unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The slow one is answered 408 or closed, within a few seconds.
    let mut got = Vec::new();
    let read = slow.read_to_end(&mut got);
    let waited = started.elapsed();
    assert!(read.is_ok(), "the connection was not closed: {read:?}");
    assert!(waited < Duration::from_secs(5), "closed only after {waited:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    stop(child);
}

/// The same over HTTPS (`--tls-self-signed`, axum-server): the client is
/// `openssl s_client`, which completes the handshake, sends half a request
/// head and waits; the server must close the connection.
#[test]
fn a_slow_client_is_cut_off_over_https_too() {
    let dir = tempfile::tempdir().unwrap();
    let (child, listen) = start(dir.path(), &["--tls-self-signed", "--header-read-timeout", "1"]);
    let client = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &listen])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut client = client.unwrap_or_else(|e| {
        panic!("openssl is needed for this test ({e}); scripts/test installs it, or: apt-get install openssl")
    });
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    stdin.flush().unwrap();
    let started = Instant::now();
    let closed = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(8) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = client.kill();
    drop(stdin);
    stop(child);
    assert!(closed.is_some(), "the server kept the connection open for 8 s");
}

/// Invariant: a request head too large for the server gets 431, not a
/// hang or a 5xx, and the server goes on.
#[tokio::test]
async fn oversized_headers_get_431() {
    let s = TestServer::start().await;
    let c = reqwest::Client::new();
    let mut req = c.get(s.url("/healthz"));
    for i in 0..200 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 431, "200 headers");
    let r = c
        .get(s.url("/healthz"))
        .header("x-big", "a".repeat(1024 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 431, "one 1 MiB header"),
        // hyper may close the connection before the client finished writing.
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// Invariant: JSON nested 100,000 deep is refused with the face's own
/// validation error (serde_json stops at 128 levels), never a 5xx.
#[tokio::test]
async fn deeply_nested_json_gets_each_faces_own_error() {
    let s = TestServer::with_world(
        Tenant::new("acme")
            .user(1, "A")
            .user(2, "B")
            .line("+14155550000")
            .group(10, 1, &[2])
            .credential("vibecode_personal", "vibe_api_a", Some(1), None, &["im"])
            .credential("bitrix_webhook", "hook", Some(1), None, &["im"])
            .credential("chert_signing", "chert-secret", None, None, &[])
            .credential("linq_api_key", "linq-key", None, None, &[])
            .world(),
    )
    .await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = |s: &TestServer, method: Method, path: &str, auth: (&str, &str)| {
        let req = reqwest::Client::new()
            .request(method, s.url(path))
            .header(auth.0, auth.1)
            .header("content-type", "application/json")
            .body(deep.clone());
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, b) = body(&s, Method::POST, "/v1/chats/10/members", ("x-api-key", "vibe_api_a")).await;
    assert_eq!(
        (st, &b["error"]["code"]),
        (400, &json!("VALIDATION_ERROR")),
        "vibecode {b}"
    );
    let (st, b) = body(
        &s,
        Method::POST,
        "/api/partner/v3/chats",
        ("authorization", "Bearer linq-key"),
    )
    .await;
    assert_eq!((st, &b["error"]["code"]), (400, &json!(1003)), "linq {b}");
    let (st, b) = body(
        &s,
        Method::POST,
        "/api/v1/chats",
        ("authorization", "Bearer chert-secret"),
    )
    .await;
    assert_eq!((st, &b["error"]["code"]), (400, &json!(1001)), "chert {b}");
    let (st, b) = body(&s, Method::POST, "/rest/1/hook/im.chat.add", ("x-none", "-")).await;
    assert!((400..500).contains(&st), "bitrix {st} {b}");
    assert!(
        b["error"].is_string() && b["error_description"].is_string(),
        "bitrix {b}"
    );
    let (st, b) = body(
        &s,
        Method::POST,
        "/admin/v1/world",
        ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
    )
    .await;
    assert!((400..500).contains(&st), "admin {st} {b}");
    assert!(b["error"]["code"].is_string(), "admin {b}");
}

/// Invariant: a 10,000-member chat pages completely and exactly once
/// through Vibecode's `limit`/`offset` (at most 5,000 per page).
#[tokio::test]
async fn a_ten_thousand_member_chat_pages_completely() {
    let mut t = Tenant::new("big").credential("vibecode_personal", "vibe_api_owner", Some(1), None, &["im"]);
    for u in 1..=10_000 {
        t = t.user(u, &format!("u{u}"));
    }
    let members: Vec<i64> = (2..=10_000).collect();
    let s = TestServer::with_world(t.group(1, 1, &members).world()).await;
    let key = [("x-api-key", "vibe_api_owner")];
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let r = s
            .call(
                Method::GET,
                &format!("/v1/chats/1/members?limit=1500&offset={offset}"),
                &key,
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["meta"]["total"], 10_000);
        let page = r.body["data"].as_array().unwrap();
        for m in page {
            assert!(seen.insert(m["userId"].as_i64().unwrap()), "listed twice: {m}");
        }
        offset += page.len();
        if r.body["meta"]["hasMore"] == false {
            break;
        }
        assert!(!page.is_empty(), "hasMore with an empty page");
    }
    assert_eq!(seen.len(), 10_000);
    let r = s.call(Method::GET, "/v1/chats/1/members?limit=5001", &key, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "VALIDATION_ERROR");
}

/// Invariant: text with a NUL character (which PostgreSQL cannot store) is
/// refused as the client's mistake, in the face's own format, on both
/// stores, and nothing is written (found by schemathesis on PostgreSQL: a
/// user name with `\u0000` was a 500).
#[tokio::test]
async fn text_with_a_nul_character_is_a_client_error() {
    let s = TestServer::with_world(
        Tenant::new("acme")
            .user(1, "A")
            .user(2, "B")
            .group(10, 1, &[2])
            .credential("vibecode_personal", "vibe_api_a", Some(1), None, &["im"])
            .world(),
    )
    .await;
    let r = s
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/users",
            Some(json!({"name": "a\u{0000}b"})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid", "{}", r.text);
    let r = s
        .call(
            Method::POST,
            "/v1/chats/10/messages",
            &[("x-api-key", "vibe_api_a")],
            Some(json!({"message": "x\u{0000}y"})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "BITRIX_ERROR", "{}", r.text);
    let users = s.admin(Method::GET, "/admin/v1/tenants/acme/users", None).await;
    assert_eq!(users.body.as_array().unwrap().len(), 2, "{}", users.text);
}
