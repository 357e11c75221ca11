//! `/openapi/bitrix.json`: the webhook and OAuth forms and every method.

use super::methods::scope_of;
use serde_json::{json, Map, Value};

pub const METHODS: &[&str] = &[
    "batch",
    "profile",
    "scope",
    "methods",
    "server.time",
    "app.info",
    "user.current",
    "imbot.register",
    "imbot.unregister",
    "imbot.bot.list",
    "imbot.chat.add",
    "imbot.chat.get",
    "imbot.chat.leave",
    "imbot.chat.user.add",
    "imbot.chat.user.list",
    "imbot.chat.user.delete",
    "imbot.chat.setOwner",
    "imbot.message.add",
    "imbot.v2.Bot.register",
    "imbot.v2.Bot.list",
    "imbot.v2.Chat.add",
    "imbot.v2.Chat.get",
    "imbot.v2.Chat.leave",
    "imbot.v2.Chat.setOwner",
    "imbot.v2.Chat.User.add",
    "imbot.v2.Chat.User.delete",
    "imbot.v2.Chat.User.list",
    "im.chat.add",
    "im.chat.get",
    "im.chat.leave",
    "im.chat.user.add",
    "im.chat.user.delete",
    "im.chat.user.list",
    "im.chat.setOwner",
    "im.message.add",
    "imopenlines.crm.chat.get",
    "imopenlines.crm.chat.getLastId",
    "imopenlines.crm.chat.user.add",
    "imopenlines.crm.chat.user.delete",
];

pub fn document() -> Value {
    use crate::common::json_response;
    let err = |d: &str| json_response(d, json!({"$ref": "#/components/schemas/Error"}));
    let mut paths = Map::new();
    for m in METHODS {
        let scope = scope_of(&m.to_lowercase()).unwrap_or("");
        let op = json!({
            "summary": m,
            "description": format!("scope: {}", if scope.is_empty() { "none" } else { scope }),
            "requestBody": {"content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "multipart/form-data": {"schema": {"type": "object"}}
            }},
            "responses": {
                "200": json_response("{\"result\": ..., \"time\": {...}}", json!({"$ref": "#/components/schemas/Success"})),
                "400": err("method error"),
                "401": err("NO_AUTH_FOUND, INVALID_CREDENTIALS, invalid_token, expired_token, insufficient_scope"),
                "403": err("method access errors"),
                "404": err("ERROR_METHOD_NOT_FOUND"),
                "429": err("OPERATION_TIME_LIMIT"),
                "500": err("INTERNAL_SERVER_ERROR (the store is unavailable)"),
                "503": err("QUERY_LIMIT_EXCEEDED")
            }
        });
        let mut hook = op.clone();
        hook["parameters"] = json!(crate::common::path_params(
            "/rest/{user_id}/{webhook_code}",
            &[("user_id", "1"), ("webhook_code", "demowebhookcode1")]
        ));
        paths.insert(
            format!("/rest/{{user_id}}/{{webhook_code}}/{m}"),
            json!({"post": hook.clone(), "get": hook}),
        );
        paths.insert(format!("/rest/{m}"), json!({"post": op.clone(), "get": op}));
    }
    let number = json!({"type": "number"});
    let string = json!({"type": "string"});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "confab — Bitrix24 REST face", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Method names are case-insensitive and may end in .json. OAuth calls pass `auth` in the query or body."},
        "components": {"schemas": {
            "Success": {"type": "object", "required": ["result", "time"], "properties": {
                "result": {},
                "total": {"type": "integer"},
                "next": {"type": "integer"},
                "time": {"type": "object",
                    "required": ["start", "finish", "duration", "processing", "date_start", "date_finish", "operating_reset_at", "operating"],
                    "properties": {
                        "start": number, "finish": number, "duration": number, "processing": number,
                        "date_start": string, "date_finish": string, "operating_reset_at": {"type": "integer"}, "operating": number
                    }}
            }},
            "Error": {"type": "object", "required": ["error", "error_description"], "properties": {
                "error": string, "error_description": string
            }}
        }},
        "paths": paths,
    })
}
