//! `/openapi/vibecode.json` (also at `/v1/openapi.json`, where the gateway
//! describes itself). Routes not in the public docs carry
//! `x-confab-extension: true`.

use serde_json::{json, Map, Value};

/// (method, path, summary, documented publicly?)
const ROUTES: &[(&str, &str, &str, bool)] = &[
    (
        "post",
        "/v1/chats/{chatId}/leave",
        "Leave a group chat (the owner stays owner)",
        true,
    ),
    ("get", "/v1/me", "The key: type, portal, scopes, user", false),
    (
        "get",
        "/v1/chats",
        "The caller's chats (limit, offset; meta.total, meta.hasMore)",
        false,
    ),
    (
        "post",
        "/v1/chats",
        "Create a group chat owned by the caller (201)",
        false,
    ),
    ("get", "/v1/chats/{chatId}", "One chat", false),
    ("get", "/v1/chats/{chatId}/members", "Active members (paged)", false),
    (
        "post",
        "/v1/chats/{chatId}/members",
        "Add members: {\"userIds\": [..]}",
        false,
    ),
    (
        "delete",
        "/v1/chats/{chatId}/members/{userId}",
        "Remove a member (owner only)",
        false,
    ),
    (
        "post",
        "/v1/chats/{chatId}/owner",
        "Transfer ownership: {\"userId\": N}",
        false,
    ),
    (
        "post",
        "/v1/chats/{chatId}/messages",
        "Send a message: {\"message\": \"text\"}; chatId may be chatN",
        false,
    ),
];

pub fn document() -> Value {
    let err = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut paths = Map::new();
    for (method, path, summary, documented) in ROUTES {
        let params = crate::common::path_params(path);
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "security": [{"apiKey": []}, {"apiKey": [], "sessionToken": []}],
            "responses": {
                "200": {"description": "{\"success\": true, \"data\": ...}"},
                "400": {"description": "VALIDATION_ERROR", "content": err["content"].clone()},
                "401": {"description": "MISSING_API_KEY, INVALID_API_KEY, INVALID_APP_KEY, TOKEN_EXPIRED, TOKEN_MISSING", "content": err["content"].clone()},
                "403": {"description": "SCOPE_DENIED (needs im)", "content": err["content"].clone()},
                "422": {"description": "BITRIX_ERROR (Bitrix24's text in message)", "content": err["content"].clone()},
                "429": {"description": "RATE_LIMITED (retryAfter, Retry-After)", "content": err["content"].clone()},
                "502": {"description": "BITRIX_UNAVAILABLE", "content": err["content"].clone()},
            }
        });
        if !documented {
            op["x-confab-extension"] = json!(true);
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "confab — Bitrix24 Vibecode gateway face", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "sessionToken": {"type": "http", "scheme": "bearer", "description": "user session token, with a vibe_app_ key"}
            },
            "schemas": {"Error": {"type": "object", "properties": {
                "success": {"const": false},
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "hint": {"type": "string"}, "retryAfter": {"type": "integer"}
                }}
            }}}
        },
        "paths": paths,
    })
}
