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
    use crate::common::json_response;
    let err = |d: &str| json_response(d, json!({"$ref": "#/components/schemas/Error"}));
    let mut paths = Map::new();
    for (method, path, summary, documented) in ROUTES {
        let params = crate::common::path_params(path, &[("chatId", "1"), ("userId", "3")]);
        let ok = if *method == "post" && *path == "/v1/chats" {
            "201"
        } else {
            "200"
        };
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "security": [{"apiKey": []}, {"apiKey": [], "sessionToken": []}],
            "responses": {
                ok: json_response("{\"success\": true, \"data\": ...}", json!({"$ref": "#/components/schemas/Success"})),
                "400": err("VALIDATION_ERROR"),
                "401": err("MISSING_API_KEY, INVALID_API_KEY, INVALID_APP_KEY, TOKEN_EXPIRED, TOKEN_MISSING"),
                "403": err("SCOPE_DENIED (needs im)"),
                "422": err("BITRIX_ERROR (Bitrix24's text in message)"),
                "429": err("RATE_LIMITED (retryAfter, Retry-After)"),
                "502": err("BITRIX_UNAVAILABLE"),
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
            "schemas": {
                "Success": {"type": "object", "required": ["success", "data"], "properties": {
                    "success": {"const": true},
                    "data": {"type": ["object", "array", "boolean", "integer"]},
                    "meta": {"type": "object", "required": ["total", "hasMore"], "properties": {
                        "total": {"type": "integer"}, "hasMore": {"type": "boolean"}
                    }}
                }},
                "Error": {"type": "object", "required": ["success", "error"], "additionalProperties": false, "properties": {
                    "success": {"const": false},
                    "error": {"type": "object", "required": ["code", "message"], "additionalProperties": false, "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}, "hint": {"type": "string"}, "retryAfter": {"type": "integer"}
                    }}
                }}
            }
        },
        "paths": paths,
    })
}
