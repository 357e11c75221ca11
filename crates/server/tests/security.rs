#![allow(clippy::unwrap_used)]
//! Security: no secret reaches the logs; another tenant's ids read as "not
//! found" in every face, on every route of its OpenAPI document, and change
//! nothing.

mod common;

use common::process::{start, stop};
use common::*;
use confab_faces::chert::auth::sign;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Read;

const SECRETS: &[&str] = &[
    "hooksecretcode77",
    "oauth-secret-token-77",
    "vibe_api_secret_key_77",
    "vibe_app_secret_key_77",
    "session-secret-77",
    "chert-signing-secret-77",
    "linq-secret-key-77",
    "admin-secret-token-77",
];

#[test]
fn a_full_scenario_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.toml");
    std::fs::write(
        &world,
        r#"[[tenants]]
slug = "acme"
users = [{ id = 1, name = "Alice" }, { id = 2, name = "Bob" }]
apps = [{ id = 1, client_id = "app.x" }]
bots = [{ id = 100, app = "app.x", name = "Bot" }]
lines = [{ number = "+14155550000" }]
chats = [
  { id = 1, owner = 1, members = [2, 100] },
  { id = 2, line = "+14155550000", members = ["+14155550001", "+14155550002", "+14155550003"] },
]
credentials = [
  { kind = "bitrix_webhook", secret = "hooksecretcode77", user = 1, scopes = ["im", "imbot"] },
  { kind = "bitrix_oauth", secret = "oauth-secret-token-77", user = 1, app = "app.x", scopes = ["im", "imbot"] },
  { kind = "vibecode_personal", secret = "vibe_api_secret_key_77", user = 2, scopes = ["im"] },
  { kind = "vibecode_app", secret = "vibe_app_secret_key_77", app = "app.x", scopes = ["im"] },
  { kind = "vibecode_session", secret = "session-secret-77", user = 1, app = "app.x" },
  { kind = "chert_signing", secret = "chert-signing-secret-77" },
  { kind = "linq_api_key", secret = "linq-secret-key-77" },
]
"#,
    )
    .unwrap();
    let (child, listen) = start(
        dir.path(),
        &[
            "--world",
            world.to_str().unwrap(),
            "--admin-token",
            "admin-secret-token-77",
            "--log-level",
            "trace",
        ],
    );
    let base = format!("http://{listen}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let sig = format!("v1,{ts},{}", sign("chert-signing-secret-77", ts, b""));
        let chat = c
            .get(format!("{base}/admin/v1/tenants/acme/chats/2"))
            .bearer_auth("admin-secret-token-77")
            .send()
            .await
            .unwrap();
        let chat: Value = chat.json().await.unwrap();
        let ch = chat["chert_id"].as_str().unwrap().to_string();
        let uuid = chat["chat"]["uuid"].as_str().unwrap().to_string();
        let calls = vec![
            c.post(format!("{base}/rest/1/hooksecretcode77/im.chat.user.list.json"))
                .json(&json!({"CHAT_ID": 1})),
            c.get(format!(
                "{base}/rest/im.chat.user.list?auth=oauth-secret-token-77&CHAT_ID=1"
            )),
            c.post(format!("{base}/rest/imbot.chat.leave"))
                .json(&json!({"CHAT_ID": 1, "auth": "oauth-secret-token-77"})),
            c.post(format!("{base}/rest/1/wrong-code/im.chat.leave")),
            c.get(format!("{base}/v1/chats"))
                .header("x-api-key", "vibe_api_secret_key_77"),
            c.post(format!("{base}/v1/chats/1/leave"))
                .header("x-api-key", "vibe_app_secret_key_77")
                .bearer_auth("session-secret-77"),
            c.get(format!("{base}/api/v1/phone-numbers"))
                .bearer_auth("chert-signing-secret-77"),
            c.post(format!("{base}/api/v1/chats/{ch}/leave"))
                .header("x-chert-tenant", "acme")
                .header("x-chert-signature", sig),
            c.get(format!("{base}/api/partner/v3/chats/{uuid}"))
                .bearer_auth("linq-secret-key-77"),
            c.get(format!("{base}/admin/v1/tenants/acme/credentials"))
                .bearer_auth("admin-secret-token-77"),
        ];
        for call in calls {
            let r = call.send().await.unwrap();
            assert!(r.status().as_u16() < 500, "{}", r.status());
        }
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut child = child;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let _ = child.wait();
    assert!(
        err.contains("request"),
        "logs were captured: {}",
        &err[..err.len().min(500)]
    );
    for s in SECRETS {
        assert!(!err.contains(s), "secret {s} appears in the logs");
    }
    let _ = stop;
}

/// Tenant B's world: one of each thing tenant A's credentials will reach for.
fn two_tenants() -> confab_faces::admin::world::World {
    let all = ["im", "imbot", "imopenlines"];
    worlds(vec![
        Tenant::new("a")
            .user(1, "A1")
            .user(2, "A2")
            .app(1, "app.a")
            .line("+14155550000")
            .credential("bitrix_webhook", "hook-a", Some(1), None, &all)
            .credential("bitrix_oauth", "tok-a", Some(1), Some("app.a"), &all)
            .credential("vibecode_personal", "vibe_api_a", Some(1), None, &["im"])
            .credential("chert_signing", "chert-a", None, None, &[])
            .credential("linq_api_key", "linq-a", None, None, &[]),
        Tenant::new("b")
            .user(1, "B1")
            .user(2, "B2")
            .user(3, "B3")
            .app(1, "app.b")
            .bot(100, "app.b", "B bot")
            .line("+14155559999")
            .group(50, 1, &[2, 3, 100])
            .open_line(51, 1, &[2, 3], "lead", 77)
            .imessage_group(52, "+14155559999", &["+14155559001", "+14155559002", "+14155559003"])
            .credential("chert_signing", "chert-b", None, None, &[])
            .credential("linq_api_key", "linq-b", None, None, &[]),
    ])
}

async fn b_state(s: &TestServer) -> (usize, Vec<Vec<i64>>) {
    use confab_store::StoreExt;
    let events = s
        .store
        .read(|tx| {
            let b = tx.tenant_by_slug("b")?.unwrap();
            Ok(tx.events(b.id, None)?.len())
        })
        .await
        .unwrap();
    let mut members = Vec::new();
    for chat in [50, 51, 52] {
        members.push(s.members("b", chat).await);
    }
    (events, members)
}

/// Fills `{param}` placeholders with tenant B's ids.
fn fill(path: &str, ids: &[(&str, String)]) -> String {
    let mut out = path.to_string();
    for (k, v) in ids {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_on_every_route() {
    let s = TestServer::with_world(two_tenants()).await;
    let before = b_state(&s).await;
    let c52 = s.chat("b", 52).await;
    // B's subscription and operation, made through B's own credentials.
    let r = s
        .call(
            Method::POST,
            "/api/partner/v3/webhook-subscriptions",
            &[("authorization", "Bearer linq-b")],
            Some(json!({"target_url": "http://127.0.0.1:9/x", "subscribed_events": ["participant.added"]})),
        )
        .await;
    let linq_sub = r.body["id"].as_str().unwrap().to_string();
    let r = s
        .call(
            Method::POST,
            "/api/v1/webhook-subscriptions",
            &[("authorization", "Bearer chert-b")],
            Some(json!({"url": "https://example.com/x"})),
        )
        .await;
    let chert_sub = r.body["subscription"]["id"].as_str().unwrap().to_string();
    let body = json!({"message": {"parts": [{"type": "text", "value": "x"}]}, "handle": "+14155559001", "address": "+14155559001", "userId": 2, "userIds": [2], "display_name": "x", "title": "x", "url": "https://example.com/y", "events": []});

    let mut checked = 0;
    for (face, doc, auth, prefix) in [
        (
            "vibecode",
            "/openapi/vibecode.json",
            ("x-api-key", "vibe_api_a".to_string()),
            "",
        ),
        (
            "chert",
            "/openapi/chert.json",
            ("authorization", "Bearer chert-a".to_string()),
            "",
        ),
        (
            "linq",
            "/openapi/linq.json",
            ("authorization", "Bearer linq-a".to_string()),
            "",
        ),
    ] {
        let spec = s.call(Method::GET, doc, &[], None).await.body;
        let ids: Vec<(&str, String)> = match face {
            "vibecode" => vec![("chatId", "50".into()), ("userId", "2".into())],
            "chert" => vec![("id", c52.chert_id()), ("address", "%2B14155559001".into())],
            _ => vec![
                ("chatId", c52.uuid.to_string()),
                ("id", linq_sub.clone()),
                ("traceId", "nope".into()),
                ("messageId", uuid::Uuid::new_v4().to_string()),
            ],
        };
        let ids: Vec<(&str, String)> = if face == "chert" {
            let mut v = ids;
            v.retain(|(k, _)| *k != "id");
            v
        } else {
            ids
        };
        for (path, ops) in spec["paths"].as_object().unwrap() {
            if !path.contains('{') {
                continue;
            }
            for (method, _) in ops.as_object().unwrap() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut p = fill(path, &ids);
                if face == "chert" {
                    let id = if path.contains("webhook-subscriptions") {
                        chert_sub.clone()
                    } else {
                        c52.chert_id()
                    };
                    p = p.replace("{id}", &id);
                }
                let p = format!("{prefix}{p}");
                // Vibecode bodies are strict: give each route its own.
                let b = match (face, path.rsplit('/').next().unwrap_or_default()) {
                    ("vibecode", "members") => json!({"userIds": [2]}),
                    ("vibecode", "owner") => json!({"userId": 2}),
                    ("vibecode", "messages") => json!({"message": "x"}),
                    ("vibecode", _) => json!({}),
                    _ => body.clone(),
                };
                let r = s.call(m.clone(), &p, &[(auth.0, auth.1.as_str())], Some(b)).await;
                let ok = match face {
                    "vibecode" => r.status.as_u16() == 422 && r.body["error"]["message"] == "Chat not found",
                    "chert" => r.status.as_u16() == 404 && r.body["error"]["code"] == 2002,
                    _ => {
                        r.status.as_u16() == 404 && (r.body["error"]["code"] == 2001 || r.body["error"]["code"] == 2002)
                    }
                };
                assert!(ok, "{face} {method} {p}: {} {}", r.status, r.text);
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} routes checked");

    // Bitrix: every chat method with B's chat id, bot id, CRM entity.
    for (method, params) in [
        ("im.chat.leave", json!({"CHAT_ID": 50})),
        ("im.chat.user.add", json!({"CHAT_ID": 50, "USERS": [2]})),
        ("im.chat.user.delete", json!({"CHAT_ID": 50, "USER_ID": 2})),
        ("im.chat.setOwner", json!({"CHAT_ID": 50, "USER_ID": 2})),
        ("im.message.add", json!({"DIALOG_ID": "chat50", "MESSAGE": "x"})),
        ("imbot.chat.leave", json!({"CHAT_ID": 50, "BOT_ID": 100})),
        ("imbot.chat.user.list", json!({"CHAT_ID": 50, "BOT_ID": 100})),
    ] {
        let r = s
            .call(
                Method::POST,
                &format!("/rest/1/hook-a/{method}"),
                &[],
                Some(params.clone()),
            )
            .await;
        let status = r.status.as_u16();
        let code = r.body["error"].as_str().unwrap_or_default().to_string();
        assert!(
            (400..500).contains(&status)
                && ["CHAT_NOT_FOUND", "BOT_ID_ERROR", "ACCESS_DENIED"].contains(&code.as_str()),
            "{method}: {status} {}",
            r.text
        );
    }
    let r = s
        .call(
            Method::POST,
            "/rest/1/hook-a/imopenlines.crm.chat.user.delete",
            &[],
            Some(json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 77, "USER_ID": 2, "CHAT_ID": 51})),
        )
        .await;
    assert_eq!(r.body["error"], "CHAT_NOT_IN_CRM", "{}", r.text);
    let r = s
        .call(
            Method::POST,
            "/rest/1/hook-a/imopenlines.crm.chat.getLastId",
            &[],
            Some(json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 77})),
        )
        .await;
    assert_eq!(r.body["error"], "CRM_CHAT_EMPTY_CRM_DATA", "{}", r.text);

    assert_eq!(b_state(&s).await, before, "tenant B is untouched");
}
