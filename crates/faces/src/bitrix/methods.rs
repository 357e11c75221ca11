//! The methods: each parses its parameters, runs ONE core command in one
//! transaction and shapes the documented result. Rule refusals come back as
//! `CoreError` and are worded by `errors::word` for the method.

use super::auth::Ctx;
use super::errors::{word, BitrixError, Method};
use super::params::{as_int, ParamError, Params};
use crate::common::bounded;
use crate::AppState;
use confab_core::commands::{
    self, Add, Author, ChatSelector, CreateChat, Creator, Leave, Leaver, MemberRef, RegisterBot, Remove, SendMessage,
    TransferOwner,
};
use confab_core::policy::RemovePolicy;
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_store::StoreExt;
use serde_json::{json, Map, Value};

/// A method's answer: `result`, plus `total`/`next` for list methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: Value,
    pub total: Option<usize>,
    pub next: Option<usize>,
}

impl Outcome {
    fn of(result: Value) -> Self {
        Outcome {
            result,
            total: None,
            next: None,
        }
    }
}

type R = Result<Outcome, BitrixError>;

/// The scope each known method needs; None = not a method confab knows.
/// `Some("")` = no scope needed (basic methods every app may call).
pub fn scope_of(method: &str) -> Option<&'static str> {
    Some(match method {
        "imbot.register"
        | "imbot.unregister"
        | "imbot.bot.list"
        | "imbot.chat.add"
        | "imbot.chat.get"
        | "imbot.chat.leave"
        | "imbot.chat.user.add"
        | "imbot.chat.user.list"
        | "imbot.chat.user.delete"
        | "imbot.chat.setowner"
        | "imbot.message.add"
        | "imbot.v2.bot.register"
        | "imbot.v2.bot.list"
        | "imbot.v2.chat.add"
        | "imbot.v2.chat.get"
        | "imbot.v2.chat.leave"
        | "imbot.v2.chat.setowner"
        | "imbot.v2.chat.user.add"
        | "imbot.v2.chat.user.delete"
        | "imbot.v2.chat.user.list" => "imbot",
        "im.chat.add"
        | "im.chat.get"
        | "im.chat.leave"
        | "im.chat.user.add"
        | "im.chat.user.delete"
        | "im.chat.user.list"
        | "im.chat.setowner"
        | "im.message.add" => "im",
        "imopenlines.crm.chat.get"
        | "imopenlines.crm.chat.getlastid"
        | "imopenlines.crm.chat.user.add"
        | "imopenlines.crm.chat.user.delete" => "imopenlines",
        "profile" | "scope" | "methods" | "server.time" | "app.info" | "user.current" | "batch" | "event.bind"
        | "event.unbind" | "event.get" => "",
        _ => return None,
    })
}

fn err(status: u16, code: &'static str, d: &str) -> BitrixError {
    BitrixError::new(status, code, d)
}

async fn write<T, F>(st: &AppState, method: Method, f: F) -> Result<T, BitrixError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<T, CoreError> + Send + 'static,
{
    bounded(st.store.write(f)).await.map_err(|e| reword(method, &e))
}

/// Words a core error; "no calling app" (an empty `Invalid`) is imbot's
/// ACCESS_DENIED "Client ID not specified".
pub(super) fn reword(method: Method, e: &CoreError) -> BitrixError {
    match e {
        CoreError::Invalid(m) if m.is_empty() => no_client_id(),
        _ => word(method, e),
    }
}

async fn read<T, F>(st: &AppState, method: Method, f: F) -> Result<T, BitrixError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<T, CoreError> + Send + 'static,
{
    bounded(st.store.read(f)).await.map_err(|e| reword(method, &e))
}

fn bad_type(e: ParamError) -> BitrixError {
    let ParamError::BadType(name) = e;
    err(
        400,
        "ERROR_ARGUMENT",
        &format!("The value of an argument {} has an invalid type", name.to_uppercase()),
    )
}

fn chat_id(p: &Params) -> Result<ChatId, BitrixError> {
    match p.int("CHAT_ID") {
        Ok(Some(id)) if id > 0 => Ok(ChatId(id)),
        _ => Err(err(400, "CHAT_ID_EMPTY", "Chat ID can't be empty")),
    }
}

/// `chatN` (or a bare chat id) from DIALOG_ID.
fn dialog_chat(p: &Params, name: &str) -> Option<ChatId> {
    let d = p.str(name)?;
    let n = d.strip_prefix("chat").unwrap_or(&d).parse::<i64>().ok()?;
    (n > 0).then_some(ChatId(n))
}

fn user_id(p: &Params, name: &str) -> Result<UserId, BitrixError> {
    match p.int(name) {
        Ok(Some(id)) if id > 0 => Ok(UserId(id)),
        _ => Err(err(400, "USER_ID_EMPTY", "User ID can't be empty")),
    }
}

fn users(p: &Params, name: &str) -> Result<Vec<i64>, BitrixError> {
    p.int_list(name)
        .map(Option::unwrap_or_default)
        .map_err(|_| err(400, "INVALID_FORMAT", &format!("Parameter {name} has wrong type")))
}

fn bot_id(p: &Params) -> Result<Option<UserId>, BitrixError> {
    match p.int("BOT_ID") {
        Ok(Some(id)) if id > 0 => Ok(Some(UserId(id))),
        Ok(_) => Ok(None),
        Err(_) => Err(err(400, "BOT_ID_ERROR", "Bot not found")),
    }
}

/// The calling application: the OAuth token's app, or `CLIENT_ID` (the
/// technical parameter for webhooks). `create` = imbot.register, which
/// installs the webhook's app on first use.
fn app_of(tx: &mut dyn StoreTx, ctx: &Ctx, p: &Params, create: bool) -> Result<Option<AppId>, CoreError> {
    if let Some(a) = ctx.app {
        return Ok(Some(a));
    }
    let Some(client_id) = p.str("CLIENT_ID") else {
        return Ok(None);
    };
    if let Some(app) = tx.app_by_client_id(ctx.tenant.id, &client_id)? {
        return Ok(Some(app.id));
    }
    if create {
        return Ok(Some(tx.insert_app(ctx.tenant.id, None, &client_id, &client_id)?.id));
    }
    Ok(None)
}

/// The app for a bot call, or ACCESS_DENIED when there is none.
fn app_required(tx: &mut dyn StoreTx, ctx: &Ctx, p: &Params) -> Result<AppId, CoreError> {
    match app_of(tx, ctx, p, false)? {
        Some(a) => Ok(a),
        // An unknown CLIENT_ID owns no bot.
        None if p.str("CLIENT_ID").is_some() => Err(CoreError::BotNotFound),
        None => Err(CoreError::Invalid(String::new())),
    }
}

/// Who acts: the bot (imbot.* — BOT_ID, or the app's first bot) or the
/// calling user (im.*).
fn caller(tx: &mut dyn StoreTx, ctx: &Ctx, p: &Params, as_bot: bool, bot: Option<UserId>) -> Result<UserId, CoreError> {
    if as_bot {
        acting_bot(tx, ctx, p, bot)
    } else {
        Ok(ctx.user)
    }
}

fn no_client_id() -> BitrixError {
    err(403, "ACCESS_DENIED", "Access denied! Client ID not specified")
}

/// Resolves the acting bot (BOT_ID, or the app's first bot).
fn acting_bot(tx: &mut dyn StoreTx, ctx: &Ctx, p: &Params, bot: Option<UserId>) -> Result<UserId, CoreError> {
    let app = app_required(tx, ctx, p)?;
    commands::acting_bot(tx.as_tx(), ctx.tenant.id, app, bot).map(|b| b.id)
}

pub async fn call(st: &AppState, ctx: &Ctx, method: &str, p: &Params) -> R {
    let ctx = ctx.clone();
    let p = p.clone();
    match method {
        "profile" | "user.current" => {
            let (t, u) = (ctx.tenant.id, ctx.user);
            let user = read(st, Method::ImChatGet, move |tx| tx.user(t, u)).await?;
            let name = user.map(|u| u.name).unwrap_or_default();
            let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
            Ok(Outcome::of(
                json!({"ID": ctx.user.0.to_string(), "ADMIN": false, "NAME": first, "LAST_NAME": last, "PERSONAL_GENDER": "", "TIME_ZONE": "", "TIME_ZONE_OFFSET": 0}),
            ))
        }
        "scope" => Ok(Outcome::of(json!(ctx.scopes))),
        "server.time" => Ok(Outcome::of(json!(
            crate::common::iso8601(crate::common::now()).replace('Z', "+00:00")
        ))),
        "methods" => {
            let all = super::openapi::METHODS;
            let allowed: Vec<&str> = all
                .iter()
                .copied()
                .filter(|m| {
                    scope_of(&m.to_lowercase()).is_some_and(|s| s.is_empty() || ctx.scopes.iter().any(|c| c == s))
                })
                .collect();
            Ok(Outcome::of(json!(allowed)))
        }
        "app.info" => {
            let (t, app) = (ctx.tenant.id, ctx.app);
            let app = match app {
                Some(a) => {
                    write(st, Method::ImChatGet, move |tx| {
                        let token = super::events::app_token(tx, t, a)?;
                        Ok(tx.app(t, a)?.map(|app| (app, token)))
                    })
                    .await?
                }
                None => None,
            };
            let (app, token) = match app {
                Some((a, t)) => (Some(a), Some(t)),
                None => (None, None),
            };
            Ok(Outcome::of(json!({
                "ID": app.as_ref().map(|a| a.id.0),
                "CODE": app.as_ref().map(|a| a.client_id.clone()),
                "VERSION": 1,
                "STATUS": "L",
                "INSTALLED": true,
                "PAYMENT_EXPIRED": "N",
                "DAYS": null,
                "LICENSE": "",
                // confab extension: what Bitrix sends in ONAPPINSTALL.
                "APPLICATION_TOKEN": token,
            })))
        }
        "imbot.register" | "imbot.v2.bot.register" => imbot_register(st, ctx, p, method.starts_with("imbot.v2")).await,
        "imbot.unregister" => imbot_unregister(st, ctx, p).await,
        "imbot.bot.list" | "imbot.v2.bot.list" => imbot_bot_list(st, ctx, method.starts_with("imbot.v2")).await,
        "imbot.chat.add" => chat_add(st, ctx, p, true).await,
        "im.chat.add" => chat_add(st, ctx, p, false).await,
        "imbot.chat.get" | "im.chat.get" => chat_get(st, ctx, p).await,
        "imbot.chat.leave" => {
            let chat = chat_id(&p)?;
            let bot = bot_id(&p)?;
            write(st, Method::ImbotChatLeave, move |tx| {
                let app = app_required(tx, &ctx, &p)?;
                let cmd = Leave {
                    tenant: ctx.tenant.id,
                    chat,
                    leaver: Leaver::Bot { app, bot_id: bot },
                    trace_id: None,
                };
                commands::leave(tx.as_tx(), &cmd)
            })
            .await?;
            Ok(Outcome::of(json!(true)))
        }
        "im.chat.leave" => {
            let chat = chat_id(&p)?;
            let cmd = Leave {
                tenant: ctx.tenant.id,
                chat,
                leaver: Leaver::User(ctx.user),
                trace_id: None,
            };
            write(st, Method::ImChatLeave, move |tx| commands::leave(tx.as_tx(), &cmd)).await?;
            Ok(Outcome::of(json!(true)))
        }
        "imbot.chat.user.add" | "im.chat.user.add" => {
            let as_bot = method.starts_with("imbot");
            let m = if as_bot {
                Method::ImbotChatUserAdd
            } else {
                Method::ImChatUserAdd
            };
            let chat = chat_id(&p)?;
            if p.present("USERS").is_some_and(|v| !v.is_array() && !v.is_object()) && as_bot {
                return Err(err(400, "WRONG_REQUEST", "User IDs must be passed in array format"));
            }
            let list = users(&p, "USERS")?;
            if list.is_empty() {
                return Err(err(400, "WRONG_REQUEST", "User IDs must be passed in array format"));
            }
            let bot = bot_id(&p)?;
            let added = write(st, m, move |tx| {
                let actor = caller(tx, &ctx, &p, as_bot, bot)?;
                let mut any = false;
                for u in list {
                    let cmd = Add {
                        tenant: ctx.tenant.id,
                        chat,
                        actor: Some(actor),
                        member: MemberRef::Id(UserId(u)),
                        trace_id: None,
                    };
                    any |= commands::add(tx.as_tx(), &cmd)?.added;
                }
                Ok(any)
            })
            .await?;
            if !added {
                return Err(err(
                    400,
                    "WRONG_REQUEST",
                    "You don't have access or user already member in chat",
                ));
            }
            Ok(Outcome::of(json!(true)))
        }
        "imbot.chat.user.list" | "im.chat.user.list" => {
            let as_bot = method.starts_with("imbot");
            let m = if as_bot {
                Method::ImbotChatUserList
            } else {
                Method::ImChatUserList
            };
            let chat = chat_id(&p)?;
            let bot = bot_id(&p)?;
            let ids = read(st, m, move |tx| {
                let viewer = caller(tx, &ctx, &p, as_bot, bot)?;
                match (commands::view_chat(tx.as_tx(), ctx.tenant.id, chat, viewer), as_bot) {
                    (Ok((_, members)), _) => Ok(members.iter().map(|m| m.user_id.0).collect::<Vec<_>>()),
                    // im.chat.user.list: "empty array when the caller may
                    // not see participants (not an error)".
                    (Err(CoreError::NotAMember), false) => Ok(vec![]),
                    // imbot.chat.user.list: ACCESS_ERROR "Action unavailable".
                    (Err(CoreError::NotAMember), true) => Err(CoreError::DirectChat),
                    (Err(e), _) => Err(e),
                }
            })
            .await?;
            Ok(Outcome::of(json!(ids)))
        }
        "imbot.chat.user.delete" | "im.chat.user.delete" => {
            let as_bot = method.starts_with("imbot");
            let m = if as_bot {
                Method::ImbotChatUserDelete
            } else {
                Method::ImChatUserDelete
            };
            let chat = chat_id(&p)?;
            let target = user_id(&p, "USER_ID")?;
            let bot = bot_id(&p)?;
            write(st, m, move |tx| {
                let actor = caller(tx, &ctx, &p, as_bot, bot)?;
                let cmd = Remove {
                    tenant: ctx.tenant.id,
                    chat: ChatSelector::Id(chat),
                    actor: Some(actor),
                    member: MemberRef::Id(target),
                    policy: RemovePolicy::Bitrix,
                    trace_id: None,
                };
                commands::remove(tx.as_tx(), &cmd)
            })
            .await?;
            Ok(Outcome::of(json!(true)))
        }
        "imbot.chat.setowner" | "im.chat.setowner" => {
            let as_bot = method.starts_with("imbot");
            let m = if as_bot {
                Method::ImbotChatSetOwner
            } else {
                Method::ImChatSetOwner
            };
            let chat = match (chat_id(&p), dialog_chat(&p, "DIALOG_ID")) {
                (Ok(c), _) => c,
                (Err(_), Some(c)) if !as_bot => c,
                (Err(e), _) if p.present("DIALOG_ID").is_none() || as_bot => return Err(e),
                _ => return Err(err(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty")),
            };
            let new_owner = user_id(&p, "USER_ID")?;
            let bot = bot_id(&p)?;
            write(st, m, move |tx| {
                let actor = caller(tx, &ctx, &p, as_bot, bot)?;
                let cmd = TransferOwner {
                    tenant: ctx.tenant.id,
                    chat,
                    actor: Some(actor),
                    new_owner,
                    trace_id: None,
                };
                commands::transfer_owner(tx.as_tx(), &cmd)
            })
            .await?;
            Ok(Outcome::of(json!(true)))
        }
        "imbot.message.add" | "im.message.add" => {
            let as_bot = method.starts_with("imbot");
            let m = if as_bot {
                Method::ImbotMessageAdd
            } else {
                Method::ImMessageAdd
            };
            let text = p
                .str("MESSAGE")
                .ok_or_else(|| err(400, "MESSAGE_EMPTY", "Message can't be empty"))?;
            let chat = match dialog_chat(&p, "DIALOG_ID") {
                Some(c) => c,
                None if p.present("DIALOG_ID").is_none() => {
                    return Err(err(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty"));
                }
                None => return Err(err(400, "WRONG_REQUEST", "Message isn't added")),
            };
            let bot = bot_id(&p)?;
            let (_, msg) = write(st, m, move |tx| {
                let author = caller(tx, &ctx, &p, as_bot, bot)?;
                let cmd = SendMessage {
                    tenant: ctx.tenant.id,
                    chat,
                    author: Author::User(author),
                    text,
                    trace_id: None,
                };
                commands::send_message(tx.as_tx(), &cmd)
            })
            .await?;
            Ok(Outcome::of(json!(msg.id.0)))
        }
        "imopenlines.crm.chat.get" => crm_chat_get(st, ctx, p).await,
        "event.bind" | "event.unbind" | "event.get" => super::events::call(st, &ctx, method, &p).await,
        "imopenlines.crm.chat.getlastid" => {
            let entity = crm_entity(&p, Method::CrmChatGetLastId)?;
            let t = ctx.tenant.id;
            let id = read(st, Method::CrmChatGetLastId, move |tx| {
                tx.crm_chats(t, entity)?.last().copied().ok_or(CoreError::NoCrmChat)
            })
            .await?;
            Ok(Outcome::of(json!(id.0)))
        }
        "imopenlines.crm.chat.user.add" => crm_user(st, ctx, p, true).await,
        "imopenlines.crm.chat.user.delete" => crm_user(st, ctx, p, false).await,
        "imbot.v2.chat.add"
        | "imbot.v2.chat.get"
        | "imbot.v2.chat.leave"
        | "imbot.v2.chat.setowner"
        | "imbot.v2.chat.user.add"
        | "imbot.v2.chat.user.delete"
        | "imbot.v2.chat.user.list" => super::v2::call(st, &ctx, method, &p).await,
        _ => Err(super::envelope::system::method_not_found()),
    }
}

async fn imbot_register(st: &AppState, ctx: Ctx, p: Params, v2: bool) -> R {
    let (code, name, meta) = if v2 {
        let code = p
            .str("code")
            .ok_or_else(|| err(400, "CODE_ERROR", "Bot code isn't specified"))?;
        let props = p.object("properties").unwrap_or_default();
        let name = props
            .str("name")
            .or_else(|| props.str("lastName"))
            .ok_or_else(|| err(400, "NAME_ERROR", "Bot name isn't specified"))?;
        (
            code,
            name,
            json!({"type": p.str("type").unwrap_or_else(|| "bot".into()), "v2": true}),
        )
    } else {
        let code = p
            .str("CODE")
            .ok_or_else(|| err(400, "CODE_ERROR", "Bot code isn't specified"))?;
        let handler = p.str("EVENT_HANDLER");
        let mut handlers = Map::new();
        for (key, required, code_name) in [
            ("EVENT_MESSAGE_ADD", true, "EVENT_MESSAGE_ADD_ERROR"),
            ("EVENT_WELCOME_MESSAGE", true, "EVENT_WELCOME_MESSAGE_ERROR"),
            ("EVENT_BOT_DELETE", true, "EVENT_BOT_DELETE_ERROR"),
            ("EVENT_MESSAGE_UPDATE", false, "EVENT_MESSAGE_UPDATE_ERROR"),
            ("EVENT_MESSAGE_DELETE", false, "EVENT_MESSAGE_DELETE_ERROR"),
        ] {
            match p.str(key).or_else(|| handler.clone()) {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    handlers.insert(key.to_string(), json!(url));
                }
                Some(_) => return Err(BitrixError::new(400, code_name, "Wrong handler URL")),
                None if required => {
                    return Err(BitrixError::new(
                        400,
                        code_name,
                        format!(
                            "Handler for \"{}\" isn't specified",
                            key.trim_start_matches("EVENT_").to_lowercase()
                        ),
                    ))
                }
                None => {}
            }
        }
        let props = p.object("PROPERTIES").unwrap_or_default();
        let name = match (props.str("NAME"), props.str("LAST_NAME")) {
            (Some(n), Some(l)) => format!("{n} {l}"),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => return Err(err(400, "NAME_ERROR", "Bot name isn't specified")),
        };
        let kind = p.str("TYPE").unwrap_or_else(|| "B".into());
        let openline = if kind == "O" {
            "Y".to_string()
        } else {
            p.str("OPENLINE").unwrap_or_else(|| "N".into())
        };
        (
            code,
            name,
            json!({"type": kind, "openline": openline, "handlers": handlers}),
        )
    };
    let bot = write(st, Method::ImbotChatAdd, move |tx| {
        let Some(app) = app_of(tx, &ctx, &p, true)? else {
            return Err(CoreError::Invalid(String::new()));
        };
        if tx.bot_by_code(ctx.tenant.id, &code)?.is_some() {
            return Err(CoreError::Conflict(format!("bot code {code}")));
        }
        let bot = commands::register_bot(
            tx.as_tx(),
            &RegisterBot {
                tenant: ctx.tenant.id,
                app,
                code: code.clone(),
                name,
                meta: meta.to_string(),
            },
        )?;
        tx.set_bot_registration(ctx.tenant.id, bot.id, Some(&code), Some(&meta.to_string()))?;
        if let Some(handlers) = meta.get("handlers").and_then(Value::as_object) {
            super::events::bot_handlers(tx, ctx.tenant.id, app, bot.id, &code, handlers)?;
        }
        Ok(bot)
    })
    .await
    .map_err(|e| match e.code {
        "WRONG_REQUEST" => err(400, "WRONG_REQUEST", "Bot can't be created"),
        _ => e,
    })?;
    if v2 {
        return Ok(Outcome::of(json!({"bot": {"id": bot.id.0, "name": bot.name}})));
    }
    Ok(Outcome::of(json!(bot.id.0)))
}

async fn imbot_unregister(st: &AppState, ctx: Ctx, p: Params) -> R {
    let bot = match bot_id(&p)? {
        Some(b) => b,
        None => return Err(err(400, "BOT_ID_ERROR", "Bot not found")),
    };
    write(st, Method::ImbotChatLeave, move |tx| {
        let app = app_required(tx, &ctx, &p)?;
        let user = commands::unregister_bot(tx.as_tx(), ctx.tenant.id, app, bot)?;
        tx.set_user_active(ctx.tenant.id, user.id, false)?;
        tx.set_bot_registration(ctx.tenant.id, user.id, None, None)?;
        Ok(())
    })
    .await?;
    Ok(Outcome::of(json!(true)))
}

async fn imbot_bot_list(st: &AppState, ctx: Ctx, v2: bool) -> R {
    let t = ctx.tenant.id;
    let bots = read(st, Method::ImbotChatAdd, move |tx| {
        let mut out = Vec::new();
        for u in tx.bots(t)?.into_iter().filter(|u| u.active) {
            let (code, meta) = tx
                .bot_registration(t, u.id)?
                .unwrap_or_else(|| (format!("bot{}", u.id), "{}".into()));
            out.push((u, code, meta));
        }
        Ok(out)
    })
    .await?;
    if v2 {
        let list: Vec<Value> = bots
            .iter()
            .map(|(u, code, _)| json!({"id": u.id.0, "code": code, "name": u.name}))
            .collect();
        return Ok(Outcome::of(json!({"bots": list})));
    }
    let mut map = Map::new();
    for (u, code, meta) in bots {
        let meta: Value = serde_json::from_str(&meta).unwrap_or(json!({}));
        let openline = meta.get("openline").and_then(Value::as_str).unwrap_or("N").to_string();
        map.insert(
            u.id.0.to_string(),
            json!({"ID": u.id.0, "NAME": u.name, "CODE": code, "OPENLINE": openline}),
        );
    }
    // PHP serialises an empty array as [].
    Ok(Outcome::of(if map.is_empty() { json!([]) } else { Value::Object(map) }))
}

/// `ENTITY_TYPE=CRM`, `ENTITY_ID=LEAD|1205` — the documented CRM binding.
fn crm_binding(entity_type: &str, entity_id: &str) -> Option<CrmEntity> {
    if !entity_type.eq_ignore_ascii_case("CRM") {
        return None;
    }
    let (t, id) = entity_id.split_once('|')?;
    Some(CrmEntity {
        entity_type: CrmEntityType::parse(t)?,
        entity_id: id.trim().parse().ok()?,
    })
}

async fn chat_add(st: &AppState, ctx: Ctx, p: Params, as_bot: bool) -> R {
    let m = if as_bot {
        Method::ImbotChatAdd
    } else {
        Method::ImChatAdd
    };
    if p.present("USERS")
        .is_some_and(|v| !(v.is_array() || v.is_object() || as_int(v).is_some()))
    {
        return Err(err(400, "INVALID_FORMAT", "Parameter USERS has wrong type"));
    }
    let list = users(&p, "USERS")?;
    let title = p.str("TITLE").unwrap_or_default();
    let message = p.str("MESSAGE");
    let binding = match (p.str("ENTITY_TYPE"), p.str("ENTITY_ID")) {
        (Some(t), Some(i)) => Some((t, i)),
        _ => None,
    };
    let bot = bot_id(&p)?;
    let id = write(st, m, move |tx| {
        let creator = caller(tx, &ctx, &p, as_bot, bot)?;
        let crm = binding.as_ref().and_then(|(t, i)| crm_binding(t, i));
        let cmd = CreateChat {
            tenant: ctx.tenant.id,
            id: None,
            uuid: None,
            kind: ChatKind::Group,
            network: Network::Internal,
            title,
            creator: Some(Creator::User(creator)),
            members: list.into_iter().map(|u| MemberRef::Id(UserId(u))).collect(),
            chat_key: None,
            crm,
            trace_id: None,
        };
        let (chat, _) = commands::create_chat(tx.as_tx(), &cmd)?;
        if let Some((t, i)) = &binding {
            tx.bind_chat(ctx.tenant.id, t, i, chat.id)?;
        }
        if let Some(text) = message {
            let send = SendMessage {
                tenant: ctx.tenant.id,
                chat: chat.id,
                author: Author::User(creator),
                text,
                trace_id: None,
            };
            commands::send_message(tx.as_tx(), &send)?;
        }
        Ok(chat.id)
    })
    .await?;
    Ok(Outcome::of(json!(id.0)))
}

/// `im.chat.get` / `imbot.chat.get`: `{"ID": n}` or null.
async fn chat_get(st: &AppState, ctx: Ctx, p: Params) -> R {
    let (Some(t), Some(i)) = (p.str("ENTITY_TYPE"), p.str("ENTITY_ID")) else {
        return Ok(Outcome::of(Value::Null));
    };
    let tenant = ctx.tenant.id;
    let found = read(st, Method::ImChatGet, move |tx| {
        if let Some(c) = tx.chat_by_binding(tenant, &t, &i)? {
            return Ok(Some(c));
        }
        match crm_binding(&t, &i) {
            Some(entity) => Ok(tx.crm_chats(tenant, entity)?.last().copied()),
            None => Ok(None),
        }
    })
    .await?;
    Ok(Outcome::of(found.map(|c| json!({"ID": c.0})).unwrap_or(Value::Null)))
}

/// `CRM_ENTITY_TYPE` + `CRM_ENTITY`, worded per method (seed 002 and the
/// crm.chat.get page differ).
fn crm_entity(p: &Params, m: Method) -> Result<CrmEntity, BitrixError> {
    let get = m == Method::CrmChatGet;
    let Some(t) = p.str("CRM_ENTITY_TYPE") else {
        return Err(if get {
            err(400, "ERROR_ARGUMENT", "Argument 'CRM_ENTITY_TYPE' is null or empty")
        } else {
            err(400, "CRM_CHAT_EMPTY_CRM_DATA", "Empty CRM data")
        });
    };
    let Some(raw) = p.present("CRM_ENTITY") else {
        return Err(if get {
            err(400, "ERROR_ARGUMENT", "Argument 'CRM_ENTITY' is null or empty")
        } else {
            err(400, "CRM_CHAT_EMPTY_CRM_DATA", "Empty CRM data")
        });
    };
    let Some(id) = as_int(raw) else {
        return Err(err(
            400,
            "ERROR_ARGUMENT",
            if get {
                "The value of an argument 'CRM_ENTITY' has an invalid type"
            } else {
                "The value of an argument CRM_ENTITY has an invalid type"
            },
        ));
    };
    // A type that is no CRM entity: "bad/non-existent CRM_ENTITY_TYPE" is
    // ACCESS_DENIED in the docs.
    let entity_type = CrmEntityType::parse(&t).ok_or_else(|| match m {
        Method::CrmChatGet => err(
            403,
            "ACCESS_DENIED",
            "Access denied! You don't have access to this action",
        ),
        Method::CrmChatGetLastId => err(400, "CRM_CHAT_EMPTY_CRM_DATA", "Could not find CRM object"),
        _ => err(
            403,
            "ACCESS_DENIED",
            "Access denied! You don't have access to join user to chat",
        ),
    })?;
    Ok(CrmEntity {
        entity_type,
        entity_id: id,
    })
}

async fn crm_chat_get(st: &AppState, ctx: Ctx, p: Params) -> R {
    let entity = crm_entity(&p, Method::CrmChatGet)?;
    let active_only = p.flag("ACTIVE_ONLY").unwrap_or(true);
    let t = ctx.tenant.id;
    let chats = read(st, Method::CrmChatGet, move |tx| {
        let mut out = Vec::new();
        for id in tx.crm_chats(t, entity)? {
            if !active_only || tx.active_count(t, id)? > 0 {
                out.push(id);
            }
        }
        Ok(out)
    })
    .await?;
    let list: Vec<Value> = chats
        .iter()
        .map(|c| json!({"CHAT_ID": c.0.to_string(), "CONNECTOR_ID": "livechat", "CONNECTOR_TITLE": "Live Chat"}))
        .collect();
    Ok(Outcome::of(json!(list)))
}

/// `imopenlines.crm.chat.user.add` / `.delete` (seed 002): the result is the
/// chat id as an integer, `0` when CHAT_ID is omitted and the entity has no
/// chat.
async fn crm_user(st: &AppState, ctx: Ctx, p: Params, add: bool) -> R {
    let m = if add {
        Method::CrmChatUserAdd
    } else {
        Method::CrmChatUserDelete
    };
    let entity = crm_entity(&p, m)?;
    let target = match p.int("USER_ID") {
        Ok(Some(u)) if u > 0 => UserId(u),
        Ok(_) if add => return Err(err(400, "ERROR_ARGUMENT", "Argument 'Empty USER_ID' is null or empty")),
        Ok(_) => return Err(err(400, "CRM_CHAT_EMPTY_USER", "Empty User ID")),
        Err(e) => return Err(bad_type(e)),
    };
    let chat = match p.int("CHAT_ID") {
        Ok(c) => c.filter(|c| *c > 0).map(ChatId),
        Err(e) => return Err(bad_type(e)),
    };
    let outcome = write(st, m, move |tx| {
        let selector = ChatSelector::Crm { entity, chat };
        if add {
            let chats = tx.crm_chats(ctx.tenant.id, entity)?;
            let chat_id = policy::resolve_crm_chat(&chats, chat)?;
            // The caller needs access to the chat (its owner or a member).
            let cmd = Add {
                tenant: ctx.tenant.id,
                chat: chat_id,
                actor: Some(ctx.user),
                member: MemberRef::Id(target),
                trace_id: None,
            };
            let out = commands::add(tx.as_tx(), &cmd)?;
            if !out.added {
                return Ok(Err(()));
            }
            return Ok(Ok(chat_id));
        }
        let cmd = Remove {
            tenant: ctx.tenant.id,
            chat: selector,
            actor: Some(ctx.user),
            member: MemberRef::Id(target),
            policy: RemovePolicy::OpenLine,
            trace_id: None,
        };
        Ok(Ok(commands::remove(tx.as_tx(), &cmd)?.chat.id))
    })
    .await;
    match outcome {
        Ok(Ok(chat)) => Ok(Outcome::of(json!(chat.0))),
        Ok(Err(())) => Err(err(
            400,
            "WRONG_REQUEST",
            "You don't have access or user already member in chat",
        )),
        // "0 if CHAT_ID omitted and no chat found".
        Err(e) if e.code == "CRM_CHAT_EMPTY_CRM_DATA" && chat.is_none() => Ok(Outcome::of(json!(0))),
        Err(e) => Err(e),
    }
}
