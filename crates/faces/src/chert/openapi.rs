//! `/openapi/chert.json`.

use super::error::CODES;
use serde_json::{json, Map, Value};

const ROUTES: &[(&str, &str, &str, &[u16])] = &[
    (
        "post",
        "/api/v1/chats/{id}/leave",
        "Leave an iMessage group from the pinned line (not idempotent)",
        &[1002, 1006, 2002, 4001, 4099],
    ),
    (
        "post",
        "/api/v1/chats",
        "Create a DM (1 recipient) or a group (2-31) with a first message",
        &[1001, 1003, 1006, 2006, 4001, 4099],
    ),
    ("get", "/api/v1/chats/{id}", "One chat with its handles", &[2002]),
    (
        "post",
        "/api/v1/chats/{id}/messages",
        "Send a message: {\"message\": {\"parts\": [...]}}",
        &[1001, 1006, 2002, 4001, 4099],
    ),
    (
        "post",
        "/api/v1/chats/{id}/participants",
        "Add a participant (idempotent); returns the roster",
        &[1001, 1003, 1006, 2002, 4001, 4099],
    ),
    (
        "delete",
        "/api/v1/chats/{id}/participants/{address}",
        "Remove a participant (URL-encoded address)",
        &[1001, 1002, 1006, 2002, 4001, 4099],
    ),
    ("get", "/api/v1/phone-numbers", "The tenant's lines", &[]),
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, codes) in ROUTES {
        let params = crate::common::path_params(path);
        let mut responses = json!({"200": {"description": "success"}, "401": {"description": "2004 bad signature/token, 2013 timestamp skew, replay"}});
        for c in *codes {
            responses[format!("x-code-{c}")] = json!({"description": format!("error code {c}")});
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
        }},
        "x-error-codes": codes,
        "paths": paths,
    })
}
