//! The Vibecode gateway face (`/v1/...`, seed 000). The gateway proxies
//! Bitrix24 `im.*` methods: results are wrapped as `{"success": true,
//! "data": …}`, Bitrix errors become 422 `BITRIX_ERROR` with Bitrix's text.
//! Only `POST /v1/chats/:chatId/leave` is publicly documented; the other
//! chat routes are confab extensions in the same style (marked so in
//! `/openapi/vibecode.json`).

pub mod auth;
pub mod error;
pub mod openapi;

use crate::bitrix::errors::Method;
use crate::common::{bounded, iso8601, parse_json};
use crate::AppState;
use auth::{authenticate, rate_limit, require_scope, Caller};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use confab_core::commands::{
    self, Add, Author, ChatSelector, CreateChat, Creator, Leave, Leaver, MemberRef, Remove, SendMessage, TransferOwner,
};
use confab_core::policy::RemovePolicy;
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_store::StoreExt;
use error::VibeError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi/vibecode.json", get(|| async { Json(openapi::document()) }))
        .route("/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/v1/me", get(me))
        .route("/v1/chats", get(list_chats).post(create_chat))
        .route("/v1/chats/{chatId}", get(get_chat))
        .route("/v1/chats/{chatId}/leave", post(leave))
        .route("/v1/chats/{chatId}/owner", post(transfer_owner))
        .route("/v1/chats/{chatId}/members", get(list_members).post(add_members))
        .route("/v1/chats/{chatId}/members/{userId}", delete(remove_member))
        .route("/v1/chats/{chatId}/messages", post(send_message))
        .route("/v1/{*rest}", any(not_found))
}

type VibeResult = Result<Response, VibeError>;

fn ok(data: Value) -> VibeResult {
    Ok(Json(json!({"success": true, "data": data})).into_response())
}

async fn not_found() -> VibeError {
    VibeError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Endpoint not found")
}

/// Authenticates, checks the `im` scope and counts the request against the
/// portal's bucket — the preamble of every chat route.
async fn chat_caller(st: &AppState, headers: &HeaderMap) -> Result<Caller, VibeError> {
    let caller = authenticate(st, headers).await?;
    require_scope(&caller, "im")?;
    rate_limit(st, &caller).await?;
    Ok(caller)
}

/// `chatId` is a positive integer (seed 000).
fn chat_id(raw: &str) -> Result<ChatId, VibeError> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .map(ChatId)
        .ok_or_else(|| VibeError::validation(format!("chatId must be a positive integer, got {raw:?}")))
}

/// `dialogId` for messages: `chatN` or `N` (a chat id; see
/// docs/faces/vibecode.md for the difference from Bitrix's user dialogs).
fn dialog_chat_id(raw: &str) -> Result<ChatId, VibeError> {
    chat_id(raw.strip_prefix("chat").unwrap_or(raw))
        .map_err(|_| VibeError::validation(format!("dialogId must be chatN or a positive chat id, got {raw:?}")))
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, VibeError> {
    parse_json(bytes).map_err(VibeError::validation)
}

/// Runs `f` in one write transaction; core errors worded as `method`.
async fn write<R, F>(st: &AppState, method: Method, f: F) -> Result<R, VibeError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
{
    bounded(st.store.write(f))
        .await
        .map_err(|e| VibeError::from_core(method, e))
}

async fn read<R, F>(st: &AppState, method: Method, f: F) -> Result<R, VibeError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
{
    bounded(st.store.read(f))
        .await
        .map_err(|e| VibeError::from_core(method, e))
}

fn chat_type(kind: ChatKind) -> &'static str {
    match kind {
        ChatKind::Dm => "private",
        ChatKind::Group => "chat",
        ChatKind::OpenLine => "lines",
    }
}

fn chat_json(chat: &Chat, members: usize) -> Value {
    json!({
        "id": chat.id,
        "dialogId": format!("chat{}", chat.id),
        "type": chat_type(chat.kind),
        "title": chat.title,
        "ownerId": chat.owner_id,
        "membersCount": members,
        "createdAt": iso8601(chat.created_at),
    })
}

/// A chat the caller may see: an active member, or its owner (who stays
/// owner after leaving, seed 000).
/// A chat the caller may see (`policy::can_view`); any other reads as
/// "Chat not found".
fn visible_chat(tx: &mut dyn StoreTx, caller: &Caller, id: ChatId) -> Result<Chat, CoreError> {
    commands::visible_chat(tx.as_tx(), caller.tenant.id, id, caller.user).map_err(|e| match e {
        CoreError::NotAMember => CoreError::ChatNotFound,
        other => other,
    })
}

async fn me(State(st): State<AppState>, headers: HeaderMap) -> VibeResult {
    let caller = authenticate(&st, &headers).await?;
    let (tenant, user) = (caller.tenant.id, caller.user);
    let user = read(&st, Method::ImChatGet, move |tx| tx.user(tenant, user)).await?;
    ok(json!({
        "keyType": caller.key_type.as_str(),
        "portal": {"slug": caller.tenant.slug, "name": caller.tenant.name},
        "scopes": caller.scopes,
        "user": user.map(|u| json!({"id": u.id, "name": u.name})),
    }))
}

/// `POST /v1/chats/:chatId/leave` — seed 000, through `LeavePolicy::Bitrix`
/// (the same policy as `im.chat.leave`): the owner may leave and stays owner.
async fn leave(State(st): State<AppState>, headers: HeaderMap, Path(raw): Path<String>) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let chat = chat_id(&raw)?;
    let cmd = Leave {
        tenant: caller.tenant.id,
        chat,
        leaver: Leaver::User(caller.user),
        trace_id: None,
    };
    write(&st, Method::ImChatLeave, move |tx| commands::leave(tx.as_tx(), &cmd)).await?;
    ok(json!(true))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerBody {
    user_id: Option<i64>,
}

/// `POST /v1/chats/:chatId/owner` `{"userId": N}` — `im.chat.setOwner`.
async fn transfer_owner(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    bytes: Bytes,
) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let chat = chat_id(&raw)?;
    let b: OwnerBody = body(&bytes)?;
    let new_owner = b
        .user_id
        .filter(|u| *u > 0)
        .ok_or_else(|| VibeError::validation("userId (positive integer) is required"))?;
    let cmd = TransferOwner {
        tenant: caller.tenant.id,
        chat,
        actor: Some(caller.user),
        new_owner: UserId(new_owner),
        trace_id: None,
    };
    write(&st, Method::ImChatSetOwner, move |tx| {
        commands::transfer_owner(tx.as_tx(), &cmd)
    })
    .await?;
    ok(json!(true))
}

#[derive(Deserialize)]
struct Paging {
    limit: Option<String>,
    offset: Option<String>,
}

fn paging(q: &HashMap<String, String>) -> Result<(usize, usize), VibeError> {
    let p = Paging {
        limit: q.get("limit").cloned(),
        offset: q.get("offset").cloned(),
    };
    let limit = match p.limit {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=5000).contains(l))
            .ok_or_else(|| VibeError::validation("limit must be an integer from 1 to 5000"))?,
    };
    let offset = match p.offset {
        None => 0,
        Some(o) => o
            .parse::<usize>()
            .map_err(|_| VibeError::validation("offset must be a non-negative integer"))?,
    };
    Ok((limit, offset))
}

fn page(items: Vec<Value>, limit: usize, offset: usize) -> VibeResult {
    let total = items.len();
    paged(items.into_iter().skip(offset).take(limit).collect(), total, offset)
}

/// One page, `data`, of `total` items starting at `offset`.
fn paged(data: Vec<Value>, total: usize, offset: usize) -> VibeResult {
    let has_more = offset + data.len() < total;
    Ok(Json(json!({"success": true, "data": data, "meta": {"total": total, "hasMore": has_more}})).into_response())
}

/// `GET /v1/chats` (confab extension): the caller's chats, paged.
async fn list_chats(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let (limit, offset) = paging(&q)?;
    let (tenant, user) = (caller.tenant.id, caller.user);
    let items = read(&st, Method::ImChatGet, move |tx| {
        let mut out = Vec::new();
        for chat in tx.chats_of_user(tenant, user)? {
            // The count kept on the chat row, not every membership read.
            let n = tx.active_count(tenant, chat.id)?;
            out.push(chat_json(&chat, n));
        }
        Ok(out)
    })
    .await?;
    page(items, limit, offset)
}

async fn get_chat(State(st): State<AppState>, headers: HeaderMap, Path(raw): Path<String>) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let id = chat_id(&raw)?;
    let v = read(&st, Method::ImChatGet, move |tx| {
        let chat = visible_chat(tx, &caller, id)?;
        let n = tx.active_count(chat.tenant_id, chat.id)?;
        Ok(chat_json(&chat, n))
    })
    .await?;
    ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewChat {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    user_ids: Vec<i64>,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /v1/chats` (confab extension) — `im.chat.add`: the caller becomes
/// the owner. → 201.
async fn create_chat(State(st): State<AppState>, headers: HeaderMap, bytes: Bytes) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let b: NewChat = body(&bytes)?;
    let _ = b.description;
    let cmd = CreateChat {
        tenant: caller.tenant.id,
        id: None,
        uuid: None,
        kind: ChatKind::Group,
        network: Network::Internal,
        title: b.title.unwrap_or_default(),
        creator: Some(Creator::User(caller.user)),
        members: b.user_ids.into_iter().map(|u| MemberRef::Id(UserId(u))).collect(),
        chat_key: None,
        crm: None,
        trace_id: None,
    };
    let v = write(&st, Method::ImChatAdd, move |tx| {
        let (chat, members) = commands::create_chat(tx.as_tx(), &cmd)?;
        Ok(chat_json(&chat, members.len()))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"success": true, "data": v}))).into_response())
}

async fn list_members(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let id = chat_id(&raw)?;
    let (limit, offset) = paging(&q)?;
    let (items, total) = read(&st, Method::ImChatUserList, move |tx| {
        let chat = visible_chat(tx, &caller, id)?;
        // The page's members with their names, paged in SQL; the total is
        // the count the chat row keeps.
        let total = tx.active_count(chat.tenant_id, chat.id)?;
        let members = tx.active_member_users(chat.tenant_id, chat.id, Some((offset, limit)))?;
        let mut out = Vec::new();
        for (m, u) in members {
            let role = if chat.owner_id == Some(m.user_id) {
                "owner"
            } else {
                "member"
            };
            out.push(json!({"userId": m.user_id, "name": u.name, "role": role, "joinedAt": iso8601(m.joined_at)}));
        }
        Ok((out, total))
    })
    .await?;
    paged(items, total, offset)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewMembers {
    #[serde(default)]
    user_ids: Vec<i64>,
    #[serde(default)]
    user_id: Option<i64>,
}

/// `POST /v1/chats/:chatId/members` `{"userIds": [...]}` — `im.chat.user.add`.
async fn add_members(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    bytes: Bytes,
) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let chat = chat_id(&raw)?;
    let b: NewMembers = body(&bytes)?;
    let users: Vec<i64> = b.user_ids.into_iter().chain(b.user_id).collect();
    if users.is_empty() || users.iter().any(|u| *u <= 0) {
        return Err(VibeError::validation(
            "userIds must be a non-empty array of positive integers",
        ));
    }
    let tenant = caller.tenant.id;
    write(&st, Method::ImChatUserAdd, move |tx| {
        for u in users {
            commands::add(
                tx.as_tx(),
                &Add {
                    tenant,
                    chat,
                    actor: Some(caller.user),
                    member: MemberRef::Id(UserId(u)),
                    trace_id: None,
                },
            )?;
        }
        Ok(())
    })
    .await?;
    ok(json!(true))
}

/// `DELETE /v1/chats/:chatId/members/:userId` — `im.chat.user.delete`.
async fn remove_member(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((raw, user)): Path<(String, String)>,
) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let chat = chat_id(&raw)?;
    let user = user
        .parse::<i64>()
        .ok()
        .filter(|u| *u > 0)
        .ok_or_else(|| VibeError::validation(format!("userId must be a positive integer, got {user:?}")))?;
    let cmd = Remove {
        tenant: caller.tenant.id,
        chat: ChatSelector::Id(chat),
        actor: Some(caller.user),
        member: MemberRef::Id(UserId(user)),
        policy: RemovePolicy::Bitrix,
        trace_id: None,
    };
    write(&st, Method::ImChatUserDelete, move |tx| {
        commands::remove(tx.as_tx(), &cmd)
    })
    .await?;
    ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// `POST /v1/chats/:dialogId/messages` `{"message": "..."}` — `im.message.add`;
/// `data` is the new message id.
async fn send_message(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    bytes: Bytes,
) -> VibeResult {
    let caller = chat_caller(&st, &headers).await?;
    let chat = dialog_chat_id(&raw)?;
    let b: NewMessage = body(&bytes)?;
    let text = b
        .message
        .or(b.text)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let text = text.ok_or_else(|| VibeError::validation("message is required and must not be empty"))?;
    let cmd = SendMessage {
        tenant: caller.tenant.id,
        chat,
        author: Author::User(caller.user),
        text,
        trace_id: None,
    };
    let (_, msg) = write(&st, Method::ImMessageAdd, move |tx| {
        commands::send_message(tx.as_tx(), &cmd)
    })
    .await?;
    ok(json!(msg.id))
}

/// Fuzzing: every parser of this face that takes client bytes (ids and
/// JSON bodies). Must never panic.
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = chat_id(&text);
    let _ = dialog_chat_id(&text);
    let bytes = Bytes::copy_from_slice(data);
    let _ = body::<OwnerBody>(&bytes);
    let _ = body::<NewChat>(&bytes);
    let _ = body::<NewMembers>(&bytes);
    let _ = body::<NewMessage>(&bytes);
}
