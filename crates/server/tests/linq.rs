#![allow(clippy::unwrap_used)]
//! The Linq face over HTTP: queued leave and participant changes, 409 after
//! leaving, every documented error code, webhooks.

mod common;

use base64::Engine;
use common::receiver::Receiver;
use common::*;
use confab_store::StoreExt;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

const KEY: &str = "linq-key";
const LINE: &str = "+14155550000";
const LINE2: &str = "+14155559999";

fn world() -> confab_faces::admin::world::World {
    worlds(vec![
        Tenant::new("partner")
            .line(LINE)
            .line(LINE2)
            .imessage_group(
                1,
                LINE,
                &["+14155550101", "+14155550102", "+14155550103", "+14155550104"],
            )
            .imessage_group(2, LINE, &["+14155550201", "+14155550202", "+14155550203"])
            .imessage_group(3, LINE, &["+14155550301", "+14155550302"])
            .imessage_chat(chat(
                4,
                "dm",
                Some(LINE),
                None,
                vec![confab_faces::admin::world::MemberSpec::Handle("+14155550401".into())],
            ))
            .imessage_group(5, LINE2, &["+14155550501", "+14155550502", "+14155550503"])
            .user(9, "Bitrix person")
            .group(6, 9, &[])
            .credential("linq_api_key", KEY, None, None, &[]),
        Tenant::new("other")
            .line("+14155558888")
            .credential("linq_api_key", "other-key", None, None, &[]),
    ])
}

async fn server() -> TestServer {
    TestServer::with_world(world()).await
}

async fn uuid(s: &TestServer, chat: i64) -> String {
    s.chat("partner", chat).await.uuid.to_string()
}

async fn linq(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> Reply {
    let auth = format!("Bearer {KEY}");
    s.call(
        method,
        &format!("/api/partner{path}"),
        &[("authorization", auth.as_str())],
        body,
    )
    .await
}

fn assert_linq(r: &Reply, status: u16, code: u16, message: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json", "{}", r.text);
    assert_eq!(r.body["success"], false, "{}", r.text);
    assert_eq!(r.body["error"]["status"], status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    assert_eq!(r.body["error"]["message"], message, "{}", r.text);
    assert!(!r.body["trace_id"].as_str().unwrap().is_empty());
    if (400..500).contains(&status) && status != 429 {
        assert_eq!(r.headers["x-should-retry"], "false", "the SDK must not retry {status}");
    }
}

/// Waits for an operation to finish; returns its final JSON.
async fn settled(s: &TestServer, trace: &str) -> Value {
    for _ in 0..250 {
        let r = linq(s, Method::GET, &format!("/v3/operations/{trace}"), None).await;
        assert!(
            r.body["status"].is_string(),
            "operation {trace}: {} {}",
            r.status,
            r.text
        );
        if r.body["status"] != "queued" {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("operation {trace} did not finish");
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// Verifies both schemes the way Linq's docs tell receivers to.
fn verify_linq_signatures(got: &common::receiver::Received, secret: &str) {
    let ts = got.header("x-webhook-timestamp");
    let signed = [ts.as_bytes(), b".", got.body.as_slice()].concat();
    assert_eq!(
        got.header("x-webhook-signature"),
        hex::encode(hmac(secret.as_bytes(), &signed)),
        "legacy hex signature"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = got.header("webhook-id");
    let msg = [
        id.as_bytes(),
        b".",
        got.header("webhook-timestamp").as_bytes(),
        b".",
        got.body.as_slice(),
    ]
    .concat();
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac(&key, &msg))
    );
    assert_eq!(got.header("webhook-signature"), expected, "Standard Webhooks signature");
    let age = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64)
        - ts.parse::<i64>().unwrap();
    assert!(age.abs() < 300, "timestamp within 5 minutes");
}

async fn subscribe(s: &TestServer, url: &str, events: &[&str], phones: Option<&[&str]>) -> Value {
    let mut body = json!({"target_url": url, "subscribed_events": events});
    if let Some(p) = phones {
        body["phone_numbers"] = json!(p);
    }
    let r = linq(s, Method::POST, "/v3/webhook-subscriptions", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

/// The commit that queues work wakes this node's worker: with a poll of a
/// minute, the leave (an operation, then its outbox row) is carried out
/// and announced within seconds, not at the next poll.
#[tokio::test]
async fn a_queued_leave_wakes_the_worker_before_its_next_poll() {
    let slow = confab_delivery::DeliveryConfig {
        poll: Duration::from_secs(60),
        ..fast_delivery()
    };
    let s = TestServer::with_world_delivery(world(), slow).await;
    let rx = Receiver::start(&[200]).await;
    subscribe(&s, &rx.url, &["participant.removed"], None).await;
    let id = uuid(&s, 1).await;
    // The worker's first rounds found nothing: it is waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let trace = r.body["trace_id"].as_str().unwrap().to_string();
    assert_eq!(settled(&s, &trace).await["status"], "done");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].json()["trace_id"], trace);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the webhook waited for the worker's poll: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn leave_is_accepted_then_done_with_a_signed_participant_removed() {
    let s = server().await;
    let rx = Receiver::start(&[200]).await;
    let sub = subscribe(&s, &rx.url, &["participant.removed"], None).await;
    let secret = sub["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let id = uuid(&s, 1).await;
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["message"], "Leave group chat queued");
    assert_eq!(r.body["status"], "accepted");
    let trace = r.body["trace_id"].as_str().unwrap().to_string();
    assert_eq!(settled(&s, &trace).await["status"], "done");
    assert_eq!(s.members("partner", 1).await.len(), 4);

    let got = rx.wait_for(1).await;
    let w = got[0].json();
    assert_eq!(w["api_version"], "v3");
    assert_eq!(w["event_type"], "participant.removed");
    assert_eq!(w["partner_id"], "partner");
    assert_eq!(w["trace_id"], trace, "the webhook carries the leave's trace id");
    assert!(w["event_id"].as_str().unwrap().len() >= 32);
    assert!(w["created_at"].as_str().unwrap().ends_with('Z'));
    let d = &w["data"];
    assert_eq!(d["handle"], LINE);
    assert_eq!(d["chat_id"], id);
    assert_eq!(d["participant"]["handle"], LINE);
    assert_eq!(d["participant"]["status"], "left");
    assert_eq!(d["participant"]["is_me"], true);
    assert!(d["participant"]["left_at"].is_string());
    assert!(d["removed_at"].is_string());
    verify_linq_signatures(&got[0], &secret);
    assert_eq!(got[0].header("webhook-id"), w["event_id"].as_str().unwrap());

    // retrieve shows the line as left.
    let r = linq(&s, Method::GET, &format!("/v3/chats/{id}"), None).await;
    let me = r.body["handles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["is_me"] == true)
        .unwrap()
        .clone();
    assert_eq!(
        (me["status"].as_str(), me["left_at"].is_string()),
        (Some("left"), true),
        "{me}"
    );
}

#[tokio::test]
async fn after_leaving_every_interaction_is_409_2013_without_retry() {
    let s = server().await;
    let id = uuid(&s, 1).await;
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    settled(&s, r.body["trace_id"].as_str().unwrap()).await;
    let text = json!({"message": {"parts": [{"type": "text", "value": "hi"}]}});
    for (m, path, body) in [
        (Method::POST, format!("/v3/chats/{id}/messages"), Some(text)),
        (Method::POST, format!("/v3/chats/{id}/typing"), None),
        (Method::DELETE, format!("/v3/chats/{id}/typing"), None),
        (Method::POST, format!("/v3/chats/{id}/read"), None),
        (
            Method::POST,
            format!("/v3/chats/{id}/participants"),
            Some(json!({"handle": "+14155550999"})),
        ),
        (
            Method::DELETE,
            format!("/v3/chats/{id}/participants"),
            Some(json!({"handle": "+14155550101"})),
        ),
        (
            Method::PUT,
            format!("/v3/chats/{id}"),
            Some(json!({"display_name": "x"})),
        ),
        (Method::POST, format!("/v3/chats/{id}/leave"), None),
        (Method::GET, format!("/v3/chats/{id}/messages"), None),
    ] {
        let r = linq(&s, m.clone(), &path, body).await;
        assert_linq(&r, 409, 2013, "This chat is unavailable");
    }
    assert_eq!(s.members("partner", 1).await.len(), 4);
}

#[tokio::test]
async fn leave_errors() {
    let s = server().await;
    let r = linq(&s, Method::POST, "/v3/chats/not-a-uuid/leave", None).await;
    assert_linq(
        &r,
        400,
        1005,
        "Invalid parameter value: chatId must be a UUID, got \"not-a-uuid\"",
    );
    let small = uuid(&s, 3).await;
    let r = linq(&s, Method::POST, &format!("/v3/chats/{small}/leave"), None).await;
    assert_linq(&r, 400, 1005, "Invalid parameter value: the group must keep at least 3 participants (leaving needs 4 or more active participants including yourself)");
    let dm = uuid(&s, 4).await;
    let r = linq(&s, Method::POST, &format!("/v3/chats/{dm}/leave"), None).await;
    assert_linq(&r, 409, 1006, "Cannot update direct message chats");
    let r = linq(
        &s,
        Method::POST,
        &format!("/v3/chats/{}/leave", uuid::Uuid::new_v4()),
        None,
    )
    .await;
    assert_linq(&r, 404, 2001, "Chat not found");
    let bitrix_chat = uuid(&s, 6).await;
    let r = linq(&s, Method::POST, &format!("/v3/chats/{bitrix_chat}/leave"), None).await;
    assert_linq(&r, 404, 2001, "Chat not found");
    let r = s
        .call(Method::POST, &format!("/api/partner/v3/chats/{small}/leave"), &[], None)
        .await;
    assert_linq(&r, 401, 2004, "Unauthorized - missing or invalid authentication token");
    let r = s
        .call(
            Method::POST,
            &format!("/api/partner/v3/chats/{small}/leave"),
            &[("authorization", "Bearer nope")],
            None,
        )
        .await;
    assert_linq(&r, 401, 2004, "Unauthorized - missing or invalid authentication token");
    // Another partner's chat is not found.
    let id = uuid(&s, 1).await;
    let r = s
        .call(
            Method::POST,
            &format!("/api/partner/v3/chats/{id}/leave"),
            &[("authorization", "Bearer other-key")],
            None,
        )
        .await;
    assert_linq(&r, 404, 2001, "Chat not found");
    s.faults.set_failing(true);
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    assert_linq(&r, 500, 3006, "Internal server error");
    s.faults.set_failing(false);
    assert_eq!(s.members("partner", 1).await.len(), 5);
}

#[tokio::test]
async fn a_queued_leave_that_lost_the_race_fails_and_changes_nothing() {
    let s = server().await;
    let id = uuid(&s, 2).await; // 4 members
    let a = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    assert_eq!(a.status.as_u16(), 202, "{}", a.text);
    let b = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    let oa = settled(&s, a.body["trace_id"].as_str().unwrap()).await;
    if b.status.as_u16() == 202 {
        // Both accepted before the first ran: the second fails when it runs.
        let ob = settled(&s, b.body["trace_id"].as_str().unwrap()).await;
        let mut statuses = vec![
            oa["status"].as_str().unwrap().to_string(),
            ob["status"].as_str().unwrap().to_string(),
        ];
        statuses.sort();
        assert_eq!(statuses, ["done", "failed"]);
        let failed = if oa["status"] == "failed" { oa } else { ob };
        assert_eq!(failed["error"], "you have left this chat");
    } else {
        // The first had already run when the second arrived: refused at once.
        assert_eq!(oa["status"], "done", "{oa}");
        assert_linq(&b, 409, 2013, "This chat is unavailable");
    }
    assert_eq!(s.members("partner", 2).await.len(), 3);
}

#[tokio::test]
async fn participants_are_queued_and_announced() {
    let s = server().await;
    let rx = Receiver::start(&[200]).await;
    subscribe(&s, &rx.url, &["participant.added", "participant.removed"], None).await;
    let id = uuid(&s, 2).await;
    let r = linq(
        &s,
        Method::POST,
        &format!("/v3/chats/{id}/participants"),
        Some(json!({"handle": "+14155550299"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["message"], "Participant addition queued");
    settled(&s, r.body["trace_id"].as_str().unwrap()).await;
    let r = linq(
        &s,
        Method::DELETE,
        &format!("/v3/chats/{id}/participants"),
        Some(json!({"handle": "+14155550201"})),
    )
    .await;
    assert_eq!(r.body["message"], "Participant removal queued", "{}", r.text);
    settled(&s, r.body["trace_id"].as_str().unwrap()).await;
    let got = rx.wait_for(2).await;
    let types: Vec<String> = got
        .iter()
        .map(|g| g.json()["event_type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["participant.added", "participant.removed"]);
    assert_eq!(got[1].json()["data"]["participant"]["status"], "removed");
    assert_eq!(s.members("partner", 2).await.len(), 4);
    // Remove must leave 3: a 3-member group refuses at once.
    let small = uuid(&s, 3).await;
    let r = linq(
        &s,
        Method::DELETE,
        &format!("/v3/chats/{small}/participants"),
        Some(json!({"handle": "+14155550301"})),
    )
    .await;
    assert_linq(&r, 400, 1005, "Invalid parameter value: the group must keep at least 3 participants (leaving needs 4 or more active participants including yourself)");
    let r = linq(
        &s,
        Method::POST,
        &format!("/v3/chats/{id}/participants"),
        Some(json!({})),
    )
    .await;
    assert_linq(&r, 400, 1001, "Missing required field: handle");
    let r = linq(
        &s,
        Method::POST,
        &format!("/v3/chats/{id}/participants"),
        Some(json!({"handle": "4155550299"})),
    )
    .await;
    assert_linq(&r, 400, 1002, "Phone number must be in E.164 format: 4155550299");
}

/// `GET /v3/chats` filters by a handle that is or was a member and by the
/// sending line, and pages what is left.
#[tokio::test]
async fn chat_list_filters_by_handle_and_line_and_pages() {
    let s = server().await;
    let ids = |r: &Reply| -> Vec<String> {
        r.body["chats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let two = uuid(&s, 2).await;
    let to = |h: &str| format!("/v3/chats?to={}", urlencode(h));
    let r = linq(&s, Method::GET, &to("+14155550201"), None).await;
    assert_eq!(ids(&r), std::slice::from_ref(&two), "{}", r.text);
    let r = linq(
        &s,
        Method::DELETE,
        &format!("/v3/chats/{two}/participants"),
        Some(json!({"handle": "+14155550201"})),
    )
    .await;
    settled(&s, r.body["trace_id"].as_str().unwrap()).await;
    let r = linq(&s, Method::GET, &to("+14155550201"), None).await;
    assert_eq!(
        ids(&r),
        std::slice::from_ref(&two),
        "a former member still matches: {}",
        r.text
    );
    let handle = r.body["chats"][0]["handles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["handle"] == "+14155550201")
        .cloned();
    assert_eq!(handle.map(|h| h["status"].clone()), Some(json!("removed")));
    let r = linq(&s, Method::GET, &to("+19995550000"), None).await;
    assert_eq!(ids(&r), Vec::<String>::new());
    assert_eq!(r.body["next_cursor"], Value::Null);
    // Chats 1-4 are on LINE (newest first), chat 5 on LINE2.
    let from = format!("/v3/chats?from={}&limit=3", urlencode(LINE));
    let r = linq(&s, Method::GET, &from, None).await;
    let first = ids(&r);
    assert_eq!(first.len(), 3, "{}", r.text);
    assert_eq!(r.body["next_cursor"], "3");
    let r = linq(&s, Method::GET, &format!("{from}&cursor=3"), None).await;
    let rest = ids(&r);
    assert_eq!(rest, [uuid(&s, 1).await], "{}", r.text);
    assert_eq!(r.body["next_cursor"], Value::Null);
    assert_eq!(first, [uuid(&s, 4).await, uuid(&s, 3).await, two]);
    for bad in ["limit=0", "limit=101", "limit=x"] {
        let r = linq(&s, Method::GET, &format!("/v3/chats?{bad}"), None).await;
        assert_linq(&r, 400, 1005, "Invalid parameter value: limit must be 1-100");
    }
    let r = linq(&s, Method::GET, "/v3/chats?cursor=x", None).await;
    assert_linq(&r, 400, 1005, "Invalid parameter value: invalid cursor");
    // Past the end, however far: an empty last page.
    for cursor in ["5", "18446744073709551615"] {
        let r = linq(&s, Method::GET, &format!("/v3/chats?cursor={cursor}"), None).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
        assert_eq!(ids(&r), Vec::<String>::new());
        assert_eq!(r.body["next_cursor"], Value::Null);
    }
    // A number that is not one of the partner's lines has no chats.
    let r = linq(
        &s,
        Method::GET,
        &format!("/v3/chats?from={}", urlencode("+19995550000")),
        None,
    )
    .await;
    assert_eq!(ids(&r), Vec::<String>::new(), "{}", r.text);
    // An empty `to`: chats with a member without a handle (shown as "").
    let r = linq(&s, Method::GET, "/v3/chats?to=", None).await;
    assert_eq!(ids(&r), Vec::<String>::new(), "everyone has a handle: {}", r.text);
    let three = s.chat("partner", 3).await;
    s.store
        .write(move |tx| {
            let nobody = tx.insert_user(confab_core::tx::NewUser {
                tenant_id: three.tenant_id,
                id: None,
                kind: confab_core::UserKind::Person,
                name: "no handle".into(),
                handle: None,
                active: true,
                app_id: None,
            })?;
            tx.open_membership(three.tenant_id, three.id, nobody.id, confab_core::Role::Member, 1)
        })
        .await
        .unwrap();
    let r = linq(&s, Method::GET, "/v3/chats?to=", None).await;
    assert_eq!(ids(&r), [uuid(&s, 3).await], "{}", r.text);
    assert_eq!(r.body["next_cursor"], Value::Null);
    // A NUL in either filter is refused, not looked up.
    for filter in ["from", "to"] {
        let r = linq(&s, Method::GET, &format!("/v3/chats?{filter}=%2B1415%00"), None).await;
        assert_linq(
            &r,
            400,
            1005,
            "Invalid parameter value: text must not contain NUL (\\u0000) characters",
        );
    }
}

#[tokio::test]
async fn chats_messages_and_the_rest() {
    let s = TestServer::start_tweaked(|st| {
        st.pair_limiter = std::sync::Arc::new(confab_faces::limits::WindowLimiter::for_store(
            Some(3),
            Duration::from_secs(60),
            &st.store,
        ));
    })
    .await;
    s.apply(world()).await;
    let r = linq(&s, Method::POST, "/v3/chats", Some(json!({"from": LINE, "to": ["+14155551001", "+14155551002", "+14155551003", "+14155551004"], "message": {"parts": [{"type": "text", "value": "hello"}]}}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let chat = r.body["chat"].clone();
    assert_eq!(chat["is_group"], true);
    assert_eq!(chat["handles"].as_array().unwrap().len(), 5);
    assert_eq!(chat["message"]["parts"][0]["value"], "hello");
    let id = chat["id"].as_str().unwrap().to_string();

    let r = linq(
        &s,
        Method::POST,
        "/v3/chats",
        Some(json!({"to": ["+14155551001"], "message": {"parts": [{"type": "text", "value": "x"}]}})),
    )
    .await;
    assert_linq(&r, 400, 1001, "Missing required field: from");
    let r = linq(&s, Method::POST, "/v3/chats", Some(json!({"from": "4155550000", "to": ["+14155551001"], "message": {"parts": [{"type": "text", "value": "x"}]}}))).await;
    assert_linq(&r, 400, 1002, "Phone number must be in E.164 format: 4155550000");
    let auth = format!("Bearer {KEY}");
    let r = s
        .raw(
            Method::POST,
            "/api/partner/v3/chats",
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["code"].as_u64()),
        (400, Some(1003)),
        "{}",
        r.text
    );
    let r = linq(&s, Method::POST, "/v3/chats", Some(json!({"from": LINE, "to": ["+14155551001"], "message": {"parts": [{"type": "link", "value": "https://x.y"}]}}))).await;
    assert_linq(
        &r,
        400,
        1005,
        "Invalid parameter value: the first message of a new chat may not contain a link",
    );
    let r = linq(&s, Method::POST, "/v3/chats", Some(json!({"from": "+14155558888", "to": ["+14155551001"], "message": {"parts": [{"type": "text", "value": "x"}]}}))).await;
    assert_linq(&r, 403, 2006, "Cannot send from this phone number");

    // Messages, idempotency, the pair rate limit (3 per minute here).
    let msg = json!({"message": {"parts": [{"type": "text", "value": "m1"}], "idempotency_key": "k1"}});
    let a = linq(&s, Method::POST, &format!("/v3/chats/{id}/messages"), Some(msg.clone())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let b = linq(&s, Method::POST, &format!("/v3/chats/{id}/messages"), Some(msg)).await;
    assert_eq!(
        a.body["message"]["id"], b.body["message"]["id"],
        "idempotency_key honoured"
    );
    let r = linq(
        &s,
        Method::POST,
        &format!("/v3/chats/{id}/messages"),
        Some(json!({"message": {"parts": [{"type": "text", "value": "m2"}]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = linq(
        &s,
        Method::POST,
        &format!("/v3/chats/{id}/messages"),
        Some(json!({"message": {"parts": [{"type": "text", "value": "m3"}]}})),
    )
    .await;
    assert_linq(&r, 429, 1007, "Rate limit exceeded");
    assert!(r.body["error"]["retry_after"].as_u64().unwrap() >= 1);
    assert!(r.headers.get("retry-after").is_some());
    let r = linq(&s, Method::GET, &format!("/v3/chats/{id}/messages?limit=10"), None).await;
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 3, "{}", r.text);
    let mid = a.body["message"]["id"].as_str().unwrap();
    let r = linq(&s, Method::GET, &format!("/v3/messages/{mid}"), None).await;
    assert_eq!(r.body["id"], mid);
    let r = linq(&s, Method::GET, &format!("/v3/messages/{}", uuid::Uuid::new_v4()), None).await;
    assert_linq(&r, 404, 2002, "Message not found");

    // Typing: DMs only (group → 403/2005); read; update; lists.
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/typing"), None).await;
    assert_linq(
        &r,
        403,
        2005,
        "Access denied: typing indicators are not supported in group chats",
    );
    let dm = uuid(&s, 4).await;
    assert_eq!(
        linq(&s, Method::POST, &format!("/v3/chats/{dm}/typing"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        linq(&s, Method::POST, &format!("/v3/chats/{dm}/read"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = linq(
        &s,
        Method::PUT,
        &format!("/v3/chats/{dm}"),
        Some(json!({"display_name": "x"})),
    )
    .await;
    assert_linq(&r, 409, 1006, "Cannot update direct message chats");
    let r = linq(
        &s,
        Method::PUT,
        &format!("/v3/chats/{id}"),
        Some(json!({"display_name": "Renamed"})),
    )
    .await;
    assert_eq!(r.body["status"], "accepted", "{}", r.text);
    assert_eq!(
        linq(&s, Method::GET, &format!("/v3/chats/{id}"), None).await.body["display_name"],
        "Renamed"
    );
    let r = linq(&s, Method::GET, "/v3/chats?limit=2", None).await;
    assert_eq!(r.body["chats"].as_array().unwrap().len(), 2);
    let next = r.body["next_cursor"].as_str().unwrap().to_string();
    let r2 = linq(&s, Method::GET, &format!("/v3/chats?limit=2&cursor={next}"), None).await;
    assert_ne!(r.body["chats"][0]["id"], r2.body["chats"][0]["id"]);
    let r = linq(&s, Method::GET, &format!("/v3/chats?from={}", urlencode(LINE2)), None).await;
    assert_eq!(r.body["chats"].as_array().unwrap().len(), 1, "{}", r.text);
    let r = linq(&s, Method::GET, "/v3/phonenumbers", None).await;
    assert_eq!(r.body["phone_numbers"].as_array().unwrap().len(), 2);
    let r = linq(&s, Method::GET, "/v3/phone_numbers", None).await;
    assert_eq!(r.body["phone_numbers"][0]["phone_number"], LINE);
    let r = linq(&s, Method::GET, "/v3/webhook-events", None).await;
    assert!(r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "participant.removed"));
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
}

#[tokio::test]
async fn subscriptions_crud_and_phone_number_filter() {
    let s = server().await;
    let rx = Receiver::start(&[200]).await;
    let other = Receiver::start(&[200]).await;
    let sub = subscribe(&s, &rx.url, &["participant.removed"], Some(&[LINE2])).await;
    subscribe(&s, &other.url, &["participant.removed"], Some(&[LINE])).await;
    let r = linq(
        &s,
        Method::POST,
        "/v3/webhook-subscriptions",
        Some(json!({"target_url": rx.url, "subscribed_events": ["participant.removed"]})),
    )
    .await;
    assert_linq(
        &r,
        400,
        1005,
        "Invalid parameter value: a subscription for this target_url already exists",
    );
    let r = linq(
        &s,
        Method::POST,
        "/v3/webhook-subscriptions",
        Some(json!({"target_url": "ftp://x", "subscribed_events": ["participant.removed"]})),
    )
    .await;
    assert_linq(
        &r,
        400,
        1005,
        "Invalid parameter value: target_url must be an http(s) URL, got \"ftp://x\"",
    );
    let r = linq(
        &s,
        Method::POST,
        "/v3/webhook-subscriptions",
        Some(json!({"target_url": "https://x.y/a", "subscribed_events": ["nope"]})),
    )
    .await;
    assert_linq(&r, 400, 1005, "Invalid parameter value: unknown event type \"nope\"");
    let list = linq(&s, Method::GET, "/v3/webhook-subscriptions", None).await;
    assert_eq!(list.body["subscriptions"].as_array().unwrap().len(), 2);
    assert!(!list.text.contains("whsec_"), "the secret is shown once");
    let sid = sub["id"].as_str().unwrap();
    let r = linq(&s, Method::GET, &format!("/v3/webhook-subscriptions/{sid}"), None).await;
    assert_eq!(r.body["phone_numbers"], json!([LINE2]));

    // A leave on LINE2's group reaches only the LINE2 subscription.
    let id = uuid(&s, 5).await;
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    settled(&s, r.body["trace_id"].as_str().unwrap()).await;
    rx.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(other.count(), 0, "filtered by phone number");

    let r = linq(
        &s,
        Method::PUT,
        &format!("/v3/webhook-subscriptions/{sid}"),
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(r.body["is_active"], false, "{}", r.text);
    let r = linq(&s, Method::DELETE, &format!("/v3/webhook-subscriptions/{sid}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = linq(&s, Method::GET, &format!("/v3/webhook-subscriptions/{sid}"), None).await;
    assert_linq(&r, 404, 2001, "Webhook subscription not found");
}

#[tokio::test]
async fn openapi_document() {
    let s = server().await;
    let r = s.call(Method::GET, "/openapi/linq.json", &[], None).await;
    assert_eq!(
        r.body["paths"]["/api/partner/v3/operations/{traceId}"]["get"]["x-confab-extension"],
        true
    );
    assert!(r.body["paths"]["/api/partner/v3/chats/{chatId}/leave"]["post"].is_object());
}

#[tokio::test]
async fn an_expired_key_is_refused_and_a_retried_send_after_leaving_is_409() {
    let mut w = world();
    w.tenants[0]
        .credentials
        .push(expired_credential("linq_api_key", "old-key"));
    let s = TestServer::with_world(w).await;
    let id = uuid(&s, 1).await;
    let r = s
        .call(
            Method::GET,
            &format!("/api/partner/v3/chats/{id}"),
            &[("authorization", "Bearer old-key")],
            None,
        )
        .await;
    assert_linq(&r, 401, 2004, "Unauthorized - missing or invalid authentication token");
    let msg = json!({"message": {"parts": [{"type": "text", "value": "once"}], "idempotency_key": "same"}});
    assert_eq!(
        linq(&s, Method::POST, &format!("/v3/chats/{id}/messages"), Some(msg.clone()))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    settled(&s, r.body["trace_id"].as_str().unwrap()).await;
    let r = linq(&s, Method::POST, &format!("/v3/chats/{id}/messages"), Some(msg)).await;
    assert_linq(&r, 409, 2013, "This chat is unavailable");
}

#[tokio::test]
async fn chat_created_and_message_events() {
    let s = server().await;
    let rx = Receiver::start(&[200]).await;
    subscribe(&s, &rx.url, &["chat.created", "message.sent"], None).await;
    let r = linq(&s, Method::POST, "/v3/chats", Some(json!({"from": LINE, "to": ["+14155551101", "+14155551102"], "message": {"parts": [{"type": "text", "value": "first"}]}}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["chat"]["id"].as_str().unwrap().to_string();
    let got = rx.wait_for(2).await;
    let events: Vec<Value> = got.iter().map(|g| g.json()).collect();
    let created = events
        .iter()
        .find(|e| e["event_type"] == "chat.created")
        .expect("chat.created");
    assert_eq!(created["data"]["chat_id"], id);
    assert_eq!(created["data"]["chat"]["is_group"], true);
    let sent = events
        .iter()
        .find(|e| e["event_type"] == "message.sent")
        .expect("message.sent");
    assert_eq!(sent["data"]["chat_id"], id);
    assert_eq!(sent["data"]["message"]["parts"][0]["value"], "first");
    assert_eq!(sent["data"]["message"]["is_from_me"], true);
    // participant.added was not subscribed: only these two arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 2);
}
