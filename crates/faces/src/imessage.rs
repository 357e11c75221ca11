//! iMessage chat plumbing shared by the Chert and Linq faces: opening a
//! chat from a line with its first message, and idempotency keys. (The
//! rules themselves are core's: `commands::create_chat`, `send_message`.)

use crate::common::random_token;
use confab_core::commands::{self, Author, CreateChat, Creator, MemberRef, SendMessage};
use confab_core::tx::StoreTx;
use confab_core::*;
use serde_json::Value;

/// Runs `work` once per idempotency key: a retry with the same key and the
/// same body gets the first answer; another body under the key is refused.
pub fn idempotent(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    scope: &str,
    key: Option<&str>,
    body_hash: &str,
    work: impl FnOnce(&mut dyn StoreTx) -> Result<Value, CoreError>,
) -> Result<Value, CoreError> {
    let Some(key) = key else { return work(tx) };
    // Two nodes answering the same key at once: the second waits here for
    // the first to commit, then finds its answer.
    tx.lock_key(&format!("idempotency:{tenant}:{scope}:{key}"))?;
    if let Some((hash, stored)) = tx.idempotent_response(tenant, scope, key)? {
        if hash != body_hash {
            return Err(CoreError::Invalid(
                "idempotency_key was already used with a different body".into(),
            ));
        }
        return serde_json::from_str(&stored).map_err(|e| CoreError::Internal(e.to_string()));
    }
    let v = work(tx)?;
    tx.save_idempotent_response(tenant, scope, key, body_hash, &v.to_string())?;
    Ok(v)
}

/// The line's existing DM with the one recipient, reused like Chert's
/// "follow-ups reuse that line".
pub fn existing_dm(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    from: &str,
    to: &[String],
) -> Result<Option<Chat>, CoreError> {
    let [recipient] = to else { return Ok(None) };
    let (Some(line), Some(user)) = (tx.line_by_number(tenant, from)?, tx.user_by_handle(tenant, recipient)?) else {
        return Ok(None);
    };
    // By the recipient's chats, not the line's: a line is in every chat it
    // serves, a recipient in a few.
    for chat in tx.chats_of_user(tenant, user.id)? {
        if chat.kind == ChatKind::Dm && chat.network == Network::Imessage {
            let members = tx.active_members(tenant, chat.id)?;
            if members.iter().any(|m| m.user_id == line.user_id) {
                return Ok(Some(chat));
            }
        }
    }
    Ok(None)
}

/// Opens a chat from the line `from` to `to` (1 = DM, reused if the line
/// already has one with that recipient; more = a new group) and sends the
/// first message — one transaction, the caller's.
pub fn open_chat(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    from: &str,
    to: &[String],
    subject: String,
    text: String,
    trace_id: &str,
) -> Result<(Chat, Message), CoreError> {
    let group = to.len() >= 2;
    let chat = match existing_dm(tx, tenant, from, to)? {
        Some(chat) if !group => chat,
        _ => {
            let cmd = CreateChat {
                tenant,
                id: None,
                uuid: None,
                kind: if group { ChatKind::Group } else { ChatKind::Dm },
                network: Network::Imessage,
                title: subject,
                creator: Some(Creator::Line(from.to_string())),
                members: to.iter().map(|h| MemberRef::Handle(h.clone())).collect(),
                chat_key: Some(random_token(24)),
                crm: None,
                trace_id: Some(trace_id.to_string()),
            };
            commands::create_chat(tx.as_tx(), &cmd)?.0
        }
    };
    let send = SendMessage {
        tenant,
        chat: chat.id,
        author: Author::Line,
        text,
        trace_id: Some(trace_id.to_string()),
    };
    commands::send_message(tx.as_tx(), &send)
}

/// What a webhook about an iMessage chat needs to know, loaded once for
/// every face's renderer.
pub struct Scene {
    pub chat: Chat,
    /// The tenant's slug (`partner_id`).
    pub partner: String,
    /// The user that is the chat's pinned line (`is_me`).
    pub line_user: Option<UserId>,
    /// The message of a `message_sent` event.
    pub message: Option<Message>,
}

impl Scene {
    /// None when the event's chat no longer exists.
    /// (Chert and Linq announce only iMessage chats: others give None.)
    pub fn load(tx: &mut dyn StoreTx, e: &NewEvent) -> Result<Option<Scene>, CoreError> {
        let Some(chat) = tx
            .chat(e.tenant_id, e.chat_id)?
            .filter(|c| c.network == Network::Imessage)
        else {
            return Ok(None);
        };
        let partner = tx.tenant(e.tenant_id)?.map(|t| t.slug).unwrap_or_default();
        let line_user = match chat.line_id {
            Some(l) => tx.line(e.tenant_id, l)?.map(|l| l.user_id),
            None => None,
        };
        let message = match e.message_id {
            // The newest message below id+1 is the message itself.
            Some(id) => tx
                .messages(e.tenant_id, chat.id, Some(MessageId(id.0 + 1)), 1)?
                .into_iter()
                .find(|m| m.id == id),
            None => None,
        };
        Ok(Some(Scene {
            chat,
            partner,
            line_user,
            message,
        }))
    }

    /// Whether the event's actor is the chat's own line.
    pub fn by_line(&self, e: &NewEvent) -> bool {
        e.actor_id.is_some() && e.actor_id == self.line_user
    }
}
