#![allow(clippy::unwrap_used)]
//! Two confab nodes on one PostgreSQL database (issue #8): each node has its
//! own connection pool, router, limiters and delivery worker, exactly as two
//! processes behind a load balancer would. PostgreSQL runs only (the
//! `pg_only_` prefix); each test states the invariant that must hold across
//! the nodes.

mod common;

use common::receiver::Receiver;
use common::*;
use confab_faces::chert::auth::sign;
use confab_faces::limits::BucketConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const LINE: &str = "+14155550000";
const CHERT: &str = "chert-secret";
const LINQ: &str = "linq-key";

fn world() -> confab_faces::admin::world::World {
    Tenant::new("acme")
        .line(LINE)
        .imessage_group(1, LINE, &["+14155550101", "+14155550102", "+14155550103"])
        .imessage_group(
            2,
            LINE,
            &["+14155550201", "+14155550202", "+14155550203", "+14155550204"],
        )
        .user(7, "Alice")
        .group(10, 7, &[])
        .credential("chert_signing", CHERT, None, None, &[])
        .credential("linq_api_key", LINQ, None, None, &[])
        .credential("bitrix_webhook", "hook", Some(7), None, &["im", "imbot"])
        .world()
}

/// Node A with the world, and node B on the same database.
async fn two_nodes(bucket: Option<BucketConfig>) -> (TestServer, TestServer) {
    let a = TestServer::start_limited(bucket).await;
    a.apply(world()).await;
    let b = a.second_node(bucket).await;
    (a, b)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn chert_sig(ts: i64, body: &[u8]) -> String {
    format!("v1,{ts},{}", sign(CHERT, ts, body))
}

/// Invariant: an iMessage group never drops below 3 members, whichever
/// node applies a leave. 50 leaves of the line, alternating between the
/// nodes, at a 4-member group: exactly one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_only_fifty_leaves_over_two_nodes_exactly_one_succeeds() {
    for round in 0..5 {
        let (a, b) = two_nodes(None).await;
        let id = a.chat("acme", 1).await.chert_id();
        let mut tasks = Vec::new();
        // One clock reading: a second boundary inside the loop must not
        // make two timestamps (and so two signatures) equal.
        let start = now();
        for i in 0..50 {
            let node = if i % 2 == 0 { &a } else { &b };
            let (client, url) = (node.client.clone(), node.url(&format!("/api/v1/chats/{id}/leave")));
            // Distinct timestamps: no two requests share a signature.
            let sig = chert_sig(start - i, b"");
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
            match t.await.unwrap() {
                StatusCode::OK => ok += 1,
                other => assert_eq!(other, StatusCode::BAD_REQUEST, "round {round}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one leave applies");
        assert_eq!(a.members("acme", 1).await.len(), 3, "round {round}");
        assert_eq!(b.members("acme", 1).await.len(), 3, "round {round}: both nodes agree");
    }
}

/// Invariant: the Bitrix portal bucket is one per portal, not one per
/// node. Burst 4, no drain to speak of: 4 calls spread over both nodes
/// pass, the 5th — on either node — is QUERY_LIMIT_EXCEEDED.
#[tokio::test]
async fn pg_only_bitrix_portal_bucket_is_shared() {
    let bucket = BucketConfig {
        drain_per_sec: 0.001,
        burst: 4.0,
    };
    let (a, b) = two_nodes(Some(bucket)).await;
    for (i, node) in [&a, &b, &a, &b].into_iter().enumerate() {
        let r = node
            .call(
                Method::POST,
                "/rest/7/hook/im.chat.get",
                &[],
                Some(json!({"CHAT_ID": 10})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "call {i}: {}", r.text);
    }
    for node in [&a, &b] {
        let r = node
            .call(
                Method::POST,
                "/rest/7/hook/im.chat.get",
                &[],
                Some(json!({"CHAT_ID": 10})),
            )
            .await;
        assert_eq!(r.status.as_u16(), 503, "{}", r.text);
        assert_eq!(r.body["error"], "QUERY_LIMIT_EXCEEDED", "{}", r.text);
    }
}

/// Invariant: a Chert signature is used once across the cluster. The same
/// signed leave sent to node A and then to node B is refused on B.
#[tokio::test]
async fn pg_only_chert_replay_is_refused_on_the_other_node() {
    let (a, b) = two_nodes(None).await;
    let id = a.chat("acme", 2).await.chert_id();
    let sig = chert_sig(now(), b"");
    let send = |node: &TestServer| {
        let sig = sig.clone();
        let path = format!("/api/v1/chats/{id}/leave");
        let node_url = node.url(&path);
        let client = node.client.clone();
        async move {
            let r = client
                .post(node_url)
                .header("x-chert-tenant", "acme")
                .header("x-chert-signature", sig)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (st, _) = send(&a).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(&b).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], 2004, "{body}");
    assert_eq!(
        body["error"]["message"],
        "Replayed request: this signature was already used; sign every request anew"
    );
    assert_eq!(a.members("acme", 2).await.len(), 4, "the replay changed nothing");
}

fn linq_auth() -> (&'static str, String) {
    ("authorization", format!("Bearer {LINQ}"))
}

async fn linq(node: &TestServer, method: Method, path: &str, body: Option<Value>) -> Reply {
    let (k, v) = linq_auth();
    node.call(method, &format!("/api/partner{path}"), &[(k, v.as_str())], body)
        .await
}

/// Invariant: Linq's pair limit counts messages on every node together.
/// A limit of 3 per minute: 3 sends spread over the nodes pass, the 4th is
/// 429 / 1007 on either node.
#[tokio::test]
async fn pg_only_linq_pair_limit_is_shared() {
    let a = TestServer::start_tweaked(|st| {
        st.pair_limiter = std::sync::Arc::new(confab_faces::limits::WindowLimiter::for_store(
            Some(3),
            Duration::from_secs(60),
            &st.store,
        ));
    })
    .await;
    a.apply(world()).await;
    let b = a.second_node(None).await;
    // Node B's limiter, configured the same, over the same database.
    let b_limit = confab_faces::limits::WindowLimiter::for_store(Some(3), Duration::from_secs(60), &b.store);
    let id = a.chat("acme", 1).await.uuid.to_string();
    let msg = |n: usize| json!({"message": {"parts": [{"type": "text", "value": format!("m{n}")}]}});
    for (n, node) in [&a, &b, &a].into_iter().enumerate() {
        let r = linq(node, Method::POST, &format!("/v3/chats/{id}/messages"), Some(msg(n))).await;
        assert!(r.status.is_success(), "send {n}: {}", r.text);
    }
    let r = linq(&a, Method::POST, &format!("/v3/chats/{id}/messages"), Some(msg(9))).await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["code"].as_u64()),
        (429, Some(1007)),
        "{}",
        r.text
    );
    // And the window B's limiter sees is the same one.
    let pair = format!("{}:{}", 1, id);
    assert!(
        b_limit.hit(&pair).await.is_err(),
        "node B's limiter sees the hits of both nodes"
    );
}

/// Invariant: one idempotency key, one message — even when the retry lands
/// on the other node at the same moment. Both answers are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_only_idempotency_keys_hold_across_nodes() {
    let (a, b) = two_nodes(None).await;
    let id = a.chat("acme", 1).await.uuid.to_string();
    for round in 0..10 {
        let body =
            json!({"message": {"parts": [{"type": "text", "value": "once"}], "idempotency_key": format!("k-{round}")}});
        let path = format!("/v3/chats/{id}/messages");
        let (ra, rb) = tokio::join!(
            linq(&a, Method::POST, &path, Some(body.clone())),
            linq(&b, Method::POST, &path, Some(body.clone()))
        );
        assert!(ra.status.is_success(), "{}", ra.text);
        assert_eq!(ra.status, rb.status, "{} / {}", ra.text, rb.text);
        assert!(ra.body["message"]["id"].is_string(), "{}", ra.text);
        assert_eq!(
            ra.body["message"]["id"], rb.body["message"]["id"],
            "round {round}: the same message answers both"
        );
    }
    let r = linq(&a, Method::GET, &format!("/v3/chats/{id}/messages"), None).await;
    let texts: Vec<String> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["parts"][0]["value"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts.iter().filter(|t| *t == "once").count(), 10, "{texts:?}");
}

/// Invariants: with both nodes' delivery workers running, every event's
/// webhook is delivered exactly once (outbox rows are claimed by one
/// worker), a queued Linq leave accepted by node A runs exactly once, and
/// one chat's queued operations run in queue order whichever node queued
/// them (the last add, queued on node B just before the leave on node A,
/// once ran after the leave and failed with "you have left this chat").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_only_outbox_and_operations_are_claimed_once() {
    let (a, b) = two_nodes(None).await;
    let rx = Receiver::start(&[200]).await;
    let r = linq(
        &a,
        Method::POST,
        "/v3/webhook-subscriptions",
        Some(json!({"target_url": rx.url, "subscribed_events": ["participant.added", "participant.removed"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = a.chat("acme", 2).await.uuid.to_string();
    // 20 adds spread over both nodes: 20 events.
    let mut traces = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = linq(
            node,
            Method::POST,
            &format!("/v3/chats/{id}/participants"),
            Some(json!({"handle": format!("+1415555{:04}", 3000 + i)})),
        )
        .await;
        assert!(r.status.is_success(), "add {i}: {}", r.text);
        traces.push(r.body["trace_id"].as_str().unwrap_or_default().to_string());
    }
    // The line leaves through node A: one queued operation, one removal.
    let r = linq(&a, Method::POST, &format!("/v3/chats/{id}/leave"), None).await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text);
    traces.push(r.body["trace_id"].as_str().unwrap_or_default().to_string());
    // Generous: the invariant is "once", not how fast, and CI is loaded.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rx.count() < 21 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if rx.count() < 21 {
        let mut ops = Vec::new();
        for t in &traces {
            let r = linq(&a, Method::GET, &format!("/v3/operations/{t}"), None).await;
            ops.push(r.text);
        }
        let kinds: Vec<String> = rx.all().iter().map(|g| g.json()["event_type"].to_string()).collect();
        panic!("{} of 21 webhooks: {kinds:?}\noperations: {ops:#?}", rx.count());
    }
    let got = rx.all();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = if rx.count() > got.len() { rx.all() } else { got };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for g in &got {
        *seen.entry(g.header("webhook-id")).or_default() += 1;
    }
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "delivered more than once: {dupes:?}");
    let kinds: Vec<String> = got
        .iter()
        .map(|g| g.json()["event_type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "participant.added").count(),
        20,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "participant.removed").count(),
        1,
        "the queued leave ran once: {kinds:?}"
    );
}
