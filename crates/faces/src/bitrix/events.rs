//! Bitrix24 event delivery (`api-reference/events/index.md`): bot handlers
//! given to `imbot.register` (ONIMBOTJOINCHAT through EVENT_WELCOME_MESSAGE,
//! ONIMBOTDELETE through EVENT_BOT_DELETE) and app handlers bound with
//! `event.bind`. Delivered as `application/x-www-form-urlencoded` POSTs with
//! PHP-style keys: `event`, `event_handler_id`, `data[...]`, `ts`,
//! `auth[...]`; receivers check `auth[application_token]` (shown by
//! `app.info` as `APPLICATION_TOKEN`, a confab extension — Bitrix sends it
//! in ONAPPINSTALL).

use super::auth::Ctx;
use super::errors::BitrixError;
use super::methods::Outcome;
use super::params::Params;
use crate::common::{bounded, random_token};
use crate::AppState;
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_delivery::{Rendered, WebhookFormat};
use confab_store::StoreExt;
use serde_json::{json, Map, Value};

pub const BINDABLE: &[&str] = &["ONIMBOTJOINCHAT", "ONIMBOTDELETE"];

fn kinds_of(event: &str) -> Vec<EventKind> {
    match event {
        "ONIMBOTJOINCHAT" => vec![EventKind::Joined],
        "ONIMBOTDELETE" => vec![EventKind::BotDeleted],
        _ => vec![],
    }
}

/// The app's `application_token`, made on first use.
pub fn app_token(tx: &mut dyn StoreTx, tenant: TenantId, app: AppId) -> Result<String, CoreError> {
    let key = format!("bitrix_app_token:{}:{}", tenant.0, app.0);
    if let Some(t) = tx.setting(&key)? {
        return Ok(t);
    }
    let t = random_token(32);
    tx.set_setting(&key, &t)?;
    Ok(t)
}

fn subscription(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    app: AppId,
    event: &str,
    url: &str,
    subject: Option<UserId>,
    extra: Value,
) -> Result<Subscription, CoreError> {
    let now = tx.now();
    Ok(Subscription {
        id: format!("bx_{}", uuid::Uuid::new_v4().simple()),
        tenant_id: tenant,
        face: "bitrix".into(),
        target_url: url.to_string(),
        events: vec![event.to_string()],
        kinds: kinds_of(event),
        lines: vec![],
        subject_id: subject,
        secret: app_token(tx, tenant, app)?,
        extra: extra.to_string(),
        active: true,
        created_at: now,
        updated_at: now,
    })
}

/// Subscribes a newly registered bot's handlers.
pub fn bot_handlers(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    app: AppId,
    bot: UserId,
    code: &str,
    handlers: &Map<String, Value>,
) -> Result<(), CoreError> {
    for (key, event) in [
        ("EVENT_WELCOME_MESSAGE", "ONIMBOTJOINCHAT"),
        ("EVENT_BOT_DELETE", "ONIMBOTDELETE"),
    ] {
        if let Some(url) = handlers.get(key).and_then(Value::as_str) {
            let extra = json!({"event": event, "app": app.0, "bot_code": code});
            let sub = subscription(tx, tenant, app, event, url, Some(bot), extra)?;
            tx.insert_subscription(&sub)?;
        }
    }
    Ok(())
}

fn err(status: u16, code: &'static str, d: &str) -> BitrixError {
    BitrixError::new(status, code, d)
}

/// `event.bind`, `event.unbind`, `event.get` — app (OAuth) calls only.
pub async fn call(st: &AppState, ctx: &Ctx, method: &str, p: &Params) -> Result<Outcome, BitrixError> {
    let Some(app) = ctx.app.filter(|_| !ctx.webhook) else {
        return Err(err(
            403,
            "WRONG_AUTH_TYPE",
            "Access for this method not allowed by webhook authorization.",
        ));
    };
    let tenant = ctx.tenant.id;
    let store = |e: CoreError| super::methods::reword(super::errors::Method::ImChatGet, &e);
    let result = match method {
        "event.bind" | "event.unbind" => {
            let event = p
                .str("event")
                .map(|e| e.to_ascii_uppercase())
                .ok_or_else(|| err(400, "ERROR_EVENT_NOT_FOUND", "Event not found"))?;
            if method == "event.bind" && !BINDABLE.contains(&event.as_str()) {
                return Err(err(400, "ERROR_EVENT_NOT_FOUND", "Event not found"));
            }
            let handler = p.str("handler");
            if method == "event.bind" {
                let url = handler
                    .filter(|h| h.starts_with("http://") || h.starts_with("https://"))
                    .ok_or_else(|| err(400, "WRONG_HANDLER_URL", "Wrong handler URL"))?;
                bounded(st.store.write(move |tx| {
                    let extra = json!({"event": event, "app": app.0, "app_level": true});
                    let sub = subscription(tx, tenant, app, &event, &url, None, extra)?;
                    tx.insert_subscription(&sub)
                }))
                .await
                .map_err(store)?;
                json!(true)
            } else {
                let count = bounded(st.store.write(move |tx| {
                    let mut n = 0;
                    for s in tx.subscriptions(tenant, "bitrix")? {
                        let ex: Value = serde_json::from_str(&s.extra).unwrap_or(json!({}));
                        let mine = ex["app_level"] == true && ex["app"] == app.0 && ex["event"] == json!(event);
                        if mine
                            && handler.as_ref().is_none_or(|h| *h == s.target_url)
                            && tx.delete_subscription(tenant, &s.id)?
                        {
                            n += 1;
                        }
                    }
                    Ok(n)
                }))
                .await
                .map_err(store)?;
                json!({"count": count})
            }
        }
        _ => {
            let subs = bounded(st.store.read(move |tx| tx.subscriptions(tenant, "bitrix")))
                .await
                .map_err(store)?;
            let list: Vec<Value> = subs
                .iter()
                .filter_map(|s| {
                    let ex: Value = serde_json::from_str(&s.extra).ok()?;
                    (ex["app_level"] == true && ex["app"] == app.0)
                        .then(|| json!({"event": ex["event"], "handler": s.target_url, "auth_type": "0", "offline": 0}))
                })
                .collect();
            json!(list)
        }
    };
    Ok(Outcome {
        result,
        total: None,
        next: None,
    })
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// PHP `http_build_query` of a nested JSON object.
fn build_query(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}[{k}]")
                };
                build_query(&key, v, out);
            }
        }
        Value::Null => out.push(format!("{}=", enc(prefix))),
        Value::String(s) => out.push(format!("{}={}", enc(prefix), enc(s))),
        other => out.push(format!("{}={}", enc(prefix), enc(&other.to_string()))),
    }
}

pub struct BitrixFormat;

impl WebhookFormat for BitrixFormat {
    fn render(
        &self,
        tx: &mut dyn StoreTx,
        sub: &Subscription,
        event: &Event,
        _attempt: i64,
        now_ms: i64,
    ) -> Result<Option<Rendered>, CoreError> {
        let e = &event.event;
        let extra: Value = serde_json::from_str(&sub.extra).unwrap_or(json!({}));
        let name = extra["event"].as_str().unwrap_or_default().to_string();
        let app = AppId(extra["app"].as_i64().unwrap_or(0));
        let Some(bot_id) = e.subject_id else { return Ok(None) };
        let bot = tx.user(e.tenant_id, bot_id)?;
        // App-level handlers hear only about the app's own bots.
        if bot.as_ref().and_then(|b| b.app_id) != Some(app) {
            return Ok(None);
        }
        let code = extra["bot_code"]
            .as_str()
            .map(str::to_owned)
            .or(tx.bot_registration(e.tenant_id, bot_id)?.map(|(c, _)| c))
            .unwrap_or_default();
        let tenant = tx.tenant(e.tenant_id)?.map(|t| t.slug).unwrap_or_default();
        let data = match (name.as_str(), e.kind) {
            ("ONIMBOTJOINCHAT", EventKind::Joined) => {
                let Some(chat) = tx.chat(e.tenant_id, e.chat_id)? else {
                    return Ok(None);
                };
                let by = match e.actor_id {
                    Some(a) => tx.user(e.tenant_id, a)?,
                    None => None,
                };
                let chat_type = match chat.kind {
                    ChatKind::Dm => "P",
                    ChatKind::Group => "C",
                    ChatKind::OpenLine => "L",
                };
                json!({
                    "BOT": {bot_id.0.to_string(): {"BOT_ID": bot_id.0, "BOT_CODE": code, "domain": tenant, "application_token": sub.secret}},
                    "PARAMS": {
                        "CHAT_TYPE": chat_type, "MESSAGE_TYPE": chat_type, "BOT_ID": bot_id.0,
                        "USER_ID": e.actor_id.map(|a| a.0), "CHAT_ID": chat.id.0, "DIALOG_ID": format!("chat{}", chat.id.0),
                        "CHAT_AUTHOR_ID": chat.owner_id.map(|o| o.0), "CHAT_ENTITY_TYPE": "", "CHAT_ENTITY_ID": "",
                        "ACCESS_HISTORY": 1, "SILENT_JOIN": "N", "LANGUAGE": "en",
                    },
                    "USER": by.map(|u| json!({"ID": u.id.0, "NAME": u.name})).unwrap_or(json!({})),
                })
            }
            ("ONIMBOTDELETE", EventKind::BotDeleted) => json!({"BOT_ID": bot_id.0, "BOT_CODE": code}),
            _ => return Ok(None),
        };
        // The event time, not the attempt time: every attempt sends the same
        // body (Bitrix events carry no id; receivers de-duplicate on it).
        let _ = now_ms;
        let ts = e.at.to_string();
        let envelope = json!({
            "event": name,
            "event_handler_id": sub.id,
            "data": data,
            "ts": ts,
            "auth": {"domain": tenant, "client_endpoint": "", "server_endpoint": "", "member_id": tenant, "application_token": sub.secret},
        });
        let mut pairs = Vec::new();
        build_query("", &envelope, &mut pairs);
        Ok(Some(Rendered {
            body: pairs.join("&").into_bytes(),
            content_type: "application/x-www-form-urlencoded",
            headers: vec![],
        }))
    }
}
