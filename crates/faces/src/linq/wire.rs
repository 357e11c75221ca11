//! Linq objects: Chat, ChatHandle, messages — shared by the routes and the
//! webhooks.

use crate::common::iso8601;
use confab_core::tx::StoreTx;
use confab_core::*;
use serde_json::{json, Value};

/// ChatHandle: every participant the chat ever had, with `status`
/// `active` / `left` (left by itself) / `removed` and `left_at`.
pub fn handles(tx: &mut dyn StoreTx, chat: &Chat) -> Result<Vec<Value>, CoreError> {
    let history = tx.membership_history(chat.tenant_id, chat.id)?;
    let mut latest: Vec<Membership> = Vec::new();
    for m in history {
        match latest.iter_mut().find(|l| l.user_id == m.user_id) {
            Some(l) => *l = m,
            None => latest.push(m),
        }
    }
    let mut out = Vec::new();
    for m in latest {
        let Some(u) = tx.user(chat.tenant_id, m.user_id)? else {
            continue;
        };
        out.push(handle_json(chat, &u, &m));
    }
    Ok(out)
}

pub fn handle_json(chat: &Chat, u: &User, m: &Membership) -> Value {
    let status = match (m.left_at, m.removed) {
        (None, _) => "active",
        (Some(_), false) => "left",
        (Some(_), true) => "removed",
    };
    json!({
        "id": format!("{}:{}", chat.uuid, u.id),
        "handle": u.handle.clone().unwrap_or_default(),
        "joined_at": iso8601(m.joined_at),
        "service": "iMessage",
        "is_me": u.kind == UserKind::Line,
        "left_at": m.left_at.map(iso8601),
        "status": status,
    })
}

pub fn chat_json(tx: &mut dyn StoreTx, chat: &Chat) -> Result<Value, CoreError> {
    let hs = handles(tx, chat)?;
    let display = if chat.title.is_empty() {
        let names: Vec<&str> = hs
            .iter()
            .filter(|h| h["status"] == "active")
            .filter_map(|h| h["handle"].as_str())
            .collect();
        names.join(", ")
    } else {
        chat.title.clone()
    };
    Ok(json!({
        "id": chat.uuid.to_string(),
        "created_at": iso8601(chat.created_at),
        "updated_at": iso8601(chat.created_at),
        "display_name": display,
        "handles": hs,
        "is_archived": false,
        "is_group": chat.kind != ChatKind::Dm,
        "service": "iMessage",
    }))
}

pub fn sent_message_json(tx: &mut dyn StoreTx, chat: &Chat, m: &Message) -> Result<Value, CoreError> {
    let from = tx.user(chat.tenant_id, m.author_id)?.and_then(|u| u.handle);
    Ok(json!({
        "id": m.uuid.to_string(),
        "chat_id": chat.uuid.to_string(),
        "created_at": iso8601(m.created_at),
        "updated_at": iso8601(m.created_at),
        "delivery_status": "sent",
        "is_read": false,
        "is_delivered": false,
        "is_from_me": true,
        "parts": [{"type": "text", "value": m.text}],
        "sent_at": iso8601(m.created_at),
        "from_handle": from,
        "service": "iMessage",
    }))
}
