#![allow(clippy::unwrap_used)]
//! The Bitrix24 REST face over HTTP: wire conventions, every error row of
//! seed 001 and of the current imopenlines.crm.chat.user.delete page, the
//! system errors, limits, batch and the v2 bot API.

mod common;

use common::*;
use confab_faces::admin::world::CredentialSpec;
use confab_faces::limits::BucketConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn world() -> confab_faces::admin::world::World {
    let expired = CredentialSpec {
        kind: "bitrix_oauth".into(),
        secret: Some("tok-expired".into()),
        user: Some(1),
        app: Some("app.bots".into()),
        scopes: vec!["imbot".into(), "im".into()],
        expires_at: Some(1000),
        expires_in: None,
        label: None,
    };
    let all = ["im", "imbot", "imopenlines"];
    let mut t = Tenant::new("portal")
        .user(1, "Alice Owner")
        .user(2, "Bob")
        .user(3, "Carol")
        .user(4, "Dave")
        .inactive_user(5, "Erin")
        .user(6, "Frank")
        .app(1, "app.bots")
        .app(2, "app.other")
        .app(3, "app.empty")
        .bot(100, "app.bots", "Helper")
        .bot(101, "app.bots", "Second")
        .bot(200, "app.other", "Foreign")
        .group(10, 1, &[2, 3, 100, 101, 200])
        .group(11, 100, &[1, 101])
        .dm(12, 1, 2)
        .open_line(13, 1, &[4, 2, 5, 100], "lead", 1205)
        .open_line(14, 1, &[4, 3], "lead", 1205)
        .open_line(15, 1, &[2], "deal", 7)
        .group(16, 1, &[2])
        .credential("bitrix_webhook", "hookalice", Some(1), None, &all)
        .credential("bitrix_webhook", "hookfrank", Some(6), None, &all)
        .credential("bitrix_webhook", "hookimonly", Some(1), None, &["im"])
        .credential("bitrix_oauth", "tok-bots", Some(1), Some("app.bots"), &all)
        .credential("bitrix_oauth", "tok-other", Some(1), Some("app.other"), &all)
        .credential("bitrix_oauth", "tok-empty", Some(1), Some("app.empty"), &all)
        .credential_spec(expired);
    t = t.credential("vibecode_personal", "vibe_api_bob", Some(2), None, &["im"]);
    t.world()
}

async fn server() -> TestServer {
    TestServer::with_world(world()).await
}

/// A JSON call with an OAuth token in the body.
async fn oauth(s: &TestServer, method: &str, token: &str, mut params: Value) -> Reply {
    params["auth"] = json!(token);
    s.call(Method::POST, &format!("/rest/{method}"), &[], Some(params))
        .await
}

async fn hook(s: &TestServer, code: &str, method: &str, params: Value) -> Reply {
    let user = match code {
        "hookfrank" => 6,
        _ => 1,
    };
    s.call(
        Method::POST,
        &format!("/rest/{user}/{code}/{method}.json"),
        &[],
        Some(params),
    )
    .await
}

fn assert_ok(r: &Reply) -> &Value {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json");
    let t = &r.body["time"];
    for f in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating_reset_at",
        "operating",
    ] {
        assert!(!t[f].is_null(), "time.{f} missing: {}", r.text);
    }
    assert!(t["date_start"].as_str().unwrap().ends_with("+00:00"));
    &r.body["result"]
}

fn assert_err(r: &Reply, status: u16, code: &str, description: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.body,
        json!({"error": code, "error_description": description}),
        "{}",
        r.text
    );
}

// ---- imbot.chat.leave: seed 001, every row ----

#[tokio::test]
async fn imbot_chat_leave_succeeds_and_defaults_to_the_first_bot() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 10, "BOT_ID": 101}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!(true));
    assert!(!s.members("portal", 10).await.contains(&101));
    // BOT_ID absent: the first bot registered by the app (100).
    let r = oauth(&s, "imbot.chat.leave", "tok-bots", json!({"CHAT_ID": "10"})).await;
    assert_eq!(assert_ok(&r), &json!(true));
    assert_eq!(s.members("portal", 10).await, vec![1, 2, 3, 200]);
}

#[tokio::test]
async fn imbot_chat_leave_by_webhook_with_client_id() {
    let s = server().await;
    let r = hook(
        &s,
        "hookalice",
        "imbot.chat.leave",
        json!({"CHAT_ID": 10, "BOT_ID": 100, "CLIENT_ID": "app.bots"}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!(true));
    let r = hook(
        &s,
        "hookalice",
        "imbot.chat.leave",
        json!({"CHAT_ID": 10, "BOT_ID": 101}),
    )
    .await;
    assert_err(&r, 403, "ACCESS_DENIED", "Access denied! Client ID not specified");
}

#[tokio::test]
async fn imbot_chat_leave_chat_id_empty() {
    let s = server().await;
    let r = oauth(&s, "imbot.chat.leave", "tok-bots", json!({"BOT_ID": 100})).await;
    assert_err(&r, 400, "CHAT_ID_EMPTY", "Chat ID can't be empty");
}

#[tokio::test]
async fn imbot_chat_leave_access_error_action_unavailable() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 12, "BOT_ID": 100}),
    )
    .await;
    assert_err(&r, 403, "ACCESS_ERROR", "Action unavailable");
}

#[tokio::test]
async fn imbot_chat_leave_access_error_forbidden_to_delete() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 13, "BOT_ID": 100}),
    )
    .await;
    assert_err(&r, 403, "ACCESS_ERROR", "It is forbidden to delete users of this chat");
    assert!(s.members("portal", 13).await.contains(&100));
}

#[tokio::test]
async fn imbot_chat_leave_access_error_owner_forbidden() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 11, "BOT_ID": 100}),
    )
    .await;
    assert_err(&r, 403, "ACCESS_ERROR", "LEAVE_OWNER_FORBIDDEN");
    assert!(s.members("portal", 11).await.contains(&100));
}

#[tokio::test]
async fn imbot_chat_leave_wrong_request_not_a_member() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 16, "BOT_ID": 100}),
    )
    .await;
    assert_err(
        &r,
        400,
        "WRONG_REQUEST",
        "You don't have access or user isn't member in chat",
    );
    // A second leave fails the same way.
    assert_ok(
        &oauth(
            &s,
            "imbot.chat.leave",
            "tok-bots",
            json!({"CHAT_ID": 10, "BOT_ID": 101}),
        )
        .await,
    );
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 10, "BOT_ID": 101}),
    )
    .await;
    assert_err(
        &r,
        400,
        "WRONG_REQUEST",
        "You don't have access or user isn't member in chat",
    );
}

#[tokio::test]
async fn imbot_chat_leave_bot_id_error() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 10, "BOT_ID": 999}),
    )
    .await;
    assert_err(&r, 400, "BOT_ID_ERROR", "Bot not found");
    let r = oauth(&s, "imbot.chat.leave", "tok-empty", json!({"CHAT_ID": 10})).await;
    assert_err(&r, 400, "BOT_ID_ERROR", "Bot not found");
}

#[tokio::test]
async fn imbot_chat_leave_app_id_error() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 10, "BOT_ID": 200}),
    )
    .await;
    assert_err(&r, 400, "APP_ID_ERROR", "Bot was installed by another rest application");
    assert!(s.members("portal", 10).await.contains(&200));
}

// ---- imopenlines.crm.chat.user.delete: current docs, every row ----

#[tokio::test]
async fn crm_user_delete_with_and_without_chat_id() {
    let s = server().await;
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 2, "CHAT_ID": 13}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!(13), "the chat id, as an integer");
    assert!(!s.members("portal", 13).await.contains(&2));
    // CHAT_ID absent: the entity's last chat (14).
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY": "1205", "USER_ID": 3}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!(14));
    assert_eq!(s.members("portal", 14).await, vec![1, 4]);
    // No chat for the entity and no CHAT_ID: 0.
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 9999, "USER_ID": 3}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!(0));
}

#[tokio::test]
async fn crm_user_delete_access_denied() {
    let s = server().await;
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "spaceship", "CRM_ENTITY": 1205, "USER_ID": 2}),
    )
    .await;
    assert_err(
        &r,
        403,
        "ACCESS_DENIED",
        "Access denied! You don't have access to join user to chat",
    );
}

#[tokio::test]
async fn crm_user_delete_empty_user() {
    let s = server().await;
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205}),
    )
    .await;
    assert_err(&r, 400, "CRM_CHAT_EMPTY_USER", "Empty User ID");
}

#[tokio::test]
async fn crm_user_delete_empty_crm_data() {
    let s = server().await;
    for params in [
        json!({"CRM_ENTITY_TYPE": "lead", "USER_ID": 2}),
        json!({"CRM_ENTITY": 1205, "USER_ID": 2}),
    ] {
        let r = hook(&s, "hookalice", "imopenlines.crm.chat.user.delete", params).await;
        assert_err(&r, 400, "CRM_CHAT_EMPTY_CRM_DATA", "Empty CRM data");
    }
}

#[tokio::test]
async fn crm_user_delete_error_argument() {
    let s = server().await;
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": "abc", "USER_ID": 2}),
    )
    .await;
    assert_err(
        &r,
        400,
        "ERROR_ARGUMENT",
        "The value of an argument CRM_ENTITY has an invalid type",
    );
}

#[tokio::test]
async fn crm_user_delete_chat_not_in_crm() {
    let s = server().await;
    for chat in [15, 999] {
        let r = hook(
            &s,
            "hookalice",
            "imopenlines.crm.chat.user.delete",
            json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 2, "CHAT_ID": chat}),
        )
        .await;
        assert_err(
            &r,
            400,
            "CHAT_NOT_IN_CRM",
            "Chat does not belong to the CRM object being checked",
        );
    }
}

#[tokio::test]
async fn crm_user_delete_permission_denied() {
    let s = server().await;
    let r = hook(
        &s,
        "hookfrank",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 2, "CHAT_ID": 13}),
    )
    .await;
    assert_err(
        &r,
        403,
        "CHAT_DELETE_USER_PERMISSION_DENIED",
        "You don't have access to delete a user from this chat",
    );
    assert!(s.members("portal", 13).await.contains(&2));
}

#[tokio::test]
async fn crm_user_delete_user_not_active() {
    let s = server().await;
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.delete",
        json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 5, "CHAT_ID": 13}),
    )
    .await;
    assert_err(&r, 400, "CRM_CHAT_USER_NOT_ACTIVE", "User not active");
}

#[tokio::test]
async fn crm_user_delete_wrong_request_not_in_chat() {
    let s = server().await;
    let params = json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 6, "CHAT_ID": 13});
    let r = hook(&s, "hookalice", "imopenlines.crm.chat.user.delete", params).await;
    assert_err(
        &r,
        400,
        "WRONG_REQUEST",
        "You don't have access or user already not in chat",
    );
    let params = json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 2, "CHAT_ID": 13});
    assert_ok(&hook(&s, "hookalice", "imopenlines.crm.chat.user.delete", params.clone()).await);
    let r = hook(&s, "hookalice", "imopenlines.crm.chat.user.delete", params).await;
    assert_err(
        &r,
        400,
        "WRONG_REQUEST",
        "You don't have access or user already not in chat",
    );
}

// ---- system errors ----

#[tokio::test]
async fn system_errors() {
    let s = server().await;
    let r = hook(&s, "hookalice", "no.such.method", json!({})).await;
    assert_err(&r, 404, "ERROR_METHOD_NOT_FOUND", "Method not found");
    let r = s
        .call(Method::POST, "/rest/im.chat.leave", &[], Some(json!({"CHAT_ID": 10})))
        .await;
    assert_err(&r, 401, "NO_AUTH_FOUND", "Wrong authorization data");
    let r = s
        .call(
            Method::POST,
            "/rest/1/wrongcode/im.chat.leave",
            &[],
            Some(json!({"CHAT_ID": 10})),
        )
        .await;
    assert_err(&r, 401, "INVALID_CREDENTIALS", "Invalid request credentials");
    let r = s
        .call(
            Method::POST,
            "/rest/2/hookalice/im.chat.leave",
            &[],
            Some(json!({"CHAT_ID": 10})),
        )
        .await;
    assert_err(&r, 401, "INVALID_CREDENTIALS", "Invalid request credentials");
    let r = oauth(&s, "im.chat.leave", "no-such-token", json!({"CHAT_ID": 10})).await;
    assert_err(&r, 401, "invalid_token", "Unable to get application by token");
    let r = oauth(&s, "im.chat.leave", "tok-expired", json!({"CHAT_ID": 10})).await;
    assert_err(&r, 401, "expired_token", "The access token provided has expired.");
    let r = hook(&s, "hookimonly", "imbot.chat.leave", json!({"CHAT_ID": 10})).await;
    assert_err(
        &r,
        401,
        "insufficient_scope",
        "The request requires higher privileges than provided by the webhook token",
    );
    let r = s
        .call(
            Method::POST,
            "/rest/1/hookimonly/imopenlines.crm.chat.get",
            &[],
            Some(json!({})),
        )
        .await;
    assert_err(
        &r,
        401,
        "insufficient_scope",
        "The request requires higher privileges than provided by the webhook token",
    );
    assert_eq!(s.members("portal", 10).await.len(), 6, "nothing changed");
}

#[tokio::test]
async fn internal_error_when_the_store_fails() {
    let s = server().await;
    s.faults.set_failing(true);
    let r = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": 10})).await;
    assert_err(&r, 500, "INTERNAL_SERVER_ERROR", "Internal server error");
}

#[tokio::test]
async fn query_limit_exceeded_per_portal() {
    let s = TestServer::start_limited(Some(BucketConfig {
        drain_per_sec: 0.01,
        burst: 2.0,
    }))
    .await;
    s.apply(world()).await;
    assert_ok(&hook(&s, "hookalice", "im.chat.user.list", json!({"CHAT_ID": 10})).await);
    assert_ok(&oauth(&s, "im.chat.user.list", "tok-bots", json!({"CHAT_ID": 10})).await);
    let r = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": 10})).await;
    assert_err(&r, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
    // The Vibecode gateway draws from the same portal bucket.
    let v = s
        .call(
            Method::POST,
            "/v1/chats/10/leave",
            &[("x-api-key", "vibe_api_bob")],
            None,
        )
        .await;
    assert_eq!(v.status, StatusCode::TOO_MANY_REQUESTS, "{}", v.text);
    assert_eq!(s.members("portal", 10).await.len(), 6);
}

#[tokio::test]
async fn operation_time_limit_per_method() {
    let s = TestServer::start_bitrix(confab_server::app::HttpLimits::default(), None, Some(1e-9)).await;
    s.apply(world()).await;
    let r = hook(&s, "hookalice", "im.chat.user.list", json!({"CHAT_ID": 10})).await;
    assert!(assert_ok(&r).is_array());
    assert!(
        r.body["time"]["operating"].as_f64().unwrap() > 0.0,
        "operating is accounted: {}",
        r.text
    );
    let r = hook(&s, "hookalice", "im.chat.user.list", json!({"CHAT_ID": 10})).await;
    assert_err(
        &r,
        429,
        "OPERATION_TIME_LIMIT",
        "Method is blocked due to operation time limit.",
    );
    // Other methods are accounted separately.
    assert_ok(&hook(&s, "hookalice", "im.chat.get", json!({})).await);
}

// ---- wire conventions ----

#[tokio::test]
async fn every_encoding_and_url_form() {
    let s = server().await;
    // GET with query, no suffix, mixed-case method name.
    let r = s
        .call(Method::GET, "/rest/1/hookalice/IM.Chat.User.List?CHAT_ID=10", &[], None)
        .await;
    assert_eq!(assert_ok(&r), &json!([1, 2, 3, 100, 101, 200]));
    // Form body with PHP-style keys.
    let h = [("content-type", "application/x-www-form-urlencoded")];
    let r = s
        .raw(
            Method::POST,
            "/rest/1/hookalice/im.chat.add.json",
            &h,
            b"USERS%5B0%5D=2&USERS[1]=3&TITLE=Form+chat".to_vec(),
        )
        .await;
    let id = assert_ok(&r).as_i64().unwrap();
    assert_eq!(s.members("portal", id).await, vec![1, 2, 3]);
    assert_eq!(s.chat("portal", id).await.title, "Form chat");
    // Multipart.
    let form = reqwest::multipart::Form::new()
        .text("CHAT_ID", id.to_string())
        .text("USERS[0]", "4");
    let res = s
        .client
        .post(s.url("/rest/1/hookalice/im.chat.user.add"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let r = TestServer::reply(res).await;
    assert_eq!(assert_ok(&r), &json!(true));
    assert_eq!(s.members("portal", id).await, vec![1, 2, 3, 4]);
    // OAuth: auth in the query, in the body, as Bearer, and the double slash.
    let r = s
        .call(
            Method::GET,
            &format!("/rest/im.chat.user.list?auth=tok-bots&CHAT_ID={id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(assert_ok(&r).as_array().unwrap().len(), 4);
    let r = s
        .call(
            Method::POST,
            "/rest//im.chat.user.list",
            &[],
            Some(json!({"CHAT_ID": id, "auth": "tok-bots"})),
        )
        .await;
    assert_eq!(assert_ok(&r).as_array().unwrap().len(), 4);
    let r = s
        .call(
            Method::POST,
            "/rest/im.chat.user.list.json",
            &[("authorization", "Bearer tok-bots")],
            Some(json!({"CHAT_ID": id})),
        )
        .await;
    assert_eq!(assert_ok(&r).as_array().unwrap().len(), 4);
    // Numbers as strings; bx24_* extras ignored.
    let r = s
        .call(
            Method::POST,
            "/rest/1/hookalice/im.chat.user.list?bx24_request=1",
            &[],
            Some(json!({"CHAT_ID": id.to_string()})),
        )
        .await;
    assert_eq!(assert_ok(&r).as_array().unwrap().len(), 4);
    let h = [("content-type", "application/json")];
    let r = s
        .raw(Method::POST, "/rest/1/hookalice/im.chat.leave", &h, b"{oops".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["error"], "INVALID_REQUEST");
}

// ---- the other methods ----

#[tokio::test]
async fn bots_chats_and_crm_methods() {
    let s = server().await;
    let handler = "https://example.invalid/handler";
    let r = oauth(&s, "imbot.register", "tok-bots", json!({"CODE": "newbot", "TYPE": "B", "EVENT_HANDLER": handler, "PROPERTIES": {"NAME": "New", "LAST_NAME": "Bot"}})).await;
    let bot = assert_ok(&r).as_i64().unwrap();
    let r = oauth(
        &s,
        "imbot.register",
        "tok-bots",
        json!({"CODE": "newbot", "EVENT_HANDLER": handler, "PROPERTIES": {"NAME": "Dup"}}),
    )
    .await;
    assert_err(&r, 400, "WRONG_REQUEST", "Bot can't be created");
    let r = oauth(
        &s,
        "imbot.register",
        "tok-bots",
        json!({"EVENT_HANDLER": handler, "PROPERTIES": {"NAME": "X"}}),
    )
    .await;
    assert_err(&r, 400, "CODE_ERROR", "Bot code isn't specified");
    let r = oauth(
        &s,
        "imbot.register",
        "tok-bots",
        json!({"CODE": "x", "EVENT_HANDLER": handler, "PROPERTIES": {}}),
    )
    .await;
    assert_err(&r, 400, "NAME_ERROR", "Bot name isn't specified");
    let r = oauth(
        &s,
        "imbot.register",
        "tok-bots",
        json!({"CODE": "y", "PROPERTIES": {"NAME": "Y"}}),
    )
    .await;
    assert_err(
        &r,
        400,
        "EVENT_MESSAGE_ADD_ERROR",
        "Handler for \"message_add\" isn't specified",
    );
    let r = oauth(&s, "imbot.bot.list", "tok-bots", json!({})).await;
    assert_eq!(assert_ok(&r)[bot.to_string()]["CODE"], "newbot");
    assert_eq!(r.body["result"][bot.to_string()]["NAME"], "New Bot");

    let r = oauth(
        &s,
        "imbot.chat.add",
        "tok-bots",
        json!({"BOT_ID": bot, "TITLE": "Bot room", "USERS": [2, 3], "ENTITY_TYPE": "TICKET", "ENTITY_ID": "T-1"}),
    )
    .await;
    let chat = assert_ok(&r).as_i64().unwrap();
    assert_eq!(s.chat("portal", chat).await.owner_id, Some(confab_core::UserId(bot)));
    let r = oauth(
        &s,
        "imbot.chat.get",
        "tok-bots",
        json!({"ENTITY_TYPE": "TICKET", "ENTITY_ID": "T-1"}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!({"ID": chat}));
    let r = oauth(
        &s,
        "imbot.chat.user.add",
        "tok-bots",
        json!({"CHAT_ID": chat, "BOT_ID": bot, "USERS": [4]}),
    )
    .await;
    assert_ok(&r);
    let r = oauth(
        &s,
        "imbot.chat.user.add",
        "tok-bots",
        json!({"CHAT_ID": chat, "BOT_ID": bot, "USERS": [4]}),
    )
    .await;
    assert_err(
        &r,
        400,
        "WRONG_REQUEST",
        "You don't have access or user already member in chat",
    );
    let r = oauth(
        &s,
        "imbot.chat.user.list",
        "tok-bots",
        json!({"CHAT_ID": chat, "BOT_ID": bot}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!([bot, 2, 3, 4]));
    let r = oauth(
        &s,
        "imbot.chat.user.delete",
        "tok-bots",
        json!({"CHAT_ID": chat, "BOT_ID": bot, "USER_ID": 4}),
    )
    .await;
    assert_ok(&r);
    let r = oauth(
        &s,
        "imbot.chat.user.delete",
        "tok-bots",
        json!({"CHAT_ID": chat, "BOT_ID": bot}),
    )
    .await;
    assert_err(&r, 400, "USER_ID_EMPTY", "User ID can't be empty");
    let r = oauth(
        &s,
        "imbot.message.add",
        "tok-bots",
        json!({"BOT_ID": bot, "DIALOG_ID": format!("chat{chat}"), "MESSAGE": "hi"}),
    )
    .await;
    assert!(assert_ok(&r).as_i64().unwrap() > 0);
    let r = oauth(
        &s,
        "imbot.message.add",
        "tok-bots",
        json!({"BOT_ID": bot, "DIALOG_ID": format!("chat{chat}")}),
    )
    .await;
    assert_err(&r, 400, "MESSAGE_EMPTY", "Message can't be empty");
    // The owner bot cannot leave; after handing over it can.
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": chat, "BOT_ID": bot}),
    )
    .await;
    assert_err(&r, 403, "ACCESS_ERROR", "LEAVE_OWNER_FORBIDDEN");
    assert_ok(
        &oauth(
            &s,
            "imbot.chat.setOwner",
            "tok-bots",
            json!({"CHAT_ID": chat, "BOT_ID": bot, "USER_ID": 2}),
        )
        .await,
    );
    assert_ok(
        &oauth(
            &s,
            "imbot.chat.leave",
            "tok-bots",
            json!({"CHAT_ID": chat, "BOT_ID": bot}),
        )
        .await,
    );
    assert_ok(&oauth(&s, "imbot.unregister", "tok-bots", json!({"BOT_ID": bot})).await);
    let r = oauth(&s, "imbot.unregister", "tok-bots", json!({"BOT_ID": bot})).await;
    assert_err(&r, 400, "BOT_ID_ERROR", "Bot not found");

    // im.chat.add with the documented CRM binding; crm.chat.get/getLastId find it.
    let r = hook(
        &s,
        "hookalice",
        "im.chat.add",
        json!({"USERS": [2], "TITLE": "Deal chat", "ENTITY_TYPE": "CRM", "ENTITY_ID": "DEAL|7"}),
    )
    .await;
    let deal_chat = assert_ok(&r).as_i64().unwrap();
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.getLastId",
        json!({"CRM_ENTITY_TYPE": "deal", "CRM_ENTITY": 7}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!(deal_chat));
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.get",
        json!({"CRM_ENTITY_TYPE": "deal", "CRM_ENTITY": 7}),
    )
    .await;
    let ids: Vec<&str> = assert_ok(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CHAT_ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["15".to_string(), deal_chat.to_string()]);
    let r = hook(
        &s,
        "hookalice",
        "im.chat.get",
        json!({"ENTITY_TYPE": "CRM", "ENTITY_ID": "DEAL|7"}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!({"ID": deal_chat}));
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.getLastId",
        json!({"CRM_ENTITY_TYPE": "deal", "CRM_ENTITY": 8}),
    )
    .await;
    assert_err(&r, 400, "CRM_CHAT_EMPTY_CRM_DATA", "Could not find CRM object");
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.add",
        json!({"CRM_ENTITY_TYPE": "deal", "CRM_ENTITY": 7, "USER_ID": 3}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!(deal_chat));
    let r = hook(
        &s,
        "hookalice",
        "imopenlines.crm.chat.user.add",
        json!({"CRM_ENTITY_TYPE": "deal", "CRM_ENTITY": 7, "USER_ID": 3}),
    )
    .await;
    assert_err(
        &r,
        400,
        "WRONG_REQUEST",
        "You don't have access or user already member in chat",
    );

    // im.* as a user.
    let r = hook(
        &s,
        "hookalice",
        "im.chat.setOwner",
        json!({"DIALOG_ID": format!("chat{deal_chat}"), "USER_ID": 2}),
    )
    .await;
    assert_ok(&r);
    let r = hook(
        &s,
        "hookalice",
        "im.chat.user.delete",
        json!({"CHAT_ID": deal_chat, "USER_ID": 3}),
    )
    .await;
    assert_err(
        &r,
        403,
        "ACCESS_DENIED_KICK",
        "Insufficient rights to exclude participants from the chat",
    );
    let r = hook(
        &s,
        "hookalice",
        "im.message.add",
        json!({"DIALOG_ID": format!("chat{deal_chat}"), "MESSAGE": "hello"}),
    )
    .await;
    assert!(assert_ok(&r).as_i64().is_some());
    let r = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": deal_chat})).await;
    assert_eq!(assert_ok(&r), &json!(true));
    let r = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": deal_chat})).await;
    assert_err(&r, 403, "ACCESS_DENIED_KICK", "Access denied to kick user from chat");
}

#[tokio::test]
async fn batch_with_references_halt_and_limits() {
    let s = server().await;
    let cmd = json!({
        "chat": "im.chat.add?TITLE=Batch&USERS[0]=2&USERS[1]=3",
        "members": "im.chat.user.list?CHAT_ID=$result[chat]",
        "bad": "im.chat.leave?CHAT_ID=999999",
        "after": "im.chat.user.list?CHAT_ID=$result[chat]",
    });
    let r = hook(&s, "hookalice", "batch", json!({"halt": 0, "cmd": cmd})).await;
    let res = assert_ok(&r);
    let chat = res["result"]["chat"].as_i64().unwrap();
    assert_eq!(res["result"]["members"], json!([1, 2, 3]));
    assert_eq!(
        res["result_error"]["bad"],
        json!({"error": "CHAT_NOT_FOUND", "error_description": "Chat not found"})
    );
    assert!(res["result"]["after"].is_array(), "halt=0 goes on");
    assert!(res["result_time"]["chat"]["start"].is_number());
    assert_eq!(s.members("portal", chat).await, vec![1, 2, 3]);

    let r = hook(
        &s,
        "hookalice",
        "batch",
        json!({"halt": true, "cmd": ["im.chat.leave?CHAT_ID=999999", "im.chat.user.list?CHAT_ID=10"]}),
    )
    .await;
    let res = assert_ok(&r);
    assert_eq!(res["result"], json!([]), "halt stops at the first error");
    assert_eq!(res["result_error"]["0"]["error"], "CHAT_NOT_FOUND");

    let r = hook(
        &s,
        "hookalice",
        "batch",
        json!({"cmd": ["im.chat.user.list?CHAT_ID=10", "batch?cmd[a]=x", "imbot.chat.leave?CHAT_ID=10"]}),
    )
    .await;
    let res = assert_ok(&r);
    // PHP's json_encode: keys 0..n in order make a JSON array.
    assert_eq!(res["result"], json!([[1, 2, 3, 100, 101, 200]]));
    assert_eq!(res["result_error"]["1"]["error"], "ERROR_BATCH_METHOD_NOT_ALLOWED");
    assert_eq!(res["result_error"]["2"]["error"], "ACCESS_DENIED");

    let many: Vec<String> = (0..52).map(|_| "im.chat.user.list?CHAT_ID=10".to_string()).collect();
    let r = hook(&s, "hookalice", "batch", json!({"cmd": many})).await;
    let res = assert_ok(&r);
    assert_eq!(res["result"].as_array().unwrap().len(), 50);
    assert_eq!(res["result_error"]["50"]["error"], "ERROR_BATCH_LENGTH_EXCEEDED");
    assert_eq!(res["result_error"]["51"]["error"], "ERROR_BATCH_LENGTH_EXCEEDED");

    // Scopes apply inside a batch.
    let r = hook(
        &s,
        "hookimonly",
        "batch",
        json!({"cmd": {"x": "imbot.chat.leave?CHAT_ID=10"}}),
    )
    .await;
    assert_eq!(assert_ok(&r)["result_error"]["x"]["error"], "insufficient_scope");
}

#[tokio::test]
async fn imbot_v2_chat_methods() {
    let s = server().await;
    let r = oauth(
        &s,
        "imbot.v2.Chat.add",
        "tok-bots",
        json!({"botId": 100, "title": "v2", "userIds": [2]}),
    )
    .await;
    let chat = assert_ok(&r)["chatId"].as_i64().unwrap();
    let dialog = format!("chat{chat}");
    let r = oauth(
        &s,
        "imbot.v2.Chat.User.add",
        "tok-bots",
        json!({"botId": 100, "dialogId": dialog, "userIds": [3, 101]}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!({"result": true}));
    let r = oauth(
        &s,
        "imbot.v2.Chat.User.list",
        "tok-bots",
        json!({"botId": 100, "dialogId": dialog}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!({"userIds": [100, 2, 3, 101]}));
    let r = oauth(
        &s,
        "imbot.v2.Chat.leave",
        "tok-bots",
        json!({"botId": 101, "dialogId": dialog}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!({"result": true}));
    let r = oauth(
        &s,
        "imbot.v2.Chat.leave",
        "tok-bots",
        json!({"botId": 101, "dialogId": dialog}),
    )
    .await;
    assert_err(&r, 403, "ACCESS_DENIED", "Bot is not a participant in the chat");
    let r = oauth(&s, "imbot.v2.Chat.leave", "tok-bots", json!({"dialogId": dialog})).await;
    assert_err(&r, 400, "BOT_ID_REQUIRED", "Parameter botId is required");
    let r = oauth(
        &s,
        "imbot.v2.Chat.leave",
        "tok-bots",
        json!({"botId": 200, "dialogId": dialog}),
    )
    .await;
    assert_err(&r, 400, "BOT_OWNERSHIP_ERROR", "Bot belongs to another application");
    let r = oauth(
        &s,
        "imbot.v2.Chat.leave",
        "tok-bots",
        json!({"botId": 999, "dialogId": dialog}),
    )
    .await;
    assert_err(&r, 400, "BOT_NOT_FOUND", "Bot not found");
    let r = oauth(
        &s,
        "imbot.v2.Chat.setOwner",
        "tok-bots",
        json!({"botId": 100, "dialogId": dialog, "userId": 2}),
    )
    .await;
    assert_eq!(assert_ok(&r), &json!({"result": true}));
    let r = oauth(
        &s,
        "imbot.v2.Chat.get",
        "tok-bots",
        json!({"botId": 100, "dialogId": dialog}),
    )
    .await;
    assert_eq!(assert_ok(&r)["chat"]["ownerId"], 2);
    let r = oauth(&s, "imbot.v2.Bot.list", "tok-bots", json!({})).await;
    assert_eq!(assert_ok(&r)["bots"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn vibecode_and_im_chat_leave_follow_the_same_policy() {
    let s = server().await;
    // The owner leaves through Bitrix: she stays owner, exactly as through Vibecode.
    let r = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": 10})).await;
    assert_eq!(assert_ok(&r), &json!(true));
    assert_eq!(s.chat("portal", 10).await.owner_id, Some(confab_core::UserId(1)));
    let v = s
        .call(
            Method::POST,
            "/v1/chats/10/leave",
            &[("x-api-key", "vibe_api_bob")],
            None,
        )
        .await;
    assert_eq!(v.body, json!({"success": true, "data": true}));
    assert_eq!(s.members("portal", 10).await, vec![3, 100, 101, 200]);
    // The same refusal, in each face's words.
    let b = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": 12})).await;
    let v = s
        .call(
            Method::POST,
            "/v1/chats/12/leave",
            &[("x-api-key", "vibe_api_bob")],
            None,
        )
        .await;
    assert_err(&b, 403, "ACCESS_ERROR", "Action unavailable");
    assert_eq!(
        v.body["error"],
        json!({"code": "BITRIX_ERROR", "message": "Action unavailable"})
    );
    let b = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": 10})).await;
    let v = s
        .call(
            Method::POST,
            "/v1/chats/10/leave",
            &[("x-api-key", "vibe_api_bob")],
            None,
        )
        .await;
    assert_err(&b, 403, "ACCESS_DENIED_KICK", "Access denied to kick user from chat");
    assert_eq!(v.body["error"]["message"], b.body["error_description"]);
}

#[tokio::test]
async fn review_fixes_in_the_bitrix_face() {
    let s = TestServer::start_bitrix(confab_server::app::HttpLimits::default(), None, Some(1e-9)).await;
    s.apply(world()).await;
    // An unregistered bot is "not found", and BOT_ID absent skips it.
    assert_ok(&oauth(&s, "imbot.unregister", "tok-bots", json!({"BOT_ID": 100})).await);
    let r = oauth(
        &s,
        "imbot.chat.leave",
        "tok-bots",
        json!({"CHAT_ID": 10, "BOT_ID": 100}),
    )
    .await;
    assert_err(&r, 400, "BOT_ID_ERROR", "Bot not found");
    let r = oauth(&s, "imbot.chat.leave", "tok-bots", json!({"CHAT_ID": 10})).await;
    assert_ok(&r);
    assert!(
        !s.members("portal", 10).await.contains(&101),
        "the first live bot (101) left"
    );
    // Open-line chats cannot be left through the messenger.
    let r = hook(&s, "hookalice", "im.chat.leave", json!({"CHAT_ID": 13})).await;
    assert_err(&r, 403, "ACCESS_ERROR", "It is forbidden to delete users of this chat");
    // CRM add needs access to the chat.
    let r = hook(
        &s,
        "hookfrank",
        "imopenlines.crm.chat.user.add",
        json!({"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 6, "CHAT_ID": 13}),
    )
    .await;
    assert_err(
        &r,
        403,
        "ACCESS_DENIED",
        "Access denied! You don't have access to join user to chat",
    );
    // The operating limit counts the commands inside a batch, not the batch.
    assert_ok(&hook(&s, "hookalice", "im.chat.user.list", json!({"CHAT_ID": 10})).await);
    let r = hook(
        &s,
        "hookalice",
        "batch",
        json!({"cmd": {"a": "im.chat.user.list?CHAT_ID=10", "b": "im.chat.get?ENTITY_TYPE=X&ENTITY_ID=1"}}),
    )
    .await;
    let res = assert_ok(&r);
    assert_eq!(res["result_error"]["a"]["error"], "OPERATION_TIME_LIMIT", "{}", r.text);
    assert!(
        res["result"]["b"].is_null() && res["result_error"]["b"].is_null(),
        "{}",
        r.text
    );
    let r = hook(
        &s,
        "hookalice",
        "batch",
        json!({"cmd": {"b": "im.chat.get?ENTITY_TYPE=X&ENTITY_ID=1"}}),
    )
    .await;
    assert_eq!(
        assert_ok(&r)["result_error"]["b"]["error"],
        "OPERATION_TIME_LIMIT",
        "nested calls are counted: {}",
        r.text
    );
}

#[tokio::test]
async fn remaining_bitrix_error_paths() {
    let s = server().await;
    let h = "https://example.invalid/h";
    let r = oauth(
        &s,
        "imbot.register",
        "tok-bots",
        json!({"CODE": "w", "EVENT_HANDLER": "ftp://x", "PROPERTIES": {"NAME": "W"}}),
    )
    .await;
    assert_err(&r, 400, "EVENT_MESSAGE_ADD_ERROR", "Wrong handler URL");
    // app.bots already has 2 bots: three more reach the maximum of 5.
    for i in 0..3 {
        assert_ok(
            &oauth(
                &s,
                "imbot.register",
                "tok-bots",
                json!({"CODE": format!("m{i}"), "EVENT_HANDLER": h, "PROPERTIES": {"NAME": "M"}}),
            )
            .await,
        );
    }
    let r = oauth(
        &s,
        "imbot.register",
        "tok-bots",
        json!({"CODE": "m9", "EVENT_HANDLER": h, "PROPERTIES": {"NAME": "M"}}),
    )
    .await;
    assert_err(
        &r,
        400,
        "MAX_COUNT_ERROR",
        "Has reached the maximum number of bots for application (max: 5)",
    );
    let r = hook(&s, "hookalice", "im.message.add", json!({"MESSAGE": "x"})).await;
    assert_err(&r, 400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty");
    let r = hook(&s, "hookalice", "im.chat.add", json!({"USERS": "abc"})).await;
    assert_err(&r, 400, "INVALID_FORMAT", "Parameter USERS has wrong type");
    let r = oauth(
        &s,
        "event.bind",
        "tok-bots",
        json!({"event": "ONIMBOTJOINCHAT", "handler": "not-a-url"}),
    )
    .await;
    assert_err(&r, 400, "WRONG_HANDLER_URL", "Wrong handler URL");
}
