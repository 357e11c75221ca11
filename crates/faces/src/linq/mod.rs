//! The Linq Partner API v3 face (`/api/partner/v3/...`, seed 004): iMessage
//! chats of the partner's lines, with the leave (and participant changes)
//! accepted at once and carried out asynchronously by the delivery worker,
//! announced by `participant.removed` / `participant.added` webhooks.

pub mod error;
pub mod webhooks;
pub mod wire;

use crate::common::{bounded, hash_secret, is_e164, iso8601, parse_json, random_hex32};
use crate::{imessage, AppState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use confab_core::commands::{self, Add, Author, ChatSelector, Leave, Leaver, MemberRef, Remove, SendMessage};
use confab_core::policy::RemovePolicy;
use confab_core::tx::{ChatFilter, MemberFilter, StoreTx};
use confab_core::*;
use confab_store::StoreExt;
use error::{from_core, LinqError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    let v3 = Router::new()
        .route("/v3/chats", post(create_chat).get(list_chats))
        .route("/v3/chats/{chatId}", get(get_chat).put(update_chat))
        .route("/v3/chats/{chatId}/leave", post(leave))
        .route(
            "/v3/chats/{chatId}/participants",
            post(add_participant).delete(remove_participant),
        )
        .route("/v3/chats/{chatId}/typing", post(typing).delete(typing))
        .route("/v3/chats/{chatId}/read", post(mark_read))
        .route("/v3/chats/{chatId}/messages", post(send_message).get(list_messages))
        .route("/v3/messages/{messageId}", get(get_message))
        .route("/v3/phonenumbers", get(phone_numbers))
        .route("/v3/phone_numbers", get(phone_numbers))
        .route("/v3/operations/{traceId}", get(operation))
        .merge(webhooks::router());
    Router::new()
        .route("/openapi/linq.json", get(|| async { Json(webhooks::openapi()) }))
        .nest("/api/partner", v3)
}

type LinqResult = Result<Response, LinqError>;

/// A new trace id (32 hex, like Linq's).
pub fn new_trace() -> String {
    random_hex32()[..32].to_string()
}

fn finish(trace: &str, r: LinqResult) -> Response {
    match r {
        Ok(res) => res,
        Err(mut e) => {
            e.trace_id = trace.to_string();
            e.into_response()
        }
    }
}

/// `Authorization: Bearer <key>` → the partner (tenant).
pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Tenant, LinqError> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(LinqError::unauthorized)?;
    let hash = hash_secret(key);
    let now = crate::common::now();
    let found = st
        .credentials
        .by_hash(&st.store, CredentialKind::LinqApiKey, hash)
        .await
        .map_err(from_core)?;
    // An expired key is as good as none.
    let tenant = found
        .filter(|(c, _)| c.expires_at.is_none_or(|e| e > now))
        .map(|(_, t)| t);
    tenant.ok_or_else(LinqError::unauthorized)
}

pub async fn write<R, F>(st: &AppState, f: F) -> Result<R, LinqError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
{
    bounded(st.store.write(f)).await.map_err(from_core)
}

pub async fn read<R, F>(st: &AppState, f: F) -> Result<R, LinqError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
{
    bounded(st.store.read(f)).await.map_err(from_core)
}

/// `chatId` must be a UUID.
fn chat_uuid(raw: &str) -> Result<uuid::Uuid, LinqError> {
    uuid::Uuid::parse_str(raw).map_err(|_| LinqError::param(format!("chatId must be a UUID, got {raw:?}")))
}

/// The partner's iMessage chat with this UUID (Bitrix chats are not Linq's).
fn find_chat(tx: &mut dyn StoreTx, tenant: TenantId, uuid: uuid::Uuid) -> Result<Chat, CoreError> {
    match tx.chat_by_uuid(tenant, uuid)? {
        Some(c) if c.network == Network::Imessage => Ok(c),
        _ => Err(CoreError::ChatNotFound),
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, LinqError> {
    parse_json(bytes).map_err(LinqError::body)
}

fn json_status(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

fn accepted(message: &str, trace: &str) -> Response {
    json_status(
        StatusCode::ACCEPTED,
        json!({"message": message, "status": "accepted", "trace_id": trace}),
    )
}

/// Queues an operation after checking its rules now (so a refusal answers
/// at once); the worker checks them again when it runs.
async fn queue(
    st: &AppState,
    tenant: TenantId,
    uuid: uuid::Uuid,
    kind: OperationKind,
    handle: Option<String>,
    trace: &str,
) -> Result<(), LinqError> {
    let trace = trace.to_string();
    write(st, move |tx| {
        let chat = find_chat(tx, tenant, uuid)?;
        let t = Some(trace.clone());
        match (kind, &handle) {
            (OperationKind::Leave, _) => {
                commands::check_leave(
                    tx.as_tx(),
                    &Leave {
                        tenant,
                        chat: chat.id,
                        leaver: Leaver::Line,
                        trace_id: t,
                    },
                )?;
            }
            (OperationKind::Add, Some(h)) => {
                commands::check_add(
                    tx.as_tx(),
                    &Add {
                        tenant,
                        chat: chat.id,
                        actor: None,
                        member: MemberRef::Handle(h.clone()),
                        trace_id: t,
                    },
                )?;
            }
            (OperationKind::Remove, Some(h)) => {
                let cmd = Remove {
                    tenant,
                    chat: ChatSelector::Id(chat.id),
                    actor: None,
                    member: MemberRef::Handle(h.clone()),
                    policy: RemovePolicy::IMessage,
                    trace_id: t,
                };
                commands::check_remove(tx.as_tx(), &cmd)?;
            }
            (_, None) => return Err(CoreError::Invalid("handle is required".into())),
        }
        let now = tx.now();
        tx.insert_operation(&Operation {
            tenant_id: tenant,
            trace_id: trace,
            kind,
            chat_id: chat.id,
            handle,
            status: OperationStatus::Queued,
            error: None,
            created_at: now,
            finished_at: None,
        })
    })
    .await
}

/// `POST /v3/chats/{chatId}/leave` — seed 004: accepted at once, carried
/// out by the worker, `participant.removed` when done.
async fn leave(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        queue(&st, tenant.id, uuid, OperationKind::Leave, None, &trace).await?;
        Ok(accepted("Leave group chat queued", &trace))
    }
    .await;
    finish(&trace, r)
}

#[derive(Deserialize)]
struct HandleBody {
    handle: Option<String>,
}

fn handle_of(bytes: &Bytes) -> Result<String, LinqError> {
    let b: HandleBody = body(bytes)?;
    let h = b
        .handle
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| LinqError::missing("handle"))?;
    let is_email = h.contains('@') && !h.starts_with('@') && h.rsplit('@').next().is_some_and(|d| d.contains('.'));
    if !is_e164(&h) && !is_email {
        return Err(LinqError::e164(&h));
    }
    Ok(h)
}

async fn add_participant(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        let handle = handle_of(&bytes)?;
        queue(&st, tenant.id, uuid, OperationKind::Add, Some(handle), &trace).await?;
        Ok(accepted("Participant addition queued", &trace))
    }
    .await;
    finish(&trace, r)
}

/// DELETE with a JSON body `{handle}`, as the SDK sends it.
async fn remove_participant(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        let handle = handle_of(&bytes)?;
        queue(&st, tenant.id, uuid, OperationKind::Remove, Some(handle), &trace).await?;
        Ok(accepted("Participant removal queued", &trace))
    }
    .await;
    finish(&trace, r)
}

/// `GET /v3/operations/{trace_id}` (confab extension): an async operation's outcome.
async fn operation(State(st): State<AppState>, headers: HeaderMap, Path(trace_id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let op = read(&st, move |tx| tx.operation(tenant.id, &trace_id)).await?;
        let op = op.ok_or_else(|| LinqError::new(404, 2001, "Operation not found"))?;
        let chat = read(&st, move |tx| tx.chat(op.tenant_id, op.chat_id)).await?;
        Ok(Json(json!({
            "trace_id": op.trace_id,
            "kind": op.kind.as_str(),
            "status": op.status.as_str(),
            "error": op.error,
            "chat_id": chat.map(|c| c.uuid.to_string()),
            "handle": op.handle,
            "created_at": iso8601(op.created_at),
            "finished_at": op.finished_at.map(iso8601),
        }))
        .into_response())
    }
    .await;
    finish(&trace, r)
}

#[derive(Deserialize)]
struct MessageIn {
    parts: Option<Vec<Value>>,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
struct CreateIn {
    from: Option<String>,
    to: Option<Vec<String>>,
    message: Option<MessageIn>,
}

/// Text of the parts. A link may not open a new chat (1005); confab sends
/// text only.
fn text_of(parts: &[Value], new_chat: bool) -> Result<String, LinqError> {
    let mut texts = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        match (
            p.get("type").and_then(Value::as_str),
            p.get("value").and_then(Value::as_str),
        ) {
            (Some("text"), Some(v)) if !v.is_empty() => texts.push(v.to_string()),
            (Some("text"), _) => return Err(LinqError::missing(&format!("message.parts[{i}].value"))),
            (Some("link"), _) if new_chat => {
                return Err(LinqError::param(
                    "the first message of a new chat may not contain a link",
                ))
            }
            (Some(other), _) => {
                return Err(LinqError::new(
                    400,
                    1004,
                    format!("Invalid message content: confab delivers text parts only, got {other:?}"),
                ))
            }
            (None, _) => return Err(LinqError::missing(&format!("message.parts[{i}].type"))),
        }
    }
    if texts.is_empty() {
        return Err(LinqError::missing("message.parts"));
    }
    Ok(texts.join("\n"))
}

async fn create_chat(State(st): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let b: CreateIn = body(&bytes)?;
        let from = b
            .from
            .filter(|f| !f.is_empty())
            .ok_or_else(|| LinqError::missing("from"))?;
        let to = b.to.filter(|t| !t.is_empty()).ok_or_else(|| LinqError::missing("to"))?;
        let m = b.message.ok_or_else(|| LinqError::missing("message"))?;
        let parts = m
            .parts
            .filter(|p| !p.is_empty())
            .ok_or_else(|| LinqError::missing("message.parts"))?;
        for n in std::iter::once(&from).chain(&to) {
            if !is_e164(n) && !n.contains('@') {
                return Err(LinqError::e164(n));
            }
        }
        let text = text_of(&parts, true)?;
        let body_hash = hash_secret(&String::from_utf8_lossy(&bytes));
        let key = m.idempotency_key;
        let t = trace.clone();
        let v = write(&st, move |tx| {
            imessage::idempotent(tx, tenant.id, "linq.chats.create", key.as_deref(), &body_hash, |tx| {
                let (chat, msg) = imessage::open_chat(tx, tenant.id, &from, &to, String::new(), text, &t)?;
                let mut c = wire::chat_json(tx, &chat)?;
                c["message"] = wire::sent_message_json(tx, &chat, &msg)?;
                Ok(json!({"chat": c}))
            })
        })
        .await?;
        Ok(json_status(StatusCode::CREATED, v))
    }
    .await;
    finish(&trace, r)
}

async fn get_chat(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        let v = read(&st, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            wire::chat_json(tx, &chat)
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

/// `GET /v3/chats?from&to&limit&cursor` — cursor paging, newest first.
async fn list_chats(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let limit = match q.get("limit") {
            None => 20,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| LinqError::param("limit must be 1-100"))?,
        };
        let offset = match q.get("cursor").filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => c.parse::<usize>().map_err(|_| LinqError::param("invalid cursor"))?,
        };
        let (from, to) = (q.get("from").cloned(), q.get("to").cloned());
        let (page, more) = read(&st, move |tx| {
            let none = Ok((Vec::new(), false));
            let line = match from.as_deref() {
                None => None,
                Some(f) => match tx.line_by_number(tenant.id, f)? {
                    Some(l) => Some(l.id),
                    None => return none,
                },
            };
            // `to`: chats where that handle is or was a member (it is then
            // among the chat's `handles`); an empty one, chats with a member
            // without a handle (shown as ""). The store pages in SQL, and
            // only the page asked for is rendered: rendering reads a chat's
            // whole membership history and events.
            let member = match to.as_deref() {
                None => MemberFilter::Any,
                Some("") => MemberFilter::WithoutHandle,
                Some(t) => match tx.user_by_handle(tenant.id, t)? {
                    None => return none,
                    Some(u) => MemberFilter::User(u.id),
                },
            };
            let filter = ChatFilter {
                network: Network::Imessage,
                line,
                member,
            };
            // One more than the page: whether there is a next one.
            let mut chats = tx.chats_page(tenant.id, filter, offset, limit + 1)?;
            let more = chats.len() > limit;
            chats.truncate(limit);
            let page = chats
                .iter()
                .map(|c| wire::chat_json(tx, c))
                .collect::<Result<Vec<Value>, CoreError>>()?;
            Ok((page, more))
        })
        .await?;
        let next = more.then(|| (offset + page.len()).to_string());
        Ok(Json(json!({"chats": page, "next_cursor": next})).into_response())
    }
    .await;
    finish(&trace, r)
}

#[derive(Deserialize)]
struct UpdateIn {
    display_name: Option<String>,
    group_chat_icon: Option<String>,
}

async fn update_chat(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        let b: UpdateIn = body(&bytes)?;
        let _ = b.group_chat_icon;
        let v = write(&st, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            let chat = match b.display_name {
                Some(name) => commands::rename_chat(tx.as_tx(), tenant.id, chat.id, &name)?,
                None => {
                    commands::line_presence(tx.as_tx(), tenant.id, chat.id)?;
                    policy::can_rename(&chat)?;
                    chat
                }
            };
            Ok(json!({"chat_id": chat.uuid.to_string(), "status": "accepted"}))
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

/// Typing indicators: DMs only (groups → 403, as the SDK documents); 409
/// after leaving. 204.
async fn typing(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        let chat = read(&st, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            commands::line_presence(tx.as_tx(), tenant.id, chat.id)
        })
        .await?;
        if chat.kind != ChatKind::Dm {
            return Err(LinqError::new(
                403,
                2005,
                "Access denied: typing indicators are not supported in group chats",
            ));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&trace, r)
}

async fn mark_read(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        read(&st, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            commands::line_presence(tx.as_tx(), tenant.id, chat.id)
        })
        .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&trace, r)
}

#[derive(Deserialize)]
struct SendIn {
    message: Option<MessageIn>,
}

async fn send_message(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        let b: SendIn = body(&bytes)?;
        let m = b.message.ok_or_else(|| LinqError::missing("message"))?;
        let parts = m
            .parts
            .filter(|p| !p.is_empty())
            .ok_or_else(|| LinqError::missing("message.parts"))?;
        let text = text_of(&parts, false)?;
        let body_hash = hash_secret(&String::from_utf8_lossy(&bytes));
        let (t, key) = (trace.clone(), m.idempotency_key);
        // The pair limit: the line and this chat's other side.
        let pair = format!("{}:{}", tenant.id, uuid);
        if let Err(wait) = st.pair_limiter.hit(&pair).await {
            let mut e = LinqError::new(429, 1007, "Rate limit exceeded");
            e.retry_after = Some(wait.as_secs().max(1));
            return Err(e);
        }
        let v = write(&st, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            // After leaving, even a retried send (same idempotency key) is 409.
            commands::line_presence(tx.as_tx(), tenant.id, chat.id)?;
            let scope = format!("linq.messages:{}", chat.id);
            imessage::idempotent(tx, tenant.id, &scope, key.as_deref(), &body_hash, |tx| {
                let cmd = SendMessage {
                    tenant: tenant.id,
                    chat: chat.id,
                    author: Author::Line,
                    text,
                    trace_id: Some(t),
                };
                let (chat, msg) = commands::send_message(tx.as_tx(), &cmd)?;
                Ok(json!({"chat_id": chat.uuid.to_string(), "message": wire::sent_message_json(tx, &chat, &msg)?}))
            })
        })
        .await?;
        Ok(json_status(StatusCode::CREATED, v))
    }
    .await;
    finish(&trace, r)
}

async fn list_messages(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let uuid = chat_uuid(&id)?;
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(20)
            .clamp(1, 100);
        let before = q.get("cursor").and_then(|c| c.parse::<i64>().ok()).map(MessageId);
        let v = read(&st, move |tx| {
            let chat = find_chat(tx, tenant.id, uuid)?;
            commands::line_presence(tx.as_tx(), tenant.id, chat.id)?;
            let msgs = tx.messages(tenant.id, chat.id, before, limit + 1)?;
            let more = msgs.len() > limit;
            let mut out = Vec::new();
            for m in msgs.iter().take(limit) {
                let mut j = wire::sent_message_json(tx, &chat, m)?;
                let author = tx.user(tenant.id, m.author_id)?;
                j["is_from_me"] = json!(author.is_some_and(|u| u.kind == UserKind::Line));
                out.push(j);
            }
            let next = if more {
                msgs.get(limit - 1).map(|m| m.id.0.to_string())
            } else {
                None
            };
            Ok(json!({"messages": out, "next_cursor": next}))
        })
        .await?;
        Ok(Json(v).into_response())
    }
    .await;
    finish(&trace, r)
}

async fn phone_numbers(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let lines = read(&st, move |tx| tx.lines(tenant.id)).await?;
        let list: Vec<Value> = lines
            .iter()
            .map(|l| {
                json!({
                    "id": crate::chert::line_public_id(l),
                    "phone_number": l.phone_number,
                    "health_status": if l.active { "HEALTHY" } else { "RESTRICTED" },
                    "capabilities": {"sms": false, "mms": false, "voice": false},
                    "country_code": null,
                    "type": null,
                })
            })
            .collect();
        Ok(Json(json!({"phone_numbers": list})).into_response())
    }
    .await;
    finish(&trace, r)
}

async fn get_message(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let trace = new_trace();
    let r = async {
        let tenant = authenticate(&st, &headers).await?;
        let not_found = || LinqError::new(404, 2002, "Message not found");
        let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
        let v = read(&st, move |tx| {
            let Some(m) = tx.message_by_uuid(tenant.id, uuid)? else {
                return Ok(None);
            };
            let Some(chat) = tx.chat(tenant.id, m.chat_id)? else {
                return Ok(None);
            };
            wire::sent_message_json(tx, &chat, &m).map(Some)
        })
        .await?;
        Ok(Json(v.ok_or_else(not_found)?).into_response())
    }
    .await;
    finish(&trace, r)
}

/// Fuzzing: ids and every JSON body of this face.
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = chat_uuid(&text);
    let _ = parse_json::<HandleBody>(data);
    let _ = parse_json::<MessageIn>(data);
    let _ = parse_json::<CreateIn>(data);
    let _ = parse_json::<UpdateIn>(data);
    let _ = parse_json::<SendIn>(data);
    webhooks::fuzz_input(data);
}
