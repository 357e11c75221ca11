//! The admin API (`/admin/v1/...`): set up tenants, users, apps, bots,
//! lines, credentials, chats, members and CRM links over HTTP, guarded by
//! the admin bearer token. Secrets are returned once, at creation.

pub mod openapi;
pub mod world;

use crate::common::{hash_secret, parse_json, secret_eq};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use confab_core::commands::{self, Add, ChatSelector, Remove};
use confab_core::policy::RemovePolicy;
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_store::StoreExt;
use serde::Deserialize;
use serde_json::{json, Value};
use world::{Mode, World};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi/admin.json", get(|| async { Json(openapi::document()) }))
        .route("/admin/v1/world", post(apply_world))
        .route("/admin/v1/deliveries", get(list_deliveries))
        .route("/admin/v1/deliveries/{id}/replay", post(replay_delivery))
        .route("/admin/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/admin/v1/tenants/{slug}", get(show_tenant))
        .route("/admin/v1/tenants/{slug}/users", get(list_users).post(create_user))
        .route("/admin/v1/tenants/{slug}/users/{id}", patch(update_user))
        .route("/admin/v1/tenants/{slug}/apps", get(list_apps).post(create_app))
        .route("/admin/v1/tenants/{slug}/bots", post(create_bot))
        .route("/admin/v1/tenants/{slug}/lines", get(list_lines).post(create_line))
        .route("/admin/v1/tenants/{slug}/lines/{id}", patch(update_line))
        .route(
            "/admin/v1/tenants/{slug}/credentials",
            get(list_credentials).post(create_credential),
        )
        .route("/admin/v1/tenants/{slug}/chats", get(list_chats).post(create_chat))
        .route("/admin/v1/tenants/{slug}/chats/{id}", get(show_chat))
        .route("/admin/v1/tenants/{slug}/chats/{id}/members", post(add_member))
        .route(
            "/admin/v1/tenants/{slug}/chats/{id}/members/{user_id}",
            delete(remove_member),
        )
        .route(
            "/admin/v1/tenants/{slug}/crm-links",
            get(list_crm_links).post(create_crm_link),
        )
}

/// The admin error envelope: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<CoreError> for AdminError {
    fn from(e: CoreError) -> Self {
        use CoreError::*;
        let msg = e.to_string();
        let (status, code) = match e {
            ChatNotFound | UserNotFound | BotNotFound => (StatusCode::NOT_FOUND, "not_found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Internal(ref detail) => {
                tracing::error!(%detail, "admin request failed");
                return AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
            }
            BotLimit { .. }
            | ForeignBot
            | NotAMember
            | NoLongerMember
            | LeftChat
            | DirectChat
            | GroupTooSmall { .. }
            | NotSupported
            | DeliveryFailed
            | OwnerCannotLeave
            | RemovalForbidden
            | NoCrmChat
            | ChatNotOfEntity
            | UserInactive
            | PermissionDenied
            | TooManyParticipants { .. }
            | ForeignLine => (StatusCode::UNPROCESSABLE_ENTITY, "rule_violation"),
        };
        AdminError::new(status, code, msg)
    }
}

type AdminResult = Result<Response, AdminError>;

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    let unauthorized = |m: &str| AdminError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing admin token: send Authorization: Bearer <admin token>"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(|| unauthorized("the Authorization header must be \"Bearer <admin token>\""))?;
    if !secret_eq(&hash_secret(token.trim()), &state.admin_token_hash) {
        return Err(unauthorized("invalid admin token"));
    }
    Ok(())
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, AdminError> {
    parse_json(bytes).map_err(AdminError::bad_request)
}

fn int_param(value: &str, what: &str) -> Result<i64, AdminError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AdminError::bad_request(format!("{what} must be a positive integer, got {value:?}")))
}

/// An admin write may issue a credential: this node's credential cache
/// forgets what it holds once the write is done.
pub async fn forget_credentials_after_writes(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let writes = !req.method().is_safe();
    let res = next.run(req).await;
    if writes && res.status().is_success() {
        st.credentials.clear();
    }
    res
}

fn created(v: impl serde::Serialize) -> AdminResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn ok(v: impl serde::Serialize) -> AdminResult {
    Ok(Json(v).into_response())
}

/// Runs `f` in one write transaction for the tenant named by `slug`.
async fn with_tenant<R, F>(state: &AppState, slug: String, write: bool, f: F) -> Result<R, AdminError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx, Tenant) -> Result<R, CoreError> + Send + 'static,
{
    let missing = format!("tenant {slug:?} not found");
    let job = move |tx: &mut dyn StoreTx| match tx.tenant_by_slug(&slug)? {
        Some(t) => f(tx, t).map(Some),
        None => Ok(None),
    };
    let res = if write {
        state.store.write(job).await
    } else {
        state.store.read(job).await
    };
    res?.ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, "not_found", missing))
}

async fn apply_world(State(st): State<AppState>, headers: HeaderMap, bytes: Bytes) -> AdminResult {
    authorize(&st, &headers)?;
    let is_toml = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("toml"));
    let w: World = if is_toml {
        let text = std::str::from_utf8(&bytes).map_err(|_| AdminError::bad_request("world file is not UTF-8"))?;
        world::parse_toml(text).map_err(|e| AdminError::bad_request(format!("invalid world file: {e}")))?
    } else {
        body(&bytes)?
    };
    let applied = st.store.write(move |tx| world::apply(tx, &w)).await?;
    ok(applied)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    slug: String,
    #[serde(default)]
    name: Option<String>,
}

async fn create_tenant(State(st): State<AppState>, headers: HeaderMap, bytes: Bytes) -> AdminResult {
    authorize(&st, &headers)?;
    let t: NewTenant = body(&bytes)?;
    let (tenant, _) = st
        .store
        .write(move |tx| world::ensure_tenant(tx, &t.slug, t.name.as_deref(), Mode::Create))
        .await?;
    created(tenant)
}

async fn list_tenants(State(st): State<AppState>, headers: HeaderMap) -> AdminResult {
    authorize(&st, &headers)?;
    ok(st.store.read(|tx| tx.tenants()).await?)
}

async fn show_tenant(State(st): State<AppState>, headers: HeaderMap, Path(slug): Path<String>) -> AdminResult {
    authorize(&st, &headers)?;
    let v = with_tenant(&st, slug, false, |tx, t| {
        Ok(json!({
            "tenant": t,
            "users": tx.users(t.id)?,
            "apps": tx.apps(t.id)?,
            "lines": tx.lines(t.id)?,
            "chats": tx.chats(t.id)?,
            "credentials": tx.credentials(t.id)?,
        }))
    })
    .await?;
    ok(v)
}

macro_rules! create_route {
    ($name:ident, $spec:ty, $ensure:path) => {
        async fn $name(
            State(st): State<AppState>,
            headers: HeaderMap,
            Path(slug): Path<String>,
            bytes: Bytes,
        ) -> AdminResult {
            authorize(&st, &headers)?;
            let spec: $spec = body(&bytes)?;
            let (v, _) = with_tenant(&st, slug, true, move |tx, t| {
                $ensure(tx, t.id, &spec, Mode::Create)
            })
            .await?;
            created(v)
        }
    };
}

create_route!(create_user, world::UserSpec, world::ensure_user);
create_route!(create_app, world::AppSpec, world::ensure_app);
create_route!(create_bot, world::BotSpec, world::ensure_bot);
create_route!(create_line, world::LineSpec, world::ensure_line);

async fn create_chat(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> AdminResult {
    authorize(&st, &headers)?;
    let spec: world::ChatSpec = body(&bytes)?;
    let v = with_tenant(&st, slug, true, move |tx, t| {
        let (chat, _) = world::ensure_chat(tx, t.id, &spec, Mode::Create)?;
        chat_view(tx, chat)
    })
    .await?;
    created(v)
}

async fn create_credential(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> AdminResult {
    authorize(&st, &headers)?;
    let spec: world::CredentialSpec = body(&bytes)?;
    let issued = with_tenant(&st, slug, true, move |tx, t| {
        world::ensure_credential(tx, t.id, &spec, Mode::Create)
    })
    .await?;
    created(issued)
}

macro_rules! list_route {
    ($name:ident, $method:ident) => {
        async fn $name(State(st): State<AppState>, headers: HeaderMap, Path(slug): Path<String>) -> AdminResult {
            authorize(&st, &headers)?;
            ok(with_tenant(&st, slug, false, |tx, t| tx.$method(t.id)).await?)
        }
    };
}

list_route!(list_users, users);
list_route!(list_apps, apps);
list_route!(list_lines, lines);
list_route!(list_chats, chats);
list_route!(list_credentials, credentials);

async fn list_crm_links(State(st): State<AppState>, headers: HeaderMap, Path(slug): Path<String>) -> AdminResult {
    authorize(&st, &headers)?;
    let links = with_tenant(&st, slug, false, |tx, t| tx.crm_links(t.id)).await?;
    let v: Vec<Value> = links
        .into_iter()
        .map(|(e, c)| json!({"entity_type": e.entity_type, "entity_id": e.entity_id, "chat_id": c}))
        .collect();
    ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActiveFlag {
    active: bool,
}

async fn update_user(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    bytes: Bytes,
) -> AdminResult {
    authorize(&st, &headers)?;
    let id = UserId(int_param(&id, "user id")?);
    let f: ActiveFlag = body(&bytes)?;
    let user = with_tenant(&st, slug, true, move |tx, t| {
        tx.user(t.id, id)?.ok_or(CoreError::UserNotFound)?;
        tx.set_user_active(t.id, id, f.active)?;
        tx.user(t.id, id)?.ok_or(CoreError::UserNotFound)
    })
    .await?;
    ok(user)
}

async fn update_line(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    bytes: Bytes,
) -> AdminResult {
    authorize(&st, &headers)?;
    let id = LineId(int_param(&id, "line id")?);
    let f: ActiveFlag = body(&bytes)?;
    let line = with_tenant(&st, slug, true, move |tx, t| {
        tx.line(t.id, id)?
            .ok_or_else(|| CoreError::Invalid(format!("line {id} not found")))?;
        tx.set_line_active(t.id, id, f.active)?;
        tx.line(t.id, id)?
            .ok_or_else(|| CoreError::Invalid(format!("line {id} not found")))
    })
    .await?;
    ok(line)
}

fn chat_view(tx: &mut dyn StoreTx, chat: Chat) -> Result<Value, CoreError> {
    let history = tx.membership_history(chat.tenant_id, chat.id)?;
    let active: Vec<_> = history.iter().filter(|m| m.is_active()).cloned().collect();
    Ok(json!({
        "chat": chat,
        "chert_id": chat.chert_id(),
        "members": active,
        "history": history,
    }))
}

async fn show_chat(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> AdminResult {
    authorize(&st, &headers)?;
    let id = ChatId(int_param(&id, "chat id")?);
    let v = with_tenant(&st, slug, false, move |tx, t| {
        let chat = tx.chat(t.id, id)?.ok_or(CoreError::ChatNotFound)?;
        let events = tx.events(t.id, Some(id))?;
        let mut v = chat_view(tx, chat)?;
        v["events"] = json!(events);
        Ok(v)
    })
    .await?;
    ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    member: world::MemberSpec,
}

async fn add_member(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    bytes: Bytes,
) -> AdminResult {
    authorize(&st, &headers)?;
    let id = ChatId(int_param(&id, "chat id")?);
    let m: NewMember = body(&bytes)?;
    let v = with_tenant(&st, slug, true, move |tx, t| {
        let out = commands::add(
            tx.as_tx(),
            &Add {
                tenant: t.id,
                chat: id,
                actor: None,
                member: m.member.to_ref(),
                trace_id: None,
            },
        )?;
        let members = tx.active_members(t.id, out.chat.id)?;
        Ok(json!({"added": out.added, "user": out.user, "members": members}))
    })
    .await?;
    ok(v)
}

async fn remove_member(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((slug, id, user)): Path<(String, String, String)>,
) -> AdminResult {
    authorize(&st, &headers)?;
    let id = ChatId(int_param(&id, "chat id")?);
    let user = UserId(int_param(&user, "user id")?);
    let v = with_tenant(&st, slug, true, move |tx, t| {
        let out = commands::remove(
            tx.as_tx(),
            &Remove {
                tenant: t.id,
                chat: ChatSelector::Id(id),
                actor: None,
                member: commands::MemberRef::Id(user),
                policy: RemovePolicy::Admin,
                trace_id: None,
            },
        )?;
        let members = tx.active_members(t.id, out.chat.id)?;
        Ok(json!({"removed": out.user, "members": members}))
    })
    .await?;
    ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCrmLink {
    entity_type: String,
    entity_id: i64,
    chat_id: i64,
}

async fn create_crm_link(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> AdminResult {
    authorize(&st, &headers)?;
    let l: NewCrmLink = body(&bytes)?;
    let entity_type = CrmEntityType::parse(&l.entity_type)
        .ok_or_else(|| AdminError::bad_request("entity_type must be lead, deal, contact or company"))?;
    let entity = CrmEntity {
        entity_type,
        entity_id: l.entity_id,
    };
    let chat = ChatId(l.chat_id);
    with_tenant(&st, slug, true, move |tx, t| {
        tx.chat(t.id, chat)?.ok_or(CoreError::ChatNotFound)?;
        tx.link_crm(t.id, entity, chat)
    })
    .await?;
    created(json!({"entity_type": entity_type, "entity_id": l.entity_id, "chat_id": chat}))
}

#[derive(Deserialize)]
struct DeliveryQuery {
    status: Option<String>,
    tenant: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/v1/deliveries?status=pending|delivered|dead&tenant=slug`:
/// outbox rows with every attempt.
async fn list_deliveries(
    State(st): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DeliveryQuery>,
) -> AdminResult {
    authorize(&st, &headers)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| AdminError::bad_request("status must be pending, delivered or dead"))?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let slug = q.tenant.clone();
    let v = st
        .store
        .read(move |tx| {
            let tenant = match &slug {
                Some(s) => Some(
                    tx.tenant_by_slug(s)?
                        .ok_or(CoreError::Invalid(format!("tenant {s:?} not found")))?
                        .id,
                ),
                None => None,
            };
            let mut out = Vec::new();
            for d in tx.deliveries(tenant, status, limit)? {
                let attempts = tx.attempts(d.id)?;
                let sub = tx.subscription(&d.subscription_id)?;
                let mut j = json!(d);
                j["attempt_log"] = json!(attempts);
                j["target_url"] = json!(sub.as_ref().map(|s| s.target_url.clone()));
                j["face"] = json!(sub.map(|s| s.face));
                out.push(j);
            }
            Ok(out)
        })
        .await?;
    ok(v)
}

/// `POST /admin/v1/deliveries/{id}/replay`: back in the queue, due now.
async fn replay_delivery(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> AdminResult {
    authorize(&st, &headers)?;
    let id = int_param(&id, "delivery id")?;
    let now = crate::common::now() * 1000;
    let found = st.store.write(move |tx| tx.replay_delivery(id, now)).await?;
    if !found {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("delivery {id} not found"),
        ));
    }
    ok(json!({"replayed": id}))
}
