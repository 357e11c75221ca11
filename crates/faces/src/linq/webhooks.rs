//! Linq webhooks: `/v3/webhook-subscriptions` CRUD, `/v3/webhook-events`,
//! and the delivery format — the documented envelope, signed both ways:
//! legacy `X-Webhook-Timestamp` + `X-Webhook-Signature` (hex HMAC-SHA256
//! over `"{ts}.{body}"` keyed with the signing secret as given) and
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64>` over `"{id}.{ts}.{body}"`, keyed with the base64-decoded
//! part of the `whsec_` secret).

use super::error::LinqError;
use super::{authenticate, new_trace, read, write};
use crate::common::{iso8601, parse_json};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_delivery::{Rendered, WebhookFormat};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

pub const EVENT_TYPES: &[&str] = &[
    "message.sent",
    "message.received",
    "message.read",
    "message.delivered",
    "message.failed",
    "message.edited",
    "message.opt_out",
    "message.opt_in",
    "reaction.added",
    "reaction.removed",
    "participant.added",
    "participant.removed",
    "chat.created",
    "chat.group_name_updated",
    "chat.group_icon_updated",
    "chat.group_name_update_failed",
    "chat.group_icon_update_failed",
    "chat.typing_indicator.started",
    "chat.typing_indicator.stopped",
    "phone_number.status_updated",
    "call.initiated",
    "call.ringing",
    "call.answered",
    "call.ended",
    "call.failed",
    "call.declined",
    "call.no_answer",
];

pub const DEFAULT_WEBHOOK_VERSION: &str = "2026-02-03";

/// The core kinds behind a Linq event type (others are never emitted).
fn kinds_of(event_type: &str) -> &'static [EventKind] {
    match event_type {
        "participant.added" => &[EventKind::Joined],
        "participant.removed" => &[EventKind::Left, EventKind::Removed],
        "chat.created" => &[EventKind::ChatCreated],
        "message.sent" | "message.received" => &[EventKind::MessageSent],
        _ => &[],
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v3/webhook-events", get(events))
        .route("/v3/webhook-subscriptions", get(list).post(create))
        .route(
            "/v3/webhook-subscriptions/{id}",
            get(retrieve).put(update).delete(remove),
        )
}

async fn events() -> Response {
    Json(json!({"doc_url": "https://docs.linqapp.com/guides/webhooks/events", "events": EVENT_TYPES})).into_response()
}

fn finish(trace: &str, r: Result<Response, LinqError>) -> Response {
    match r {
        Ok(x) => x,
        Err(mut e) => {
            e.trace_id = trace.to_string();
            e.into_response()
        }
    }
}

fn sub_json(s: &Subscription, secret: bool) -> Value {
    let mut v = json!({
        "id": s.id,
        "created_at": iso8601(s.created_at),
        "updated_at": iso8601(s.updated_at),
        "is_active": s.active,
        "subscribed_events": s.events,
        "target_url": s.target_url,
        "phone_numbers": if s.lines.is_empty() { Value::Null } else { json!(s.lines) },
    });
    if secret {
        v["signing_secret"] = json!(s.secret);
    }
    v
}

#[derive(Deserialize)]
struct SubIn {
    target_url: Option<String>,
    subscribed_events: Option<Vec<String>>,
    phone_numbers: Option<Vec<String>>,
    is_active: Option<bool>,
}

fn check_events(events: &[String]) -> Result<Vec<EventKind>, LinqError> {
    if events.is_empty() {
        return Err(LinqError::missing("subscribed_events"));
    }
    let mut kinds = Vec::new();
    for e in events {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(LinqError::param(format!("unknown event type {e:?}")));
        }
        for k in kinds_of(e) {
            if !kinds.contains(k) {
                kinds.push(*k);
            }
        }
    }
    Ok(kinds)
}

fn check_url(url: &str) -> Result<(), LinqError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(LinqError::param(format!(
            "target_url must be an http(s) URL, got {url:?}"
        )))
    }
}

async fn create(State(st): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let b: SubIn = parse_json(&bytes).map_err(LinqError::body)?;
        let url = b
            .target_url
            .filter(|u| !u.is_empty())
            .ok_or_else(|| LinqError::missing("target_url"))?;
        check_url(&url)?;
        let events = b.subscribed_events.unwrap_or_default();
        let kinds = check_events(&events)?;
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
        );
        let sub = write(&st, move |tx| {
            if tx.subscriptions(tenant.id, "linq")?.iter().any(|s| s.target_url == url) {
                return Err(CoreError::Invalid(
                    "a subscription for this target_url already exists".into(),
                ));
            }
            let now = tx.now();
            let sub = Subscription {
                id: uuid::Uuid::new_v4().to_string(),
                tenant_id: tenant.id,
                face: "linq".into(),
                target_url: url,
                events,
                kinds,
                lines: b.phone_numbers.unwrap_or_default(),
                subject_id: None,
                secret,
                extra: "{}".into(),
                active: b.is_active.unwrap_or(true),
                created_at: now,
                updated_at: now,
            };
            tx.insert_subscription(&sub)?;
            Ok(sub)
        })
        .await?;
        Ok((StatusCode::CREATED, Json(sub_json(&sub, true))).into_response())
    }
    .await;
    finish(&trace, r)
}

async fn find(st: &AppState, tenant: TenantId, id: String) -> Result<Subscription, LinqError> {
    let sub = read(st, move |tx| tx.subscription(&id)).await?;
    sub.filter(|s| s.tenant_id == tenant && s.face == "linq")
        .ok_or_else(|| LinqError::new(404, 2001, "Webhook subscription not found"))
}

async fn list(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let subs = read(&st, move |tx| tx.subscriptions(tenant.id, "linq")).await?;
        Ok(Json(json!({"subscriptions": subs.iter().map(|s| sub_json(s, false)).collect::<Vec<_>>()})).into_response())
    }
    .await;
    finish(&trace, r)
}

async fn retrieve(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        Ok(Json(sub_json(&find(&st, tenant.id, id).await?, false)).into_response())
    }
    .await;
    finish(&trace, r)
}

async fn update(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let mut sub = find(&st, tenant.id, id).await?;
        let b: SubIn = parse_json(&bytes).map_err(LinqError::body)?;
        if let Some(url) = b.target_url {
            check_url(&url)?;
            sub.target_url = url;
        }
        if let Some(events) = b.subscribed_events {
            sub.kinds = check_events(&events)?;
            sub.events = events;
        }
        if let Some(lines) = b.phone_numbers {
            sub.lines = lines;
        }
        if let Some(a) = b.is_active {
            sub.active = a;
        }
        let saved = sub.clone();
        write(&st, move |tx| tx.update_subscription(&saved)).await?;
        Ok(Json(sub_json(&sub, false)).into_response())
    }
    .await;
    finish(&trace, r)
}

async fn remove(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let sub = find(&st, tenant.id, id).await?;
        write(&st, move |tx| tx.delete_subscription(tenant.id, &sub.id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&trace, r)
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The two signature schemes' headers for `body` sent at `ts`.
pub fn signature_headers(secret: &str, event_id: &str, ts: i64, body: &[u8]) -> Vec<(String, String)> {
    let ts_s = ts.to_string();
    let legacy = hmac_hex(secret.as_bytes(), &[ts_s.as_bytes(), b".", body]);
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let standard = hmac_b64(&key, &[event_id.as_bytes(), b".", ts_s.as_bytes(), b".", body]);
    vec![
        ("X-Webhook-Timestamp".into(), ts_s.clone()),
        ("X-Webhook-Signature".into(), legacy),
        ("webhook-id".into(), event_id.to_string()),
        ("webhook-timestamp".into(), ts_s),
        ("webhook-signature".into(), format!("v1,{standard}")),
    ]
}

fn iso_ms(ts: i64) -> String {
    iso8601(ts).replace('Z', ".000Z")
}

pub struct LinqFormat;

impl WebhookFormat for LinqFormat {
    fn render(
        &self,
        tx: &mut dyn StoreTx,
        sub: &Subscription,
        event: &Event,
        _attempt: i64,
        now_ms: i64,
    ) -> Result<Option<Rendered>, CoreError> {
        let e = &event.event;
        let Some(scene) = crate::imessage::Scene::load(tx, e)? else {
            return Ok(None);
        };
        let from_me = scene.by_line(e);
        let crate::imessage::Scene {
            chat,
            partner: tenant,
            message,
            ..
        } = scene;
        let (event_type, data) = match e.kind {
            EventKind::Joined | EventKind::Left | EventKind::Removed => {
                let Some(uid) = e.subject_id else { return Ok(None) };
                let Some(user) = tx.user(e.tenant_id, uid)? else {
                    return Ok(None);
                };
                let history = tx.membership_history(e.tenant_id, e.chat_id)?;
                let stay = history
                    .iter()
                    .rev()
                    .find(|m| {
                        m.user_id == uid
                            && (m.left_at == Some(e.at) || (e.kind == EventKind::Joined && m.joined_at == e.at))
                    })
                    .cloned()
                    .unwrap_or(Membership {
                        chat_id: chat.id,
                        user_id: uid,
                        role: Role::Member,
                        joined_at: e.at,
                        left_at: None,
                        removed: false,
                    });
                // The participant as it was when the event happened.
                let at_event = Membership {
                    left_at: if e.kind == EventKind::Joined { None } else { Some(e.at) },
                    removed: e.kind == EventKind::Removed,
                    ..stay
                };
                let participant = super::wire::handle_json(&chat, &user, &at_event);
                let handle = user.handle.clone().unwrap_or_default();
                if e.kind == EventKind::Joined {
                    (
                        "participant.added",
                        json!({"handle": handle, "chat_id": chat.uuid.to_string(), "participant": participant, "added_at": iso_ms(e.at)}),
                    )
                } else {
                    (
                        "participant.removed",
                        json!({"handle": handle, "chat_id": chat.uuid.to_string(), "participant": participant, "removed_at": iso_ms(e.at)}),
                    )
                }
            }
            EventKind::ChatCreated => (
                "chat.created",
                json!({"chat_id": chat.uuid.to_string(), "chat": super::wire::chat_json(tx, &chat)?}),
            ),
            EventKind::MessageSent => {
                let t = if from_me { "message.sent" } else { "message.received" };
                let Some(msg) = message else { return Ok(None) };
                let mut m = super::wire::sent_message_json(tx, &chat, &msg)?;
                m["is_from_me"] = json!(from_me);
                (t, json!({"chat_id": chat.uuid.to_string(), "message": m}))
            }
            EventKind::OwnerChanged | EventKind::BotDeleted => return Ok(None),
        };
        if !sub.events.iter().any(|s| s == event_type) {
            return Ok(None);
        }
        let version = sub
            .target_url
            .split_once("version=")
            .map(|(_, v)| v.split('&').next().unwrap_or(v).to_string())
            .unwrap_or_else(|| DEFAULT_WEBHOOK_VERSION.to_string());
        let event_id = event.uuid.to_string();
        let body = json!({
            "api_version": "v3",
            "webhook_version": version,
            "event_type": event_type,
            "event_id": event_id,
            "created_at": iso_ms(e.at),
            "trace_id": e.trace_id.clone().unwrap_or_else(|| event.uuid.simple().to_string()),
            "partner_id": tenant,
            "data": data,
        })
        .to_string()
        .into_bytes();
        let mut headers = signature_headers(&sub.secret, &event_id, now_ms / 1000, &body);
        headers.push(("X-Webhook-Event".into(), event_type.to_string()));
        headers.push(("X-Webhook-Subscription-ID".into(), sub.id.clone()));
        Ok(Some(Rendered {
            body,
            content_type: "application/json",
            headers,
        }))
    }
}

/// `/openapi/linq.json`: (method, path, summary, confab extension?, success
/// status, success schema or "" for no body).
const ROUTES: &[(&str, &str, &str, bool, u16, &str)] = &[
    (
        "post",
        "/api/partner/v3/chats/{chatId}/leave",
        "Leave a group chat: accepted at once (trace_id), done by a worker, participant.removed when done",
        false,
        202,
        "Accepted",
    ),
    (
        "post",
        "/api/partner/v3/chats",
        "Create a chat (DM or group) from one of your numbers with a first message",
        false,
        201,
        "ChatCreated",
    ),
    (
        "get",
        "/api/partner/v3/chats",
        "List chats (cursor, limit, from, to)",
        false,
        200,
        "ChatPage",
    ),
    (
        "get",
        "/api/partner/v3/chats/{chatId}",
        "Retrieve a chat with every handle (active, left, removed)",
        false,
        200,
        "Chat",
    ),
    (
        "put",
        "/api/partner/v3/chats/{chatId}",
        "Update a group's display name (DM → 409/1006)",
        false,
        200,
        "ChatUpdated",
    ),
    (
        "post",
        "/api/partner/v3/chats/{chatId}/participants",
        "Add a participant (queued)",
        false,
        202,
        "Accepted",
    ),
    (
        "delete",
        "/api/partner/v3/chats/{chatId}/participants",
        "Remove a participant (JSON body {handle}; queued)",
        false,
        202,
        "Accepted",
    ),
    (
        "post",
        "/api/partner/v3/chats/{chatId}/typing",
        "Start typing (DMs)",
        false,
        204,
        "",
    ),
    (
        "delete",
        "/api/partner/v3/chats/{chatId}/typing",
        "Stop typing (DMs)",
        false,
        204,
        "",
    ),
    (
        "post",
        "/api/partner/v3/chats/{chatId}/read",
        "Mark the chat read",
        false,
        204,
        "",
    ),
    (
        "post",
        "/api/partner/v3/chats/{chatId}/messages",
        "Send a message (idempotency_key honoured; 30 per 60 s per pair)",
        false,
        201,
        "MessageSent",
    ),
    (
        "get",
        "/api/partner/v3/chats/{chatId}/messages",
        "List messages (cursor, limit)",
        false,
        200,
        "MessagePage",
    ),
    (
        "get",
        "/api/partner/v3/messages/{messageId}",
        "Retrieve a message",
        false,
        200,
        "Message",
    ),
    (
        "get",
        "/api/partner/v3/phonenumbers",
        "Your numbers",
        false,
        200,
        "PhoneNumbers",
    ),
    (
        "get",
        "/api/partner/v3/phone_numbers",
        "Your numbers",
        false,
        200,
        "PhoneNumbers",
    ),
    (
        "get",
        "/api/partner/v3/webhook-events",
        "Event types",
        false,
        200,
        "EventTypes",
    ),
    (
        "get",
        "/api/partner/v3/webhook-subscriptions",
        "List subscriptions",
        false,
        200,
        "SubscriptionList",
    ),
    (
        "post",
        "/api/partner/v3/webhook-subscriptions",
        "Create a subscription (signing_secret returned once)",
        false,
        201,
        "Subscription",
    ),
    (
        "get",
        "/api/partner/v3/webhook-subscriptions/{id}",
        "Retrieve a subscription",
        false,
        200,
        "Subscription",
    ),
    (
        "put",
        "/api/partner/v3/webhook-subscriptions/{id}",
        "Update a subscription",
        false,
        200,
        "Subscription",
    ),
    (
        "delete",
        "/api/partner/v3/webhook-subscriptions/{id}",
        "Delete a subscription",
        false,
        204,
        "",
    ),
    (
        "get",
        "/api/partner/v3/operations/{traceId}",
        "The outcome of a queued leave/add/remove",
        true,
        200,
        "Operation",
    ),
];

pub fn openapi() -> Value {
    use crate::common::json_response;
    let err = |d: &str| json_response(d, json!({"$ref": "#/components/schemas/Error"}));
    let mut paths = serde_json::Map::new();
    for (method, path, summary, ext, status, schema) in ROUTES {
        let ok = if schema.is_empty() {
            json!({"description": "no content"})
        } else {
            json_response("success", json!({"$ref": format!("#/components/schemas/{schema}")}))
        };
        // Chat 7 of the demo world: a four-person iMessage group.
        let params = crate::common::path_params(path, &[("chatId", "3f1c1a52-2b0e-4c39-9a55-0d7e3a1c0007")]);
        let mut op = json!({"summary": summary, "parameters": params, "security": [{"bearer": []}], "responses": {
            status.to_string(): ok,
            "400": err("1001 missing field, 1002 E.164, 1003 invalid body, 1004 content, 1005 invalid value"),
            "401": err("2004"), "403": err("2005, 2006"), "404": err("2001, 2002"),
            "409": err("1006 DM, 2013 chat unavailable (x-should-retry: false)"), "429": err("1007"),
            "500": err("3006"), "502": err("4001")}});
        if *ext {
            op["x-confab-extension"] = json!(true);
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    json!({"openapi": "3.1.0", "info": {"title": "confab — Linq Partner API v3 face", "version": env!("CARGO_PKG_VERSION")},
           "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas()},
           "paths": paths})
}

fn schemas() -> Value {
    let obj = |required: &[&str], props: Value| json!({"type": "object", "required": required, "properties": props});
    let string = json!({"type": "string"});
    let opt_string = json!({"type": ["string", "null"]});
    let boolean = json!({"type": "boolean"});
    let uuid = json!({"type": "string", "format": "uuid"});
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    json!({
        "Accepted": obj(&["message", "status", "trace_id"], json!({"message": string, "status": {"const": "accepted"}, "trace_id": string})),
        "Handle": obj(&["id", "handle", "joined_at", "service", "is_me", "status"], json!({
            "id": string, "handle": string, "joined_at": string, "service": string, "is_me": boolean,
            "left_at": opt_string, "status": {"enum": ["active", "left", "removed"]}
        })),
        "Chat": obj(&["id", "created_at", "updated_at", "display_name", "handles", "is_archived", "is_group", "service"], json!({
            "id": uuid, "created_at": string, "updated_at": string, "display_name": string,
            "handles": {"type": "array", "items": r("Handle")}, "is_archived": boolean, "is_group": boolean, "service": string
        })),
        "ChatCreated": obj(&["chat"], json!({"chat": r("Chat")})),
        "ChatPage": obj(&["chats", "next_cursor"], json!({"chats": {"type": "array", "items": r("Chat")}, "next_cursor": opt_string})),
        "ChatUpdated": obj(&["chat_id", "status"], json!({"chat_id": uuid, "status": {"const": "accepted"}})),
        "Message": obj(&["id", "chat_id", "created_at", "delivery_status", "is_from_me", "parts", "service"], json!({
            "id": uuid, "chat_id": uuid, "created_at": string, "updated_at": string, "delivery_status": string,
            "is_read": boolean, "is_delivered": boolean, "is_from_me": boolean,
            "parts": {"type": "array", "items": obj(&["type", "value"], json!({"type": string, "value": string}))},
            "sent_at": string, "from_handle": opt_string, "service": string
        })),
        "MessageSent": obj(&["chat_id", "message"], json!({"chat_id": uuid, "message": r("Message")})),
        "MessagePage": obj(&["messages", "next_cursor"], json!({"messages": {"type": "array", "items": r("Message")}, "next_cursor": opt_string})),
        "PhoneNumbers": obj(&["phone_numbers"], json!({"phone_numbers": {"type": "array", "items": obj(
            &["id", "phone_number", "health_status"], json!({"id": string, "phone_number": string, "health_status": string})
        )}})),
        "EventTypes": obj(&["events"], json!({"doc_url": string, "events": {"type": "array", "items": string}})),
        "Subscription": obj(&["id", "created_at", "updated_at", "is_active", "subscribed_events", "target_url"], json!({
            "id": string, "created_at": string, "updated_at": string, "is_active": boolean,
            "subscribed_events": {"type": "array", "items": string}, "target_url": string,
            "phone_numbers": {"type": ["array", "null"], "items": string}, "signing_secret": string
        })),
        "SubscriptionList": obj(&["subscriptions"], json!({"subscriptions": {"type": "array", "items": r("Subscription")}})),
        "Operation": obj(&["trace_id", "kind", "status", "created_at"], json!({
            "trace_id": string, "kind": string, "status": string, "error": opt_string, "chat_id": {"type": ["string", "null"]},
            "handle": opt_string, "created_at": string, "finished_at": opt_string
        })),
        "Error": {"type": "object", "required": ["success", "error", "trace_id"], "properties": {
            "success": {"const": false},
            "error": obj(&["status", "code", "message"], json!({"status": {"type": "integer"}, "code": {"type": "integer"}, "message": string})),
            "trace_id": string, "retry_after": {"type": "integer"}
        }},
    })
}

#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let _ = crate::common::parse_json::<SubIn>(data);
}
