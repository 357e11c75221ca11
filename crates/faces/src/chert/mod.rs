//! The Chert face (`/api/v1/...`, seed 003): iMessage groups driven from the
//! tenant's pinned line, HMAC v1 signed. Every response carries
//! `X-Trace-ID`; every error the documented envelope with `trace_id`.

pub mod auth;
pub mod error;
pub mod openapi;
pub mod webhooks;

use crate::common::{bounded, hash_secret, is_e164, iso8601, random_token};
use crate::imessage;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use confab_core::commands::{self, Add, Author, ChatSelector, Leave, Leaver, MemberRef, Remove, SendMessage};
use confab_core::policy::RemovePolicy;
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_store::StoreExt;
use error::{from_core, ChertError, Route};
use serde::Deserialize;
use serde_json::{json, Value};

/// The request's trace id (`X-Trace-ID`, `trace_id`).
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/api/v1/chats", post(create_chat))
        .route("/api/v1/chats/{id}", get(get_chat))
        .route("/api/v1/chats/{id}/leave", post(leave))
        .route("/api/v1/chats/{id}/messages", post(send_message))
        .route("/api/v1/chats/{id}/participants", post(add_participant))
        .route("/api/v1/chats/{id}/participants/{address}", delete(remove_participant))
        .route("/api/v1/phone-numbers", get(phone_numbers))
        .merge(webhooks::router())
        .layer(axum::middleware::from_fn(with_trace_id));
    Router::new()
        .route("/openapi/chert.json", get(|| async { Json(openapi::document()) }))
        .merge(api)
}

async fn with_trace_id(mut req: Request<Body>, next: Next) -> Response {
    let trace = random_token(12);
    req.extensions_mut().insert(TraceId(trace.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&trace) {
        res.headers_mut().insert("x-trace-id", v);
    }
    res
}

type ChertResult = Result<Response, ChertError>;

/// A request that passed Chert authentication (signature over the exact
/// received bytes, or bearer): its tenant, trace id and body. Every Chert
/// route takes one, so no route can forget the check; a refusal answers in
/// Chert's envelope with the request's trace id.
pub struct Signed {
    pub tenant: Tenant,
    pub trace: TraceId,
    pub body: Bytes,
}

impl axum::extract::FromRequest<AppState> for Signed {
    type Rejection = Response;

    async fn from_request(req: Request<Body>, st: &AppState) -> Result<Self, Response> {
        let trace = req
            .extensions()
            .get::<TraceId>()
            .cloned()
            .unwrap_or_else(|| TraceId(String::new()));
        let (method, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers().clone());
        // Bytes keeps axum's own 413 for an oversized body.
        let body = Bytes::from_request(req, st)
            .await
            .map_err(IntoResponse::into_response)?;
        match auth::authenticate(st, &method, uri.path(), &headers, &body).await {
            Ok(tenant) => Ok(Signed { tenant, trace, body }),
            Err(e) => Err(e.trace(&trace.0).into_response()),
        }
    }
}

fn finish(trace: &TraceId, r: ChertResult) -> Response {
    match r {
        Ok(res) => res,
        Err(e) => e.trace(&trace.0).into_response(),
    }
}

async fn write<R, F>(st: &AppState, route: Route, f: F) -> Result<R, ChertError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
{
    bounded(st.store.write(f)).await.map_err(|e| from_core(route, e))
}

async fn read<R, F>(st: &AppState, route: Route, f: F) -> Result<R, ChertError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
{
    bounded(st.store.read(f)).await.map_err(|e| from_core(route, e))
}

/// Chat ids are `ch_<32 hex>`; the UUID form is accepted too.
fn chat_ref(raw: &str) -> Result<uuid::Uuid, ChertError> {
    Chat::parse_chert_id(raw)
        .or_else(|| uuid::Uuid::parse_str(raw).ok())
        .ok_or_else(|| ChertError::new(2002, "Chat not found"))
}

/// Chert sees the tenant's iMessage chats only (a Bitrix chat is not found).
fn find_chat(tx: &mut dyn StoreTx, tenant: TenantId, uuid: uuid::Uuid) -> Result<Chat, CoreError> {
    tx.chat_by_uuid(tenant, uuid)?
        .filter(|c| c.network == Network::Imessage)
        .ok_or(CoreError::ChatNotFound)
}

fn handles(tx: &mut dyn StoreTx, chat: &Chat) -> Result<Vec<User>, CoreError> {
    Ok(tx
        .active_member_users(chat.tenant_id, chat.id, None)?
        .into_iter()
        .map(|(_, u)| u)
        .collect())
}

fn address(u: &User) -> String {
    u.handle.clone().unwrap_or_else(|| format!("user:{}", u.id))
}

fn chat_json(tx: &mut dyn StoreTx, chat: &Chat) -> Result<Value, CoreError> {
    let hs: Vec<Value> = handles(tx, chat)?
        .iter()
        .map(|u| json!({"service": "imessage", "address": address(u), "is_me": u.kind == UserKind::Line}))
        .collect();
    Ok(json!({
        "id": chat.chert_id(),
        "display_name": if chat.title.is_empty() { Value::Null } else { json!(chat.title) },
        "handles": hs,
        "is_group": chat.kind != ChatKind::Dm,
        "service": "imessage",
        "health_score": 100,
        "created_at": iso8601(chat.created_at),
    }))
}

fn roster(tx: &mut dyn StoreTx, chat: &Chat) -> Result<Vec<String>, CoreError> {
    Ok(handles(tx, chat)?.iter().map(address).collect())
}

fn message_json(chat: &Chat, m: &Message) -> Value {
    json!({
        "id": m.uuid.simple().to_string(),
        "chat_id": chat.chert_id(),
        "parts": [{"type": "text", "value": m.text}],
        "status": "sent",
        "direction": "outbound",
        "created_at": iso8601(m.created_at),
        "delivered_at": null,
        "read_at": null,
        "service": "imessage",
    })
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ChertError> {
    crate::common::parse_json(body).map_err(|e| ChertError::new(1001, e))
}

/// `POST /api/v1/chats/{id}/leave` — seed 003, `LeavePolicy::IMessage`.
async fn leave(State(st): State<AppState>, Path(id): Path<String>, call: Signed) -> Response {
    let Signed { tenant, trace, .. } = call;
    let r = async {
        let uuid = chat_ref(&id)?;
        let trace_id = trace.0.clone();
        let chat = write(&st, Route::Leave, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            let cmd = Leave {
                tenant: tenant.id,
                chat: chat.id,
                leaver: Leaver::Line,
                trace_id: Some(trace_id),
            };
            Ok(commands::leave(tx.as_tx(), &cmd)?.chat)
        })
        .await?;
        Ok(Json(json!({"chat_id": chat.chert_id(), "status": "left"})).into_response())
    }
    .await;
    finish(&trace, r)
}

/// Text of the parts; `group` = a group create, where non-text parts are
/// 4099 (docs); elsewhere confab accepts text parts only.
fn text_of(parts: &[Value], group_create: bool) -> Result<String, ChertError> {
    let mut texts = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        match (
            p.get("type").and_then(Value::as_str),
            p.get("value").and_then(Value::as_str),
        ) {
            (Some("text"), Some(v)) if !v.is_empty() => texts.push(v.to_string()),
            (Some("text"), _) => return Err(ChertError::missing(&format!("message.parts[{i}].value"))),
            (Some(_), _) if group_create => {
                return Err(ChertError::new(
                    4099,
                    "Group creation supports text parts only in the first message",
                ))
            }
            (Some(other), _) => {
                return Err(ChertError::new(
                    1001,
                    format!("Unsupported part type {other:?}: confab delivers text parts only"),
                ))
            }
            (None, _) => return Err(ChertError::missing(&format!("message.parts[{i}].type"))),
        }
    }
    if texts.is_empty() {
        return Err(ChertError::missing("message.parts"));
    }
    Ok(texts.join("\n"))
}

#[derive(Deserialize)]
struct MessageIn {
    parts: Option<Vec<Value>>,
    subject: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
struct CreateIn {
    from: Option<String>,
    to: Option<Vec<String>>,
    message: Option<MessageIn>,
}

/// `POST /api/v1/chats` — DM with one recipient, group with 2–31.
async fn create_chat(State(st): State<AppState>, call: Signed) -> Response {
    let Signed { tenant, trace, body } = call;
    let r = async {
        let b: CreateIn = parse(&body)?;
        let from = b
            .from
            .filter(|f| !f.is_empty())
            .ok_or_else(|| ChertError::missing("from"))?;
        let to =
            b.to.filter(|t| !t.is_empty())
                .ok_or_else(|| ChertError::missing("to"))?;
        let m = b.message.ok_or_else(|| ChertError::missing("message.parts"))?;
        let parts = m
            .parts
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ChertError::missing("message.parts"))?;
        for n in std::iter::once(&from).chain(&to) {
            if !is_e164(n) {
                return Err(ChertError::new(
                    1003,
                    format!("Invalid phone number: {n} (expected E.164, e.g. +14155551234)"),
                ));
            }
        }
        let group = to.len() >= 2;
        let text = text_of(&parts, group)?;
        let body_hash = hash_secret(&String::from_utf8_lossy(&body));
        let trace_id = trace.0.clone();
        let key = m.idempotency_key;
        let v = write(&st, Route::Create, move |tx| {
            imessage::idempotent(tx, tenant.id, "chats.create", key.as_deref(), &body_hash, |tx| {
                let (chat, msg) = imessage::open_chat(
                    tx,
                    tenant.id,
                    &from,
                    &to,
                    m.subject.unwrap_or_default(),
                    text,
                    &trace_id,
                )?;
                Ok(json!({"chat": chat_json(tx, &chat)?, "message": message_json(&chat, &msg)}))
            })
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

/// `POST /api/v1/chats/{id}/messages` — body wrapped in `message`.
async fn send_message(State(st): State<AppState>, Path(id): Path<String>, call: Signed) -> Response {
    let Signed { tenant, trace, body } = call;
    let r = async {
        let uuid = chat_ref(&id)?;
        let v: Value = parse(&body)?;
        if v.get("parts").is_some() && v.get("message").is_none() {
            return Err(ChertError::new(
                1001,
                "The body must be wrapped: {\"message\": {\"parts\": [...]}}",
            ));
        }
        let m: MessageIn = serde_json::from_value(v.get("message").cloned().unwrap_or(Value::Null))
            .map_err(|_| ChertError::missing("message.parts"))?;
        let parts = m
            .parts
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ChertError::missing("message.parts"))?;
        let text = text_of(&parts, false)?;
        let body_hash = hash_secret(&String::from_utf8_lossy(&body));
        let trace_id = trace.0.clone();
        let v = write(&st, Route::Send, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            let scope = format!("messages:{}", chat.id);
            imessage::idempotent(tx, tenant.id, &scope, m.idempotency_key.as_deref(), &body_hash, |tx| {
                let cmd = SendMessage {
                    tenant: tenant.id,
                    chat: chat.id,
                    author: Author::Line,
                    text,
                    trace_id: Some(trace_id),
                };
                let (chat, msg) = commands::send_message(tx.as_tx(), &cmd)?;
                Ok(json!({"message": message_json(&chat, &msg)}))
            })
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

fn valid_address(a: &str) -> bool {
    is_e164(a) || (a.contains('@') && a.rsplit('@').next().is_some_and(|d| d.contains('.')) && !a.starts_with('@'))
}

#[derive(Deserialize)]
struct ParticipantIn {
    address: Option<String>,
    handle: Option<String>,
}

/// `POST /api/v1/chats/{id}/participants` — idempotent; the full roster back.
async fn add_participant(State(st): State<AppState>, Path(id): Path<String>, call: Signed) -> Response {
    let Signed { tenant, trace, body } = call;
    let r = async {
        let uuid = chat_ref(&id)?;
        let p: ParticipantIn = parse(&body)?;
        let addr = p
            .address
            .or(p.handle)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ChertError::missing("address"))?;
        if !valid_address(&addr) {
            return Err(ChertError::new(
                1003,
                format!("Invalid address: {addr} (expected E.164 or an e-mail)"),
            ));
        }
        let trace_id = trace.0.clone();
        let added = addr.clone();
        let v = write(&st, Route::Add, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            let cmd = Add {
                tenant: tenant.id,
                chat: chat.id,
                actor: None,
                member: MemberRef::Handle(addr),
                trace_id: Some(trace_id),
            };
            commands::add(tx.as_tx(), &cmd)?;
            Ok(json!({"chat_id": chat.chert_id(), "added": added, "participants": roster(tx, &chat)?}))
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

/// `DELETE /api/v1/chats/{id}/participants/{address}` (URL-encoded address).
async fn remove_participant(
    State(st): State<AppState>,
    Path((id, addr)): Path<(String, String)>,
    call: Signed,
) -> Response {
    let Signed { tenant, trace, .. } = call;
    let r = async {
        let uuid = chat_ref(&id)?;
        let trace_id = trace.0.clone();
        let removed = addr.clone();
        let v = write(&st, Route::Remove, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            let cmd = Remove {
                tenant: tenant.id,
                chat: ChatSelector::Id(chat.id),
                actor: None,
                member: MemberRef::Handle(addr),
                policy: RemovePolicy::IMessage,
                trace_id: Some(trace_id),
            };
            commands::remove(tx.as_tx(), &cmd)?;
            Ok(json!({"chat_id": chat.chert_id(), "removed": removed, "participants": roster(tx, &chat)?}))
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

async fn get_chat(State(st): State<AppState>, Path(id): Path<String>, call: Signed) -> Response {
    let Signed { tenant, trace, .. } = call;
    let r = async {
        let uuid = chat_ref(&id)?;
        let v = read(&st, Route::Read, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            Ok(json!({"chat": chat_json(tx, &chat)?}))
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

/// A line's public id: `pl_` and a fixed-width number.
pub fn line_public_id(line: &Line) -> String {
    format!("pl_{:026}", line.id.0)
}

async fn phone_numbers(State(st): State<AppState>, call: Signed) -> Response {
    let Signed { tenant, trace, .. } = call;
    let r = async {
        let lines = read(&st, Route::Read, move |tx| tx.lines(tenant.id)).await?;
        let list: Vec<Value> = lines
            .iter()
            .map(|l| {
                json!({
                    "id": line_public_id(l),
                    "phone_line_id": line_public_id(l),
                    "phone_number": l.phone_number,
                    "service": "imessage",
                    "is_active": l.active,
                    "capabilities": ["imessage", "send", "receive"],
                })
            })
            .collect();
        Ok(Json(json!({"phone_numbers": list})).into_response())
    }
    .await;
    finish(&trace, r)
}

/// Fuzzing: ids, the signature header and every JSON body of this face.
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = chat_ref(&text);
    let _ = auth::parse_signature(&text);
    let _ = crate::common::parse_json::<MessageIn>(data);
    let _ = crate::common::parse_json::<CreateIn>(data);
    let _ = crate::common::parse_json::<ParticipantIn>(data);
    webhooks::fuzz_input(data);
}
