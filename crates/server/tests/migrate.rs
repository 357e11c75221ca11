#![allow(clippy::unwrap_used)]
//! `confab migrate-data --from sqlite://… --to postgres://…` (issue #8): a
//! SQLite deployment with history — two tenants, leaves and rejoins, messages,
//! delivered, dead and pending webhooks with their attempts, finished and
//! queued Linq operations, idempotency keys — is copied by the real binary,
//! and both stores then answer every read the same. PostgreSQL runs only.

mod common;

use common::receiver::Receiver;
use common::*;
use confab_core::Subscription;
use confab_store::{SqliteStore, Store, StoreExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const LINE: &str = "+14155550000";

fn world() -> confab_faces::admin::world::World {
    worlds(vec![
        Tenant::new("acme")
            .line(LINE)
            .imessage_group(
                1,
                LINE,
                &["+14155550101", "+14155550102", "+14155550103", "+14155550104"],
            )
            .user(7, "Alice")
            .user(8, "Bob")
            .group(10, 7, &[8])
            .open_line(11, 7, &[8], "LEAD", 42)
            .credential("linq_api_key", "linq-key", None, None, &[])
            .credential("bitrix_webhook", "hook", Some(7), None, &["im", "imbot"]),
        Tenant::new("other").user(1, "Zed").group(10, 1, &[]).credential(
            "bitrix_webhook",
            "hook2",
            Some(1),
            None,
            &["im"],
        ),
    ])
}

/// Everything a reader can see of a store, as JSON.
async fn snapshot(store: &Arc<dyn Store>) -> Value {
    store
        .read(|tx| {
            let mut out = serde_json::Map::new();
            for t in tx.tenants()? {
                let mut chats = Vec::new();
                for c in tx.chats(t.id)? {
                    chats.push(json!({
                        "chat": c,
                        "history": tx.membership_history(t.id, c.id)?,
                        "messages": tx.messages(t.id, c.id, None, 1000)?,
                    }));
                }
                let deliveries = tx.deliveries(Some(t.id), None, 1000)?;
                let mut attempts = Vec::new();
                for d in &deliveries {
                    attempts.push(json!(tx.attempts(d.id)?));
                }
                let subs: Vec<Subscription> = ["linq", "chert", "bitrix"]
                    .iter()
                    .map(|f| tx.subscriptions(t.id, f))
                    .collect::<Result<Vec<_>, _>>()?
                    .concat();
                out.insert(
                    t.slug.clone(),
                    json!({
                        "tenant": t,
                        "chats": chats,
                        "users": tx.users(t.id)?,
                        "apps": tx.apps(t.id)?,
                        "lines": tx.lines(t.id)?,
                        "credentials": tx.credentials(t.id)?,
                        "crm": tx.crm_links(t.id)?,
                        "events": tx.events(t.id, None)?,
                        "deliveries": deliveries,
                        "attempts": attempts,
                        "subscriptions": subs,
                    }),
                );
            }
            Ok(Value::Object(out))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_only_migrate_data_copies_a_whole_sqlite_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("confab.db");
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let s = TestServer::on_store(confab_store::testing::TestDb {
        store: sqlite.clone(),
        url: None,
        dir: None,
    })
    .await;
    s.apply(world()).await;
    let linq = |method: Method, path: String, body: Option<Value>| {
        let s = &s;
        async move {
            s.call(
                method,
                &format!("/api/partner{path}"),
                &[("authorization", "Bearer linq-key")],
                body,
            )
            .await
        }
    };
    // A receiver that always fails: attempts pile up, rows go dead.
    let rx = Receiver::start(&[500]).await;
    let r = linq(
        Method::POST,
        "/v3/webhook-subscriptions".into(),
        Some(json!({"target_url": rx.url, "subscribed_events": ["participant.added", "participant.removed", "message.sent"]})),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let chat = s.chat("acme", 1).await.uuid.to_string();
    let body = json!({"message": {"parts": [{"type": "text", "value": "hello"}], "idempotency_key": "k1"}});
    let r = linq(Method::POST, format!("/v3/chats/{chat}/messages"), Some(body)).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let r = linq(
        Method::POST,
        format!("/v3/chats/{chat}/participants"),
        Some(json!({"handle": "+14155550199"})),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    // Bitrix: Bob leaves chat 10 and is added back (history of two rows).
    let hook = |m: &str, p: Value| {
        let path = format!("/rest/7/hook/{m}");
        let s = &s;
        async move { s.call(Method::POST, &path, &[], Some(p)).await }
    };
    assert_eq!(
        hook("im.chat.user.delete", json!({"CHAT_ID": 10, "USER_ID": 8}))
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        hook("im.chat.user.add", json!({"CHAT_ID": 10, "USERS": [8]}))
            .await
            .status
            .as_u16(),
        200
    );
    // Let the first deliveries fail for good (3 attempts each).
    let _ = rx.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // From now on nothing is delivered: these stay pending, and the leave
    // stays a queued operation.
    s.stop_worker();
    let r = linq(Method::POST, format!("/v3/chats/{chat}/leave"), None).await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text);
    let trace = r.body["trace_id"].as_str().unwrap().to_string();
    let r = linq(
        Method::POST,
        format!("/v3/chats/{chat}/participants"),
        Some(json!({"handle": "+14155550198"})),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    let body = json!({"message": {"parts": [{"type": "text", "value": "pending"}]}});
    let r = linq(Method::POST, format!("/v3/chats/{chat}/messages"), Some(body)).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let before = snapshot(&sqlite).await;
    let pending = before["acme"]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "pending")
        .count();
    let dead = before["acme"]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "dead")
        .count();
    assert!(
        pending > 0 && dead > 0,
        "the fixture has pending and dead deliveries: {pending} / {dead}"
    );
    drop(s);

    // The real binary copies it.
    let url = confab_store::testing::create_database().await;
    let out = common::process::confab()
        .args([
            "migrate-data",
            "--from",
            &format!("sqlite://{}", path.display()),
            "--to",
            &url,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("copied and verified"), "{stdout}");

    // Every read answers the same on PostgreSQL.
    let pg = confab_store::testing::open_pg(&url, &confab_store::PgOptions::default()).await;
    let pg: Arc<dyn Store> = pg;
    let after = snapshot(&pg).await;
    assert_eq!(before, after);

    // A second copy into the same database is refused.
    let out = common::process::confab()
        .args([
            "migrate-data",
            "--from",
            &format!("sqlite://{}", path.display()),
            "--to",
            &url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only fills an empty database"));

    // And the migrated deployment runs: the queued leave is carried out,
    // the pending webhooks go out, new ids continue after the copied ones.
    let node = TestServer::on_database(&url, &confab_store::PgOptions::default()).await;
    rx.set_script(&[200]);
    let op = loop {
        let r = node
            .call(
                Method::GET,
                &format!("/api/partner/v3/operations/{trace}"),
                &[("authorization", "Bearer linq-key")],
                None,
            )
            .await;
        if r.body["status"] != "queued" {
            break r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(op["status"], "done", "{op}");
    let max_event = before["acme"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .max()
        .unwrap();
    // User 7's Bitrix webhook: a method's answer, which must be 200.
    let bitrix = |method: &'static str, body: serde_json::Value| {
        let node = &node;
        async move {
            let r = node
                .call(Method::POST, &format!("/rest/7/hook/{method}"), &[], Some(body))
                .await;
            assert_eq!(r.status.as_u16(), 200, "{method}: {}", r.text);
            r
        }
    };
    bitrix("im.chat.user.delete", json!({"CHAT_ID": 10, "USER_ID": 8})).await;
    let events = snapshot(&pg).await["acme"]["events"].as_array().unwrap().clone();
    assert!(events.iter().all(|e| e["id"].as_i64().unwrap() > 0));
    assert!(
        events.iter().filter(|e| e["id"].as_i64().unwrap() > max_event).count() >= 2,
        "new events get new ids after the copied ones"
    );
    // So do messages' (PostgreSQL draws them from a sequence, migration 5).
    let max_message = before
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t["chats"].as_array().unwrap().clone())
        .flat_map(|c| c["messages"].as_array().unwrap().clone())
        .map(|m| m["id"].as_i64().unwrap())
        .max()
        .unwrap();
    let r = bitrix(
        "im.message.add",
        json!({"DIALOG_ID": "chat10", "MESSAGE": "after the copy"}),
    )
    .await;
    assert!(
        r.body["result"].as_i64().unwrap() > max_message,
        "a new message's id {} is past the copied ones ({max_message})",
        r.body["result"]
    );
}
