//! `/openapi/chert.json`.

use super::error::CODES;
use serde_json::{json, Map, Value};

/// (method, path, summary, error codes besides auth and 3000/3001, success schema)
const ROUTES: &[(&str, &str, &str, &[u16], &str)] = &[
    (
        "post",
        "/api/v1/chats/{id}/leave",
        "Leave an iMessage group from the pinned line (not idempotent)",
        &[1002, 1006, 2002, 4001, 4099],
        "Left",
    ),
    (
        "post",
        "/api/v1/chats",
        "Create a DM (1 recipient) or a group (2-31) with a first message",
        &[1001, 1003, 1006, 2006, 4001, 4099],
        "Created",
    ),
    (
        "get",
        "/api/v1/chats/{id}",
        "One chat with its handles",
        &[2002],
        "ChatBody",
    ),
    (
        "post",
        "/api/v1/chats/{id}/messages",
        "Send a message: {\"message\": {\"parts\": [...]}}",
        &[1001, 1006, 2002, 4001, 4099],
        "MessageBody",
    ),
    (
        "post",
        "/api/v1/chats/{id}/participants",
        "Add a participant (idempotent); returns the roster",
        &[1001, 1003, 1006, 2002, 4001, 4099],
        "Roster",
    ),
    (
        "delete",
        "/api/v1/chats/{id}/participants/{address}",
        "Remove a participant (URL-encoded address)",
        &[1001, 1002, 1006, 2002, 4001, 4099],
        "Roster",
    ),
    (
        "get",
        "/api/v1/phone-numbers",
        "The tenant's lines",
        &[],
        "PhoneNumbers",
    ),
];

/// The statuses a route answers with: each code's default status, the
/// per-route status of 4099 and of 1006 "too many recipients" (see
/// `error::from_core`), and the ones every route can give.
fn statuses(method: &str, path: &str, codes: &[u16]) -> Vec<(u16, Vec<u16>)> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<u16>> = Default::default();
    let mut add = |status: u16, code: u16| by_status.entry(status).or_default().push(code);
    for &c in codes {
        if let Some(def) = CODES.iter().find(|d| d.code == c) {
            add(def.status, c);
        }
        let adds_people = path.contains("participants") || path.ends_with("/messages");
        if c == 4099 {
            add(if adds_people { 422 } else { 501 }, c);
        }
        if c == 1006 && method == "post" && (path == "/api/v1/chats" || path.ends_with("/participants")) {
            add(422, c);
        }
    }
    for (status, code) in [(401, 2004), (401, 2013), (500, 3000), (503, 3001)] {
        add(status, code);
    }
    by_status.into_iter().collect()
}

pub fn document() -> Value {
    use crate::common::json_response;
    let mut paths = Map::new();
    for (method, path, summary, codes, ok) in ROUTES {
        let params = crate::common::path_params(path, &[("id", DEMO_CHAT), ("address", "+15550100003")]);
        let mut responses =
            json!({"200": json_response("success", json!({"$ref": format!("#/components/schemas/{ok}")}))});
        for (status, mut cs) in statuses(method, path, codes) {
            cs.dedup();
            let list: Vec<String> = cs.iter().map(|c| c.to_string()).collect();
            responses[status.to_string()] = json_response(
                &format!("error code {}", list.join(", ")),
                json!({"$ref": "#/components/schemas/Error"}),
            );
        }
        let op = json!({"summary": summary, "parameters": params, "responses": responses, "security": [{"signature": [], "tenant": []}, {"bearer": []}]});
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    let codes: Vec<Value> = CODES
        .iter()
        .map(|c| json!({"code": c.code, "status": c.status, "retryable": c.retryable, "meaning": c.name}))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "confab — Chert iMessage-line face", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {
            "signature": {"type": "apiKey", "in": "header", "name": "x-chert-signature", "description": "v1,<unix_seconds>,<hex HMAC-SHA256(signing secret, \"<ts>.<raw body>\")>"},
            "tenant": {"type": "apiKey", "in": "header", "name": "x-chert-tenant"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "the signing secret"}
        }, "schemas": schemas()},
        "x-error-codes": codes,
        "paths": paths,
    })
}

/// The demo world's "Launch follow-up" group (chat 3), as a Chert id.
const DEMO_CHAT: &str = "ch_3f1c1a522b0e4c399a550d7e3a1c0003";

fn schemas() -> Value {
    let obj = |required: &[&str], props: Value| json!({"type": "object", "required": required, "properties": props});
    let string = json!({"type": "string"});
    let chat_id = json!({"type": "string", "pattern": "^ch_[0-9a-f]{32}$"});
    json!({
        "Chat": obj(&["id", "handles", "is_group", "service", "created_at"], json!({
            "id": chat_id, "display_name": {"type": ["string", "null"]},
            "handles": {"type": "array", "items": obj(&["service", "address", "is_me"], json!({
                "service": {"const": "imessage"}, "address": string, "is_me": {"type": "boolean"}
            }))},
            "is_group": {"type": "boolean"}, "service": {"const": "imessage"},
            "health_score": {"type": "integer"}, "created_at": string
        })),
        "Message": obj(&["id", "chat_id", "parts", "status", "direction", "created_at"], json!({
            "id": string, "chat_id": chat_id,
            "parts": {"type": "array", "items": obj(&["type", "value"], json!({"type": string, "value": string}))},
            "status": string, "direction": {"enum": ["outbound", "inbound"]}, "created_at": string,
            "delivered_at": {"type": ["string", "null"]}, "read_at": {"type": ["string", "null"]}, "service": string
        })),
        "Left": obj(&["chat_id", "status"], json!({"chat_id": chat_id, "status": {"const": "left"}})),
        "Created": obj(&["chat", "message"], json!({"chat": {"$ref": "#/components/schemas/Chat"}, "message": {"$ref": "#/components/schemas/Message"}})),
        "ChatBody": obj(&["chat"], json!({"chat": {"$ref": "#/components/schemas/Chat"}})),
        "MessageBody": obj(&["message"], json!({"message": {"$ref": "#/components/schemas/Message"}})),
        "Roster": obj(&["chat_id", "participants"], json!({
            "chat_id": chat_id, "added": string, "removed": string,
            "participants": {"type": "array", "items": string}
        })),
        "PhoneNumbers": obj(&["phone_numbers"], json!({"phone_numbers": {"type": "array", "items": obj(
            &["id", "phone_number", "service", "is_active"],
            json!({"id": string, "phone_line_id": string, "phone_number": string, "service": string, "is_active": {"type": "boolean"}, "capabilities": {"type": "array", "items": string}})
        )}})),
        "Error": {"type": "object", "required": ["success", "error", "trace_id"], "additionalProperties": false, "properties": {
            "success": {"const": false},
            "error": obj(&["status", "code", "message", "retryable"], json!({
                "status": {"type": "integer"}, "code": {"type": "integer"}, "message": string, "retryable": {"type": "boolean"}
            })),
            "trace_id": string
        }},
    })
}
