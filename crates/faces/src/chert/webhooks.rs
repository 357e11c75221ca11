//! Chert webhooks (docs /api/webhook-subscriptions): subscriptions CRUD
//! with a 32-byte secret shown once, `events` filter (omitted/[] = all),
//! `version`; deliveries in Chert's envelope, signed with the
//! subscription's secret: `X-Webhook-Timestamp` and `X-Webhook-Signature:
//! t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>` (the exact string is
//! not public; this is the form Chert's receivers are known to verify).
//! Membership changes go out as `participant.added` / `participant.removed`
//! — a confab extension: Chert documents no membership event.

use super::error::{from_core, ChertError, Route};
use super::Signed;
use crate::common::{bounded, iso8601, random_hex32};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_delivery::{Rendered, WebhookFormat};
use confab_store::StoreExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

pub const DEFAULT_VERSION: &str = "2026-04-01";
pub const EVENTS: &[&str] = &[
    "message.received",
    "message.sent",
    "participant.added",
    "participant.removed",
];

fn kinds_of(e: &str) -> &'static [EventKind] {
    match e {
        "participant.added" => &[EventKind::Joined],
        "participant.removed" => &[EventKind::Left, EventKind::Removed],
        "message.received" | "message.sent" => &[EventKind::MessageSent],
        _ => &[],
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhook-subscriptions", get(list).post(create))
        .route(
            "/api/v1/webhook-subscriptions/{id}",
            get(retrieve).patch(update).delete(remove),
        )
}

fn sub_json(s: &Subscription, secret: bool) -> Value {
    let version = serde_json::from_str::<Value>(&s.extra)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_VERSION.into());
    let mut v = json!({"id": s.id, "url": s.target_url, "events": s.events, "version": version, "is_active": s.active, "created_at": iso8601(s.created_at)});
    if secret {
        v["secret"] = json!(s.secret);
    }
    v
}

#[derive(Deserialize)]
struct SubIn {
    url: Option<String>,
    events: Option<Vec<String>>,
    version: Option<String>,
    is_active: Option<bool>,
}

fn kinds(events: &[String]) -> Result<Vec<EventKind>, ChertError> {
    let mut out = Vec::new();
    for e in events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(ChertError::new(
                1001,
                format!("Unknown event {e:?}; known: {}", EVENTS.join(", ")),
            ));
        }
        out.extend(
            kinds_of(e)
                .iter()
                .copied()
                .filter(|k| !out.contains(k))
                .collect::<Vec<_>>(),
        );
    }
    Ok(out)
}

/// HTTPS as documented; plain http only to loopback (local receivers).
fn check_url(url: &str) -> Result<(), ChertError> {
    let loopback =
        url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost") || url.starts_with("http://[::1]");
    if url.starts_with("https://") || loopback {
        Ok(())
    } else {
        Err(ChertError::new(
            1001,
            "url must be an HTTPS URL (plain http is accepted for loopback receivers only)",
        ))
    }
}

/// Runs `f` for an authenticated call; errors carry the call's trace id.
async fn run<F, Fut>(st: AppState, call: Signed, f: F) -> Response
where
    F: FnOnce(AppState, Tenant, Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ChertError>>,
{
    let Signed { tenant, trace, body } = call;
    match f(st, tenant, body).await {
        Ok(x) => x,
        Err(e) => e.trace(&trace.0).into_response(),
    }
}

async fn write<R: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
) -> Result<R, ChertError> {
    bounded(st.store.write(f)).await.map_err(|e| from_core(Route::Read, e))
}

async fn create(State(st): State<AppState>, call: Signed) -> Response {
    run(st, call, |st, tenant, body| async move {
        let b: SubIn = crate::common::parse_json(&body).map_err(|e| ChertError::new(1001, e))?;
        let url = b
            .url
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ChertError::missing("url"))?;
        check_url(&url)?;
        let events = b.events.unwrap_or_default();
        let kinds = kinds(&events)?;
        let version = b.version.unwrap_or_else(|| DEFAULT_VERSION.into());
        let sub = write(&st, move |tx| {
            let now = tx.now();
            let sub = Subscription {
                id: format!("whs_{}", uuid::Uuid::new_v4().simple()),
                tenant_id: tenant.id,
                face: "chert".into(),
                target_url: url,
                events,
                kinds,
                lines: vec![],
                subject_id: None,
                secret: random_hex32(),
                extra: json!({"version": version}).to_string(),
                active: true,
                created_at: now,
                updated_at: now,
            };
            tx.insert_subscription(&sub)?;
            Ok(sub)
        })
        .await?;
        Ok(Json(json!({"subscription": sub_json(&sub, true)})).into_response())
    })
    .await
}

async fn find(st: &AppState, tenant: TenantId, id: String) -> Result<Subscription, ChertError> {
    let sub = bounded(st.store.read(move |tx| tx.subscription(&id)))
        .await
        .map_err(|e| from_core(Route::Read, e))?;
    sub.filter(|s| s.tenant_id == tenant && s.face == "chert")
        .ok_or_else(|| ChertError::new(2002, "Webhook subscription not found"))
}

async fn list(State(st): State<AppState>, call: Signed) -> Response {
    run(st, call, |st, tenant, _| async move {
        let subs = bounded(st.store.read(move |tx| tx.subscriptions(tenant.id, "chert")))
            .await
            .map_err(|e| from_core(Route::Read, e))?;
        Ok(Json(json!({"subscriptions": subs.iter().map(|s| sub_json(s, false)).collect::<Vec<_>>()})).into_response())
    })
    .await
}

async fn retrieve(State(st): State<AppState>, Path(id): Path<String>, call: Signed) -> Response {
    run(st, call, |st, tenant, _| async move {
        Ok(Json(json!({"subscription": sub_json(&find(&st, tenant.id, id).await?, false)})).into_response())
    })
    .await
}

async fn update(State(st): State<AppState>, Path(id): Path<String>, call: Signed) -> Response {
    run(st, call, |st, tenant, body| async move {
        let mut sub = find(&st, tenant.id, id).await?;
        let b: SubIn = crate::common::parse_json(&body).map_err(|e| ChertError::new(1001, e))?;
        if let Some(url) = b.url {
            check_url(&url)?;
            sub.target_url = url;
        }
        if let Some(events) = b.events {
            sub.kinds = kinds(&events)?;
            sub.events = events;
        }
        if let Some(a) = b.is_active {
            sub.active = a;
        }
        let saved = sub.clone();
        write(&st, move |tx| tx.update_subscription(&saved)).await?;
        Ok(Json(json!({"subscription": sub_json(&sub, false)})).into_response())
    })
    .await
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>, call: Signed) -> Response {
    run(st, call, |st, tenant, _| async move {
        let sub = find(&st, tenant.id, id).await?;
        write(&st, move |tx| tx.delete_subscription(tenant.id, &sub.id)).await?;
        Ok(Json(json!({"deleted": true})).into_response())
    })
    .await
}

pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub struct ChertFormat;

impl WebhookFormat for ChertFormat {
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
            partner: slug,
            line_user,
            message,
        } = scene;
        let handle_of = |tx: &mut dyn StoreTx, u: Option<UserId>| -> Result<Value, CoreError> {
            let user = match u {
                Some(u) => tx.user(e.tenant_id, u)?,
                None => None,
            };
            Ok(
                json!({"handle": user.as_ref().and_then(|u| u.handle.clone()), "service": "imessage", "is_me": u.is_some() && u == line_user}),
            )
        };
        let chat_ref = json!({"id": chat.chert_id(), "is_group": chat.kind != ChatKind::Dm});
        let (event_type, data) = match e.kind {
            EventKind::Joined => (
                "participant.added",
                json!({"chat": chat_ref, "participant": handle_of(tx, e.subject_id)?, "added_at": iso8601(e.at)}),
            ),
            EventKind::Left | EventKind::Removed => (
                "participant.removed",
                json!({"chat": chat_ref, "participant": handle_of(tx, e.subject_id)?, "removed_at": iso8601(e.at)}),
            ),
            EventKind::MessageSent => {
                let Some(msg) = message else { return Ok(None) };
                let message = json!({
                    "id": msg.uuid.simple().to_string(),
                    "direction": if from_me { "outbound" } else { "inbound" },
                    "sender_handle": handle_of(tx, Some(msg.author_id))?,
                    "parts": [{"type": "text", "value": msg.text}],
                });
                (
                    if from_me { "message.sent" } else { "message.received" },
                    json!({"chat": chat_ref, "message": message}),
                )
            }
            EventKind::ChatCreated | EventKind::OwnerChanged | EventKind::BotDeleted => return Ok(None),
        };
        if !sub.events.is_empty() && !sub.events.iter().any(|s| s == event_type) {
            return Ok(None);
        }
        let version = serde_json::from_str::<Value>(&sub.extra)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_VERSION.into());
        let body = json!({
            "event": event_type,
            "event_id": format!("chert:evt:{}", event.uuid.simple()),
            "timestamp": iso8601(e.at).replace('Z', ".000Z"),
            "api_version": "v1",
            "webhook_version": version,
            "event_type": event_type,
            "trace_id": e.trace_id.clone().unwrap_or_else(|| event.uuid.simple().to_string()),
            "partner_id": slug,
            "data": data,
        })
        .to_string()
        .into_bytes();
        let ts = now_ms / 1000;
        let headers = vec![
            ("X-Webhook-Subscription-Id".to_string(), sub.id.clone()),
            ("X-Webhook-Timestamp".to_string(), ts.to_string()),
            (
                "X-Webhook-Signature".to_string(),
                format!("t={ts},v1={}", sign(&sub.secret, ts, &body)),
            ),
        ];
        Ok(Some(Rendered {
            body,
            content_type: "application/json",
            headers,
        }))
    }
}

#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let _ = crate::common::parse_json::<SubIn>(data);
}
