#![allow(clippy::unwrap_used)]
//! The Vibecode face over HTTP (seed 000 and the confab extensions).

mod common;

use common::*;
use confab_faces::limits::BucketConfig;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn world() -> confab_faces::admin::world::World {
    let mut t = Tenant::new("acme")
        .user(1, "Alice")
        .user(2, "Bob")
        .user(3, "Carol")
        .user(4, "Dave")
        .app(1, "app.one")
        .group(10, 1, &[2, 3])
        .dm(11, 1, 2)
        .credential("vibecode_personal", "vibe_api_alice", Some(1), None, &["im"])
        .credential("vibecode_personal", "vibe_api_bob", Some(2), None, &["im", "crm"])
        .credential("vibecode_personal", "vibe_api_dave", Some(4), None, &["im"])
        .credential("vibecode_personal", "vibe_api_noim", Some(1), None, &["crm"])
        .credential("vibecode_personal", "vibe_api_notokens", None, None, &["im"])
        .credential("vibecode_app", "vibe_app_key", None, Some("app.one"), &["im"])
        .credential("vibecode_session", "sess-carol", Some(3), Some("app.one"), &[]);
    let mut old = confab_faces::admin::world::CredentialSpec {
        kind: "vibecode_session".into(),
        secret: Some("sess-old".into()),
        user: Some(3),
        app: Some("app.one".into()),
        scopes: vec![],
        expires_at: Some(1000),
        expires_in: None,
        label: None,
    };
    t = t.credential_spec(old.clone());
    old.secret = Some("sess-other-tenant".into());
    old.expires_at = None;
    worlds(vec![
        t,
        Tenant::new("other")
            .user(3, "Zed")
            .app(1, "app.one")
            .credential_spec(old),
    ])
}

async fn server() -> TestServer {
    TestServer::with_world(world()).await
}

async fn post(s: &TestServer, path: &str, key: &str, body: Option<serde_json::Value>) -> Reply {
    s.call(Method::POST, path, &[("x-api-key", key)], body).await
}

fn assert_vibe_error(r: &Reply, status: StatusCode, code: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["success"], false, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    assert_eq!(r.body["error"]["message"], message, "{}", r.text);
}

#[tokio::test]
async fn leave_with_a_personal_key() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_bob", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"success": true, "data": true}));
    assert_eq!(s.members("acme", 10).await, vec![1, 3]);
}

#[tokio::test]
async fn leave_with_an_app_key_and_session_token() {
    let s = server().await;
    let r = s
        .call(
            Method::POST,
            "/v1/chats/10/leave",
            &[("x-api-key", "vibe_app_key"), ("authorization", "Bearer sess-carol")],
            None,
        )
        .await;
    assert_eq!(r.body, json!({"success": true, "data": true}), "{}", r.text);
    assert_eq!(s.members("acme", 10).await, vec![1, 2]);
}

#[tokio::test]
async fn owner_leaving_keeps_owner_status_until_transfer() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_alice", None).await;
    assert_eq!(r.body["data"], true, "{}", r.text);
    assert_eq!(s.members("acme", 10).await, vec![2, 3], "Alice is no longer a member");
    assert_eq!(
        s.chat("acme", 10).await.owner_id,
        Some(confab_core::UserId(1)),
        "seed 000: the owner stays owner"
    );
    // The owner who left can still hand the chat over.
    let r = post(&s, "/v1/chats/10/owner", "vibe_api_alice", Some(json!({"userId": 2}))).await;
    assert_eq!(r.body, json!({"success": true, "data": true}), "{}", r.text);
    assert_eq!(s.chat("acme", 10).await.owner_id, Some(confab_core::UserId(2)));
    let r = s
        .call(Method::GET, "/v1/chats/10", &[("x-api-key", "vibe_api_bob")], None)
        .await;
    assert_eq!(r.body["data"]["ownerId"], 2);
}

#[tokio::test]
async fn transfer_then_leave_removes_the_former_owner_completely() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/owner", "vibe_api_alice", Some(json!({"userId": 3}))).await;
    assert_eq!(r.body["data"], true, "{}", r.text);
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_alice", None).await;
    assert_eq!(r.body["data"], true, "{}", r.text);
    assert_eq!(s.chat("acme", 10).await.owner_id, Some(confab_core::UserId(3)));
    assert_eq!(s.members("acme", 10).await, vec![2, 3]);
    // Alice is neither member nor owner now: the chat is gone from her view.
    let r = s
        .call(Method::GET, "/v1/chats/10", &[("x-api-key", "vibe_api_alice")], None)
        .await;
    assert_vibe_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "BITRIX_ERROR", "Chat not found");
}

#[tokio::test]
async fn bitrix_error_chat_not_found() {
    let s = server().await;
    let r = post(&s, "/v1/chats/999/leave", "vibe_api_alice", None).await;
    assert_vibe_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "BITRIX_ERROR", "Chat not found");
}

#[tokio::test]
async fn bitrix_error_not_a_member_and_leaving_twice() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_dave", None).await;
    assert_vibe_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BITRIX_ERROR",
        "Access denied to kick user from chat",
    );
    post(&s, "/v1/chats/10/leave", "vibe_api_bob", None).await;
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_bob", None).await;
    assert_vibe_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BITRIX_ERROR",
        "Access denied to kick user from chat",
    );
}

#[tokio::test]
async fn bitrix_error_dm_cannot_be_left() {
    let s = server().await;
    let r = post(&s, "/v1/chats/11/leave", "vibe_api_alice", None).await;
    assert_vibe_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BITRIX_ERROR",
        "Action unavailable",
    );
    assert_eq!(s.members("acme", 11).await, vec![1, 2]);
}

#[tokio::test]
async fn bitrix_error_no_permission() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/owner", "vibe_api_bob", Some(json!({"userId": 3}))).await;
    assert_vibe_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BITRIX_ERROR",
        "Change owner can only owner and user must be member in chat",
    );
    let r = s
        .call(
            Method::DELETE,
            "/v1/chats/10/members/3",
            &[("x-api-key", "vibe_api_bob")],
            None,
        )
        .await;
    assert_vibe_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BITRIX_ERROR",
        "Insufficient rights to exclude participants from the chat",
    );
    assert_eq!(s.chat("acme", 10).await.owner_id, Some(confab_core::UserId(1)));
}

#[tokio::test]
async fn bitrix_unavailable_when_the_store_fails() {
    let s = server().await;
    s.faults.set_failing(true);
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_bob", None).await;
    assert_vibe_error(
        &r,
        StatusCode::BAD_GATEWAY,
        "BITRIX_UNAVAILABLE",
        "Bitrix24 is unavailable",
    );
    s.faults.set_failing(false);
    assert_eq!(s.members("acme", 10).await, vec![1, 2, 3], "nothing changed");
}

#[tokio::test]
async fn scope_denied_without_im() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_noim", None).await;
    assert_vibe_error(
        &r,
        StatusCode::FORBIDDEN,
        "SCOPE_DENIED",
        "The API key lacks the im scope",
    );
}

#[tokio::test]
async fn token_missing_for_a_key_without_tokens() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_notokens", None).await;
    assert_vibe_error(
        &r,
        StatusCode::UNAUTHORIZED,
        "TOKEN_MISSING",
        "The API key has no configured tokens",
    );
}

#[tokio::test]
async fn missing_api_key() {
    let s = server().await;
    let r = s.call(Method::POST, "/v1/chats/10/leave", &[], None).await;
    assert_vibe_error(
        &r,
        StatusCode::UNAUTHORIZED,
        "MISSING_API_KEY",
        "API key is required. Pass it in the X-Api-Key header",
    );
}

#[tokio::test]
async fn invalid_api_key() {
    let s = server().await;
    for key in ["vibe_api_unknown", "not-a-vibe-key", "vibe_live_management"] {
        let r = post(&s, "/v1/chats/10/leave", key, None).await;
        assert_vibe_error(&r, StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "Invalid API key");
    }
    // A session token of another tenant does not open this tenant's app key.
    let r = s
        .call(
            Method::POST,
            "/v1/chats/10/leave",
            &[
                ("x-api-key", "vibe_app_key"),
                ("authorization", "Bearer sess-other-tenant"),
            ],
            None,
        )
        .await;
    assert_vibe_error(
        &r,
        StatusCode::UNAUTHORIZED,
        "INVALID_API_KEY",
        "Invalid user session token for this application key",
    );
}

#[tokio::test]
async fn invalid_app_key_without_bearer() {
    let s = server().await;
    let r = post(&s, "/v1/chats/10/leave", "vibe_app_key", None).await;
    assert_vibe_error(
        &r,
        StatusCode::UNAUTHORIZED,
        "INVALID_APP_KEY",
        "Application key requires a user session token in the Authorization: Bearer header",
    );
}

#[tokio::test]
async fn token_expired_session() {
    let s = server().await;
    let r = s
        .call(
            Method::POST,
            "/v1/chats/10/leave",
            &[("x-api-key", "vibe_app_key"), ("authorization", "Bearer sess-old")],
            None,
        )
        .await;
    assert_vibe_error(
        &r,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
        "User session token has expired",
    );
    assert!(r.body["error"]["hint"].is_string());
    assert_eq!(s.members("acme", 10).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn rate_limited_with_retry_after() {
    let s = TestServer::start_limited(Some(BucketConfig {
        drain_per_sec: 0.01,
        burst: 2.0,
    }))
    .await;
    s.apply(world()).await;
    for _ in 0..2 {
        let r = s
            .call(Method::GET, "/v1/chats", &[("x-api-key", "vibe_api_alice")], None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = post(&s, "/v1/chats/10/leave", "vibe_api_bob", None).await;
    assert_vibe_error(
        &r,
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "QUERY_LIMIT_EXCEEDED",
    );
    let retry = r.body["error"]["retryAfter"].as_u64().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(r.headers["retry-after"].to_str().unwrap(), retry.to_string());
    assert_eq!(
        s.members("acme", 10).await,
        vec![1, 2, 3],
        "refused request changed nothing"
    );
}

#[tokio::test]
async fn chat_id_must_be_a_positive_integer() {
    let s = server().await;
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        let r = post(&s, &format!("/v1/chats/{bad}/leave"), "vibe_api_alice", None).await;
        assert_vibe_error(
            &r,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("chatId must be a positive integer, got {bad:?}"),
        );
    }
}

#[tokio::test]
async fn the_rest_of_the_chat_surface() {
    let s = server().await;
    let alice = [("x-api-key", "vibe_api_alice")];
    let r = s.call(Method::GET, "/v1/me", &alice, None).await;
    assert_eq!(r.body["data"]["keyType"], "personal", "{}", r.text);
    assert_eq!(r.body["data"]["portal"]["slug"], "acme");
    assert_eq!(r.body["data"]["user"]["id"], 1);

    let r = s
        .call(
            Method::POST,
            "/v1/chats",
            &alice,
            Some(json!({"title": "New room", "userIds": [2, 4]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["data"]["id"].as_i64().unwrap();
    assert_eq!(r.body["data"]["ownerId"], 1);
    assert_eq!(r.body["data"]["membersCount"], 3);
    assert_eq!(r.body["data"]["dialogId"], format!("chat{id}"));

    let r = s.call(Method::GET, "/v1/chats?limit=1", &alice, None).await;
    assert_eq!(r.body["meta"], json!({"total": 3, "hasMore": true}), "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = s.call(Method::GET, "/v1/chats?limit=1&offset=2", &alice, None).await;
    assert_eq!(r.body["meta"]["hasMore"], false);
    let r = s.call(Method::GET, "/v1/chats?limit=0", &alice, None).await;
    assert_vibe_error(
        &r,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        "limit must be an integer from 1 to 5000",
    );

    let r = s
        .call(
            Method::POST,
            &format!("/v1/chats/{id}/members"),
            &alice,
            Some(json!({"userIds": [3]})),
        )
        .await;
    assert_eq!(r.body["data"], true, "{}", r.text);
    let r = s
        .call(Method::GET, &format!("/v1/chats/{id}/members"), &alice, None)
        .await;
    let ids: Vec<i64> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 4, 3]);
    assert_eq!(r.body["data"][0]["role"], "owner");

    let r = s
        .call(Method::DELETE, &format!("/v1/chats/{id}/members/4"), &alice, None)
        .await;
    assert_eq!(r.body["data"], true, "{}", r.text);
    let r = s
        .call(Method::DELETE, &format!("/v1/chats/{id}/members/4"), &alice, None)
        .await;
    assert_vibe_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BITRIX_ERROR",
        "The specified user is not in the chat",
    );

    let r = s
        .call(
            Method::POST,
            &format!("/v1/chats/chat{id}/messages"),
            &alice,
            Some(json!({"message": "hello"})),
        )
        .await;
    assert!(r.body["data"].as_i64().unwrap() > 0, "{}", r.text);
    let r = s
        .call(
            Method::POST,
            &format!("/v1/chats/{id}/messages"),
            &alice,
            Some(json!({"message": "  "})),
        )
        .await;
    assert_vibe_error(
        &r,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        "message is required and must not be empty",
    );
    let r = s
        .call(
            Method::POST,
            "/v1/chats/10/messages",
            &[("x-api-key", "vibe_api_dave")],
            Some(json!({"message": "hi"})),
        )
        .await;
    assert_vibe_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "BITRIX_ERROR",
        "You don't have access to this chat",
    );

    let auth = [("x-api-key", "vibe_api_alice"), ("content-type", "application/json")];
    let r = s
        .raw(Method::POST, "/v1/chats/10/owner", &auth, b"{oops".to_vec())
        .await;
    assert_eq!(r.body["error"]["code"], "VALIDATION_ERROR", "{}", r.text);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON body"));
    let r = s
        .call(Method::POST, "/v1/chats/10/owner", &alice, Some(json!({})))
        .await;
    assert_vibe_error(
        &r,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        "userId (positive integer) is required",
    );
    let r = s.call(Method::GET, "/v1/nothing-here", &alice, None).await;
    assert_vibe_error(&r, StatusCode::NOT_FOUND, "NOT_FOUND", "Endpoint not found");
}

#[tokio::test]
async fn openapi_marks_the_extensions() {
    let s = server().await;
    let r = s.call(Method::GET, "/openapi/vibecode.json", &[], None).await;
    let paths = &r.body["paths"];
    assert!(paths["/v1/chats/{chatId}/leave"]["post"]["x-confab-extension"].is_null());
    assert_eq!(paths["/v1/chats/{chatId}/owner"]["post"]["x-confab-extension"], true);
    assert_eq!(paths["/v1/me"]["get"]["x-confab-extension"], true);
}
