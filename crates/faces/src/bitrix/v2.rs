//! The current bot API's chat methods (`imbot.v2.*`): camelCase parameters
//! (`botId`, `dialogId` = `chatN`, `userIds`), results one level deeper, and
//! their own error codes — mapped onto the same core commands as v1.

use super::auth::Ctx;
use super::errors::{BitrixError, Method};
use super::methods::{reword, Outcome};
use super::params::Params;
use crate::common::bounded;
use crate::AppState;
use confab_core::commands::{
    self, Add, ChatSelector, CreateChat, Creator, Leave, Leaver, MemberRef, Remove, TransferOwner,
};
use confab_core::policy::RemovePolicy;
use confab_core::tx::StoreTx;
use confab_core::*;
use confab_store::StoreExt;
use serde_json::{json, Value};

fn err(code: &'static str, d: &str) -> BitrixError {
    BitrixError::new(400, code, d)
}

/// v2 wording: bot errors have their own codes; the rest as v1.
fn word_v2(method: Method, e: &CoreError) -> BitrixError {
    match e {
        CoreError::BotNotFound => err("BOT_NOT_FOUND", "Bot not found"),
        CoreError::ForeignBot => err("BOT_OWNERSHIP_ERROR", "Bot belongs to another application"),
        CoreError::NotAMember | CoreError::NoLongerMember if method == Method::ImbotChatLeave => {
            BitrixError::new(403, "ACCESS_DENIED", "Bot is not a participant in the chat")
        }
        other => reword(method, other),
    }
}

fn dialog(p: &Params) -> Result<ChatId, BitrixError> {
    let d = p
        .str("dialogId")
        .ok_or_else(|| err("DIALOG_ID_EMPTY", "Dialog ID can't be empty"))?;
    d.strip_prefix("chat")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(ChatId)
        .ok_or_else(|| err("DIALOG_ID_EMPTY", "Dialog ID can't be empty"))
}

fn bot(p: &Params) -> Result<UserId, BitrixError> {
    match p.int("botId") {
        Ok(Some(b)) if b > 0 => Ok(UserId(b)),
        _ => Err(err("BOT_ID_REQUIRED", "Parameter botId is required")),
    }
}

/// The bot, checked against the calling app.
fn own_bot(tx: &mut dyn StoreTx, ctx: &Ctx, p: &Params, bot: UserId) -> Result<UserId, CoreError> {
    let app = match ctx.app {
        Some(a) => a,
        None => match p.str("clientId").or_else(|| p.str("CLIENT_ID")) {
            Some(c) => {
                tx.app_by_client_id(ctx.tenant.id, &c)?
                    .ok_or(CoreError::BotNotFound)?
                    .id
            }
            None => return Err(CoreError::Invalid(String::new())),
        },
    };
    commands::acting_bot(tx.as_tx(), ctx.tenant.id, app, Some(bot)).map(|b| b.id)
}

async fn write<T, F>(st: &AppState, method: Method, f: F) -> Result<T, BitrixError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<T, CoreError> + Send + 'static,
{
    bounded(st.store.write(f)).await.map_err(|e| word_v2(method, &e))
}

pub async fn call(st: &AppState, ctx: &Ctx, method: &str, p: &Params) -> Result<Outcome, BitrixError> {
    let ctx = ctx.clone();
    let p = p.clone();
    let b = bot(&p)?;
    let result: Value = match method {
        "imbot.v2.chat.add" => {
            let users = p.int_list("userIds").ok().flatten().unwrap_or_default();
            let title = p.str("title").unwrap_or_default();
            let chat = write(st, Method::ImbotChatAdd, move |tx| {
                let bot = own_bot(tx, &ctx, &p, b)?;
                let cmd = CreateChat {
                    tenant: ctx.tenant.id,
                    id: None,
                    uuid: None,
                    kind: ChatKind::Group,
                    network: Network::Internal,
                    title,
                    creator: Some(Creator::User(bot)),
                    members: users.into_iter().map(|u| MemberRef::Id(UserId(u))).collect(),
                    chat_key: None,
                    crm: None,
                    trace_id: None,
                };
                Ok(commands::create_chat(tx.as_tx(), &cmd)?.0)
            })
            .await?;
            json!({"chatId": chat.id.0, "dialogId": format!("chat{}", chat.id.0)})
        }
        "imbot.v2.chat.get" => {
            let chat = dialog(&p)?;
            write(st, Method::ImChatGet, move |tx| {
                let bot = own_bot(tx, &ctx, &p, b)?;
                let (c, members) = commands::view_chat(tx.as_tx(), ctx.tenant.id, chat, bot).map_err(|e| match e {
                    CoreError::NotAMember => CoreError::ChatNotFound,
                    other => other,
                })?;
                Ok(json!({"chat": {"id": c.id.0, "dialogId": format!("chat{}", c.id.0), "title": c.title, "ownerId": c.owner_id.map(|o| o.0), "userCounter": members.len()}}))
            })
            .await?
        }
        "imbot.v2.chat.leave" => {
            let chat = dialog(&p)?;
            write(st, Method::ImbotChatLeave, move |tx| {
                let bot = own_bot(tx, &ctx, &p, b)?;
                let app = tx
                    .user(ctx.tenant.id, bot)?
                    .and_then(|u| u.app_id)
                    .ok_or(CoreError::BotNotFound)?;
                let cmd = Leave {
                    tenant: ctx.tenant.id,
                    chat,
                    leaver: Leaver::Bot { app, bot_id: Some(bot) },
                    trace_id: None,
                };
                commands::leave(tx.as_tx(), &cmd)
            })
            .await?;
            json!({"result": true})
        }
        "imbot.v2.chat.setowner" => {
            let chat = dialog(&p)?;
            let new_owner = p
                .int("userId")
                .ok()
                .flatten()
                .filter(|u| *u > 0)
                .ok_or_else(|| err("USER_ID_EMPTY", "User ID can't be empty"))?;
            write(st, Method::ImbotChatSetOwner, move |tx| {
                let bot = own_bot(tx, &ctx, &p, b)?;
                let cmd = TransferOwner {
                    tenant: ctx.tenant.id,
                    chat,
                    actor: Some(bot),
                    new_owner: UserId(new_owner),
                    trace_id: None,
                };
                commands::transfer_owner(tx.as_tx(), &cmd)
            })
            .await?;
            json!({"result": true})
        }
        "imbot.v2.chat.user.add" => {
            let chat = dialog(&p)?;
            let users = p
                .int_list("userIds")
                .ok()
                .flatten()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| err("USER_ID_EMPTY", "User IDs can't be empty"))?;
            write(st, Method::ImbotChatUserAdd, move |tx| {
                let bot = own_bot(tx, &ctx, &p, b)?;
                for u in users {
                    commands::add(
                        tx.as_tx(),
                        &Add {
                            tenant: ctx.tenant.id,
                            chat,
                            actor: Some(bot),
                            member: MemberRef::Id(UserId(u)),
                            trace_id: None,
                        },
                    )?;
                }
                Ok(())
            })
            .await?;
            json!({"result": true})
        }
        "imbot.v2.chat.user.delete" => {
            let chat = dialog(&p)?;
            let user = p
                .int("userId")
                .ok()
                .flatten()
                .filter(|u| *u > 0)
                .ok_or_else(|| err("USER_ID_EMPTY", "User ID can't be empty"))?;
            write(st, Method::ImbotChatUserDelete, move |tx| {
                let bot = own_bot(tx, &ctx, &p, b)?;
                let cmd = Remove {
                    tenant: ctx.tenant.id,
                    chat: ChatSelector::Id(chat),
                    actor: Some(bot),
                    member: MemberRef::Id(UserId(user)),
                    policy: RemovePolicy::Bitrix,
                    trace_id: None,
                };
                commands::remove(tx.as_tx(), &cmd)
            })
            .await?;
            json!({"result": true})
        }
        "imbot.v2.chat.user.list" => {
            let chat = dialog(&p)?;
            let ids = write(st, Method::ImbotChatUserList, move |tx| {
                let bot = own_bot(tx, &ctx, &p, b)?;
                let (_, members) = commands::view_chat(tx.as_tx(), ctx.tenant.id, chat, bot)?;
                Ok(members.iter().map(|m| m.user_id.0).collect::<Vec<_>>())
            })
            .await?;
            json!({"userIds": ids})
        }
        _ => return Err(super::envelope::system::method_not_found()),
    };
    Ok(Outcome {
        result,
        total: None,
        next: None,
    })
}
