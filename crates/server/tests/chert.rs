#![allow(clippy::unwrap_used)]
//! The Chert face over HTTP: HMAC v1 and bearer auth, replay protection,
//! every documented code with status, retryable and message.

mod common;

use common::*;
use confab_faces::chert::auth::sign;
use confab_faces::chert::error::code;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "chert-signing-secret";
const LINE: &str = "+14155550000";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn world() -> confab_faces::admin::world::World {
    let mut no_key = chat(
        5,
        "group",
        Some(LINE),
        None,
        ["+14155550501", "+14155550502", "+14155550503"]
            .map(|h| confab_faces::admin::world::MemberSpec::Handle(h.into()))
            .to_vec(),
    );
    no_key.chat_key = Some(String::new());
    worlds(vec![
        Tenant::new("acme")
            .line(LINE)
            .line("+14155559999")
            .imessage_group(1, LINE, &["+14155550101", "+14155550102", "+14155550103"])
            .imessage_group(2, LINE, &["+14155550201", "+14155550202"])
            .imessage_chat(chat(
                3,
                "dm",
                Some(LINE),
                None,
                vec![confab_faces::admin::world::MemberSpec::Handle("+14155550301".into())],
            ))
            .imessage_chat(no_key)
            .user(7, "Bitrix user")
            .group(6, 7, &[])
            .credential("chert_signing", SECRET, None, None, &[]),
        Tenant::new("other")
            .line("+14155558888")
            .credential("chert_signing", "other-secret", None, None, &[]),
    ])
}

async fn server() -> TestServer {
    TestServer::with_world(world()).await
}

async fn chert_id(s: &TestServer, chat: i64) -> String {
    s.chat("acme", chat).await.chert_id()
}

/// A fresh timestamp per request: identical requests signed in the same
/// second carry the same signature, which confab refuses as a replay.
fn fresh_ts() -> i64 {
    // Never the same timestamp twice in this process: two calls straddling
    // a second boundary would otherwise give `now - k` both times, and two
    // identical bodies the same signature (a replay).
    static OFFSET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    static USED: std::sync::Mutex<Vec<i64>> = std::sync::Mutex::new(Vec::new());
    loop {
        let ts = now() - OFFSET.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 250;
        let mut used = USED.lock().unwrap();
        if !used.contains(&ts) {
            used.push(ts);
            return ts;
        }
    }
}

/// A signed request, exactly as the seed's examples sign.
async fn signed(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> Reply {
    signed_with(s, method, path, body, SECRET, "acme", fresh_ts()).await
}

async fn signed_with(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    secret: &str,
    tenant: &str,
    ts: i64,
) -> Reply {
    let raw = body.map(|b| b.to_string()).unwrap_or_default();
    let sig = format!("v1,{ts},{}", sign(secret, ts, raw.as_bytes()));
    let mut h = vec![("x-chert-tenant", tenant), ("x-chert-signature", sig.as_str())];
    if !raw.is_empty() {
        h.push(("content-type", "application/json"));
    }
    s.raw(method, path, &h, raw.into_bytes()).await
}

/// Status, code, retryable (from the code table unless the route overrides
/// the status) and message.
fn assert_chert(r: &Reply, status: u16, code_no: u16, message: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.body["success"], false, "{}", r.text);
    assert_eq!(r.body["error"]["status"], status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code_no, "{}", r.text);
    assert_eq!(r.body["error"]["retryable"], code(code_no).retryable, "{}", r.text);
    assert_eq!(r.body["error"]["message"], message, "{}", r.text);
    let trace = r.body["trace_id"].as_str().unwrap();
    assert!(!trace.is_empty());
    assert_eq!(
        r.headers["x-trace-id"].to_str().unwrap(),
        trace,
        "X-Trace-ID matches trace_id"
    );
}

#[tokio::test]
async fn leave_from_the_pinned_line() {
    let s = server().await;
    let id = chert_id(&s, 1).await;
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{id}/leave"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"chat_id": id, "status": "left"}));
    assert!(r.headers.get("x-trace-id").is_some(), "X-Trace-ID on success too");
    assert_eq!(s.members("acme", 1).await.len(), 3);
}

#[tokio::test]
async fn leave_errors_1002_1006_2002_4099_4001() {
    let s = server().await;
    let small = chert_id(&s, 2).await;
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{small}/leave"), None).await;
    assert_chert(&r, 400, 1002, "Group would have fewer than 3 members after leaving");
    let dm = chert_id(&s, 3).await;
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{dm}/leave"), None).await;
    assert_chert(&r, 400, 1006, "Chat is a direct message");
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats/ch_00000000000000000000000000000000/leave",
        None,
    )
    .await;
    assert_chert(&r, 404, 2002, "Chat not found");
    let r = signed(&s, Method::POST, "/api/v1/chats/not-an-id/leave", None).await;
    assert_chert(&r, 404, 2002, "Chat not found");
    let no_key = chert_id(&s, 5).await;
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{no_key}/leave"), None).await;
    assert_chert(&r, 501, 4099, "Group is missing its chat key or has no pinned line");
    // A Bitrix chat is not one of Chert's iMessage chats.
    let internal = chert_id(&s, 6).await;
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{internal}/leave"), None).await;
    assert_chert(&r, 404, 2002, "Chat not found");
    // Another tenant's chat is not found.
    let id = chert_id(&s, 1).await;
    let r = signed_with(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{id}/leave"),
        None,
        "other-secret",
        "other",
        now(),
    )
    .await;
    assert_chert(&r, 404, 2002, "Chat not found");
    assert_eq!(s.members("acme", 1).await.len(), 4);
}

#[tokio::test]
async fn transport_failure_is_4001_retryable_and_changes_nothing() {
    let s = server().await;
    let r = s
        .admin(
            Method::PATCH,
            "/admin/v1/tenants/acme/lines/1",
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = chert_id(&s, 1).await;
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{id}/leave"), None).await;
    assert_chert(&r, 502, 4001, "Delivery failed");
    assert_eq!(r.body["error"]["retryable"], true);
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{id}/messages"),
        Some(json!({"message": {"parts": [{"type": "text", "value": "hi"}]}})),
    )
    .await;
    assert_chert(&r, 502, 4001, "Delivery failed");
    let r = signed(
        &s,
        Method::DELETE,
        &format!("/api/v1/chats/{id}/participants/%2B14155550101"),
        None,
    )
    .await;
    assert_chert(&r, 502, 4001, "Delivery failed");
    assert_eq!(
        s.members("acme", 1).await.len(),
        4,
        "a failed delivery leaves membership unchanged"
    );
    s.admin(
        Method::PATCH,
        "/admin/v1/tenants/acme/lines/1",
        Some(json!({"active": true})),
    )
    .await;
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{id}/leave"), None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "retry succeeds once the line delivers: {}",
        r.text
    );
}

#[tokio::test]
async fn leaving_twice_is_1006() {
    let s = server().await;
    let id = chert_id(&s, 1).await;
    assert_eq!(
        signed(&s, Method::POST, &format!("/api/v1/chats/{id}/leave"), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{id}/leave"), None).await;
    assert_chert(&r, 400, 1006, "Chat is no longer a group from this line's perspective");
}

#[tokio::test]
async fn signature_errors_2004_2013() {
    let s = server().await;
    let id = chert_id(&s, 1).await;
    let path = format!("/api/v1/chats/{id}/leave");
    let r = signed_with(&s, Method::POST, &path, None, SECRET, "acme", now() - 301).await;
    assert_chert(
        &r,
        401,
        2013,
        "Signature timestamp is outside the allowed window of ±300 seconds",
    );
    let r = signed_with(&s, Method::POST, &path, None, SECRET, "acme", now() + 301).await;
    assert_chert(
        &r,
        401,
        2013,
        "Signature timestamp is outside the allowed window of ±300 seconds",
    );
    let r = signed_with(&s, Method::POST, &path, None, "wrong-secret", "acme", now()).await;
    assert_chert(&r, 401, 2004, "Invalid signature");
    let r = signed_with(&s, Method::POST, &path, None, SECRET, "nope", now()).await;
    assert_chert(&r, 401, 2004, "Invalid signature");
    let ts = now();
    let sig = format!("v1,{ts},{}", sign(SECRET, ts, b""));
    let r = s
        .call(Method::POST, &path, &[("x-chert-signature", sig.as_str())], None)
        .await;
    assert_chert(
        &r,
        401,
        2004,
        "x-chert-tenant header is required with x-chert-signature",
    );
    let r = s
        .call(
            Method::POST,
            &path,
            &[("x-chert-tenant", "acme"), ("x-chert-signature", "v2,1,abc")],
            None,
        )
        .await;
    assert_chert(
        &r,
        401,
        2004,
        "Malformed x-chert-signature: expected v1,<unix_seconds>,<hex>",
    );
    let r = s.call(Method::POST, &path, &[], None).await;
    assert_chert(
        &r,
        401,
        2004,
        "Missing authentication: send x-chert-signature or Authorization: Bearer",
    );
    assert_eq!(s.members("acme", 1).await.len(), 4);
}

#[tokio::test]
async fn the_signature_covers_the_exact_body_bytes() {
    let s = server().await;
    let id = chert_id(&s, 1).await;
    let ts = now();
    let signed_body = r#"{"address": "+14155550999"}"#;
    let sent_body = r#"{"address":"+14155550999"}"#; // same JSON, other bytes
    let sig = format!("v1,{ts},{}", sign(SECRET, ts, signed_body.as_bytes()));
    let h = [
        ("x-chert-tenant", "acme"),
        ("x-chert-signature", sig.as_str()),
        ("content-type", "application/json"),
    ];
    let r = s
        .raw(
            Method::POST,
            &format!("/api/v1/chats/{id}/participants"),
            &h,
            sent_body.as_bytes().to_vec(),
        )
        .await;
    assert_chert(&r, 401, 2004, "Invalid signature");
    let r = s
        .raw(
            Method::POST,
            &format!("/api/v1/chats/{id}/participants"),
            &h,
            signed_body.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_replayed_signed_request_is_refused() {
    let s = server().await;
    let id = chert_id(&s, 1).await;
    let ts = now();
    let body = json!({"message": {"parts": [{"type": "text", "value": "once"}]}}).to_string();
    let sig = format!("v1,{ts},{}", sign(SECRET, ts, body.as_bytes()));
    let h = [
        ("x-chert-tenant", "acme"),
        ("x-chert-signature", sig.as_str()),
        ("content-type", "application/json"),
    ];
    let path = format!("/api/v1/chats/{id}/messages");
    let first = s.raw(Method::POST, &path, &h, body.clone().into_bytes()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let again = s.raw(Method::POST, &path, &h, body.into_bytes()).await;
    assert_chert(
        &again,
        401,
        2004,
        "Replayed request: this signature was already used; sign every request anew",
    );
    let (t, c) = (s.chat("acme", 1).await.tenant_id, s.chat("acme", 1).await.id);
    use confab_store::StoreExt;
    let sent = s
        .store
        .read(move |tx| {
            Ok(tx
                .events(t, Some(c))?
                .iter()
                .filter(|e| e.event.kind == confab_core::EventKind::MessageSent)
                .count())
        })
        .await
        .unwrap();
    assert_eq!(sent, 1, "applied once");
    // Reads may be repeated with the same signature.
    let ts = now();
    let sig = format!("v1,{ts},{}", sign(SECRET, ts, b""));
    let h = [("x-chert-tenant", "acme"), ("x-chert-signature", sig.as_str())];
    for _ in 0..2 {
        assert_eq!(
            s.call(Method::GET, "/api/v1/phone-numbers", &h, None).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn bearer_auth_and_signature_precedence() {
    let s = server().await;
    let bearer = format!("Bearer {SECRET}");
    let r = s
        .call(
            Method::GET,
            "/api/v1/phone-numbers",
            &[("authorization", bearer.as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let numbers: Vec<&str> = r.body["phone_numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phone_number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, vec![LINE, "+14155559999"]);
    assert!(r.body["phone_numbers"][0]["id"].as_str().unwrap().starts_with("pl_"));
    assert_eq!(
        r.body["phone_numbers"][0]["id"],
        r.body["phone_numbers"][0]["phone_line_id"]
    );
    let r = s
        .call(
            Method::GET,
            "/api/v1/phone-numbers",
            &[("authorization", "Bearer nope")],
            None,
        )
        .await;
    assert_chert(&r, 401, 2004, "Invalid bearer token");
    let r = s
        .call(
            Method::GET,
            "/api/v1/phone-numbers",
            &[("authorization", bearer.as_str()), ("x-chert-tenant", "other")],
            None,
        )
        .await;
    assert_chert(
        &r,
        401,
        2004,
        "The bearer token does not belong to the tenant in x-chert-tenant",
    );
    // Both present: the (bad) signature is checked first and wins.
    let r = s
        .call(
            Method::GET,
            "/api/v1/phone-numbers",
            &[
                ("authorization", bearer.as_str()),
                ("x-chert-tenant", "acme"),
                ("x-chert-signature", "v1,1,00"),
            ],
            None,
        )
        .await;
    assert_chert(
        &r,
        401,
        2013,
        "Signature timestamp is outside the allowed window of ±300 seconds",
    );
}

#[tokio::test]
async fn create_group_and_dm() {
    let s = server().await;
    let body = json!({
        "from": LINE,
        "to": ["+14155551001", "+14155551002", "+14155551003"],
        "message": {"parts": [{"type": "text", "value": "Welcome"}], "subject": "Launch follow-up"}
    });
    let r = signed(&s, Method::POST, "/api/v1/chats", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let chat = &r.body["chat"];
    assert!(chat["id"].as_str().unwrap().starts_with("ch_"));
    assert_eq!(chat["display_name"], "Launch follow-up");
    assert_eq!(chat["is_group"], true);
    assert_eq!(chat["handles"].as_array().unwrap().len(), 4);
    assert_eq!(
        chat["handles"][0],
        json!({"service": "imessage", "address": LINE, "is_me": true})
    );
    assert_eq!(
        r.body["message"]["parts"],
        json!([{"type": "text", "value": "Welcome"}])
    );
    assert_eq!(r.body["message"]["direction"], "outbound");
    assert_eq!(r.body["message"]["id"].as_str().unwrap().len(), 32);
    // The new group can be left at once (4 members).
    let id = chat["id"].as_str().unwrap().to_string();
    let r = signed(&s, Method::POST, &format!("/api/v1/chats/{id}/leave"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // A DM; a second create to the same recipient reuses it.
    let dm = json!({"from": LINE, "to": ["+14155551009"], "message": {"parts": [{"type": "text", "value": "hi"}]}});
    let a = signed(&s, Method::POST, "/api/v1/chats", Some(dm.clone())).await;
    assert_eq!(a.body["chat"]["is_group"], false, "{}", a.text);
    let b = signed(&s, Method::POST, "/api/v1/chats", Some(dm)).await;
    assert_eq!(a.body["chat"]["id"], b.body["chat"]["id"]);
    assert_ne!(a.body["message"]["id"], b.body["message"]["id"]);
}

#[tokio::test]
async fn create_errors_1001_1003_1006_2006_4099() {
    let s = server().await;
    let text = json!({"parts": [{"type": "text", "value": "x"}]});
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"to": ["+14155551001"], "message": text})),
    )
    .await;
    assert_chert(&r, 400, 1001, "Missing required field: from");
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"from": LINE, "to": [], "message": text})),
    )
    .await;
    assert_chert(&r, 400, 1001, "Missing required field: to");
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"from": LINE, "to": ["+14155551001"]})),
    )
    .await;
    assert_chert(&r, 400, 1001, "Missing required field: message.parts");
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"from": LINE, "to": ["415-555-1001"], "message": text})),
    )
    .await;
    assert_chert(
        &r,
        400,
        1003,
        "Invalid phone number: 415-555-1001 (expected E.164, e.g. +14155551234)",
    );
    let many: Vec<String> = (0..32).map(|i| format!("+1415556{i:04}")).collect();
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"from": LINE, "to": many, "message": text})),
    )
    .await;
    assert_chert(&r, 422, 1006, "A group can have at most 31 recipients");
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"from": "+14155558888", "to": ["+14155551001"], "message": text})),
    )
    .await;
    assert_chert(&r, 403, 2006, "The from number is not assigned to this tenant");
    let media = json!({"parts": [{"type": "media", "attachment_id": "att_1"}]});
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"from": LINE, "to": ["+14155551001", "+14155551002"], "message": media})),
    )
    .await;
    assert_chert(
        &r,
        501,
        4099,
        "Group creation supports text parts only in the first message",
    );
    let auth = format!("Bearer {SECRET}");
    let r = s
        .raw(
            Method::POST,
            "/api/v1/chats",
            &[("authorization", auth.as_str())],
            b"{bad".to_vec(),
        )
        .await;
    assert_eq!(r.body["error"]["code"], 1001, "{}", r.text);
    // 31 recipients is fine.
    let ok: Vec<String> = (0..31).map(|i| format!("+1415556{i:04}")).collect();
    let r = signed(
        &s,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"from": LINE, "to": ok, "message": text})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn idempotency_key_applies_once() {
    let s = server().await;
    let body = json!({"from": LINE, "to": ["+14155551001", "+14155551002"], "message": {"parts": [{"type": "text", "value": "hi"}], "idempotency_key": "k-1"}});
    let a = signed(&s, Method::POST, "/api/v1/chats", Some(body.clone())).await;
    let b = signed(&s, Method::POST, "/api/v1/chats", Some(body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body, b.body, "the retry gets the first answer");
    let other = json!({"from": LINE, "to": ["+14155551001", "+14155551003"], "message": {"parts": [{"type": "text", "value": "hi"}], "idempotency_key": "k-1"}});
    let r = signed(&s, Method::POST, "/api/v1/chats", Some(other)).await;
    assert_chert(&r, 400, 1001, "idempotency_key was already used with a different body");
    let auth = format!("Bearer {SECRET}");
    let chats = s.admin(Method::GET, "/admin/v1/tenants/acme/chats", None).await;
    assert_eq!(chats.body.as_array().unwrap().len(), 6, "one new chat, not two: {auth}");
}

#[tokio::test]
async fn messages_must_be_wrapped() {
    let s = server().await;
    let id = chert_id(&s, 1).await;
    let path = format!("/api/v1/chats/{id}/messages");
    let r = signed(
        &s,
        Method::POST,
        &path,
        Some(json!({"parts": [{"type": "text", "value": "x"}]})),
    )
    .await;
    assert_chert(
        &r,
        400,
        1001,
        "The body must be wrapped: {\"message\": {\"parts\": [...]}}",
    );
    let r = signed(
        &s,
        Method::POST,
        &path,
        Some(json!({"message": {"parts": [{"type": "text", "value": "hello"}]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["message"]["chat_id"], id);
    let dm = chert_id(&s, 3).await;
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{dm}/messages"),
        Some(json!({"message": {"parts": [{"type": "text", "value": "dm"}]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "DMs take messages: {}", r.text);
}

#[tokio::test]
async fn add_and_remove_participants() {
    let s = server().await;
    let id = chert_id(&s, 2).await;
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{id}/participants"),
        Some(json!({"address": "+14155550299"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["added"], "+14155550299");
    assert_eq!(r.body["participants"].as_array().unwrap().len(), 4);
    // Idempotent.
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{id}/participants"),
        Some(json!({"handle": "+14155550299"})),
    )
    .await;
    assert_eq!(r.body["participants"].as_array().unwrap().len(), 4, "{}", r.text);
    let r = signed(
        &s,
        Method::DELETE,
        &format!("/api/v1/chats/{id}/participants/%2B14155550299"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["removed"], "+14155550299");
    assert_eq!(r.body["participants"], json!([LINE, "+14155550201", "+14155550202"]));
    let r = signed(
        &s,
        Method::DELETE,
        &format!("/api/v1/chats/{id}/participants/%2B14155550201"),
        None,
    )
    .await;
    assert_chert(&r, 400, 1002, "Group is already at the minimum size of 3");
    let r = signed(
        &s,
        Method::DELETE,
        &format!("/api/v1/chats/{id}/participants/%2B14155550299"),
        None,
    )
    .await;
    assert_chert(&r, 400, 1001, "Address is not in this group");
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{id}/participants"),
        Some(json!({})),
    )
    .await;
    assert_chert(&r, 400, 1001, "Missing required field: address");
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{id}/participants"),
        Some(json!({"address": "nobody"})),
    )
    .await;
    assert_chert(&r, 400, 1003, "Invalid address: nobody (expected E.164 or an e-mail)");
    let dm = chert_id(&s, 3).await;
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{dm}/participants"),
        Some(json!({"address": "a@b.co"})),
    )
    .await;
    assert_chert(&r, 400, 1006, "Chat is a direct message");
    let no_key = chert_id(&s, 5).await;
    let r = signed(
        &s,
        Method::POST,
        &format!("/api/v1/chats/{no_key}/participants"),
        Some(json!({"address": "a@b.co"})),
    )
    .await;
    assert_chert(&r, 422, 4099, "Group is missing its chat key or has no pinned line");
    let r = signed(
        &s,
        Method::DELETE,
        &format!("/api/v1/chats/{no_key}/participants/%2B14155550501"),
        None,
    )
    .await;
    assert_chert(&r, 422, 4099, "Group is missing its chat key or has no pinned line");
}

#[tokio::test]
async fn get_chat_shares_ids_with_other_faces() {
    let s = server().await;
    let c = s.chat("acme", 1).await;
    for id in [c.chert_id(), c.uuid.to_string()] {
        let r = signed(&s, Method::GET, &format!("/api/v1/chats/{id}"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["chat"]["id"], c.chert_id());
    }
}

#[tokio::test]
async fn store_outage_is_3001_retryable() {
    let s = server().await;
    s.faults.set_failing(true);
    let r = s
        .call(
            Method::GET,
            "/api/v1/phone-numbers",
            &[("authorization", "Bearer chert-signing-secret")],
            None,
        )
        .await;
    assert_chert(&r, 503, 3001, "Service temporarily unavailable");
}

#[tokio::test]
async fn fifty_concurrent_leaves_over_http_exactly_one_succeeds() {
    let s = server().await;
    let id = chert_id(&s, 1).await;
    let mut tasks = Vec::new();
    // One clock reading: a second boundary inside the loop must not make
    // two timestamps (and so two signatures) equal.
    let start = now();
    for i in 0..50 {
        let client = s.client.clone();
        let url = s.url(&format!("/api/v1/chats/{id}/leave"));
        // Distinct timestamps so no two requests share a signature.
        let ts = start - i;
        let sig = format!("v1,{ts},{}", sign(SECRET, ts, b""));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("x-chert-tenant", "acme")
                .header("x-chert-signature", sig)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(s.members("acme", 1).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_signing_as_the_seed_drives_a_scenario() {
    let s = server().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/sdk/chert_scenario.py");
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(&base)
            .arg("acme")
            .arg(SECRET)
            .arg(LINE)
            .output()
    })
    .await
    .unwrap();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!("python3 is needed for this test (apt-get install python3): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scenario failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("scenario ok"), "{stdout}");
}

#[tokio::test]
async fn an_expired_signing_secret_is_refused() {
    let mut w = world();
    w.tenants[0]
        .credentials
        .push(expired_credential("chert_signing", "expired-secret"));
    let s = TestServer::with_world(w).await;
    let r = s
        .call(
            Method::GET,
            "/api/v1/phone-numbers",
            &[("authorization", "Bearer expired-secret")],
            None,
        )
        .await;
    assert_chert(&r, 401, 2004, "Invalid bearer token");
    let r = signed_with(
        &s,
        Method::GET,
        "/api/v1/phone-numbers",
        None,
        "expired-secret",
        "acme",
        fresh_ts(),
    )
    .await;
    assert_chert(&r, 401, 2004, "Invalid signature");
}

#[tokio::test]
async fn unknown_subscription_event_is_1001() {
    let s = server().await;
    let r = s
        .call(
            Method::POST,
            "/api/v1/webhook-subscriptions",
            &[("authorization", "Bearer chert-signing-secret")],
            Some(json!({"url": "https://example.com/h", "events": ["nope"]})),
        )
        .await;
    assert_chert(
        &r,
        400,
        1001,
        "Unknown event \"nope\"; known: message.received, message.sent, participant.added, participant.removed",
    );
    let r = s
        .call(
            Method::GET,
            "/api/v1/webhook-subscriptions/whs_missing",
            &[("authorization", "Bearer chert-signing-secret")],
            None,
        )
        .await;
    assert_chert(&r, 404, 2002, "Webhook subscription not found");
}
