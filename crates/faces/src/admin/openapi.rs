//! OpenAPI 3.1 description of the admin API, served at
//! `/openapi/admin.json`. Built from one route table so the document and
//! the router are reviewed side by side (the router is in `mod.rs`).

use serde_json::{json, Map, Value};

/// (method, path, summary, request schema or "", success status)
const ROUTES: &[(&str, &str, &str, &str, u16)] = &[
    (
        "post",
        "/admin/v1/world",
        "Apply a world document (JSON, or TOML with Content-Type: application/toml) idempotently",
        "World",
        200,
    ),
    (
        "get",
        "/admin/v1/deliveries",
        "Webhook deliveries with their attempts (?status=pending|delivered|dead&tenant=slug)",
        "",
        200,
    ),
    (
        "post",
        "/admin/v1/deliveries/{id}/replay",
        "Queue a delivery again, due now",
        "",
        200,
    ),
    ("get", "/admin/v1/tenants", "List tenants", "", 200),
    ("post", "/admin/v1/tenants", "Create a tenant", "NewTenant", 201),
    (
        "get",
        "/admin/v1/tenants/{slug}",
        "Show a tenant with its users, apps, lines, chats and credentials (no secrets)",
        "",
        200,
    ),
    ("get", "/admin/v1/tenants/{slug}/users", "List users", "", 200),
    ("post", "/admin/v1/tenants/{slug}/users", "Create a person", "User", 201),
    (
        "patch",
        "/admin/v1/tenants/{slug}/users/{id}",
        "Activate or deactivate a user",
        "ActiveFlag",
        200,
    ),
    ("get", "/admin/v1/tenants/{slug}/apps", "List apps", "", 200),
    (
        "post",
        "/admin/v1/tenants/{slug}/apps",
        "Install an app (Bitrix CLIENT_ID)",
        "App",
        201,
    ),
    (
        "post",
        "/admin/v1/tenants/{slug}/bots",
        "Register a bot for an app",
        "Bot",
        201,
    ),
    ("get", "/admin/v1/tenants/{slug}/lines", "List iMessage lines", "", 200),
    (
        "post",
        "/admin/v1/tenants/{slug}/lines",
        "Add an iMessage line",
        "Line",
        201,
    ),
    (
        "patch",
        "/admin/v1/tenants/{slug}/lines/{id}",
        "Activate or deactivate a line (inactive = delivery fails)",
        "ActiveFlag",
        200,
    ),
    (
        "get",
        "/admin/v1/tenants/{slug}/credentials",
        "List credentials (secrets are never returned again)",
        "",
        200,
    ),
    (
        "post",
        "/admin/v1/tenants/{slug}/credentials",
        "Issue a credential; the secret is in this response only",
        "Credential",
        201,
    ),
    ("get", "/admin/v1/tenants/{slug}/chats", "List chats", "", 200),
    (
        "post",
        "/admin/v1/tenants/{slug}/chats",
        "Create a chat with its members",
        "Chat",
        201,
    ),
    (
        "get",
        "/admin/v1/tenants/{slug}/chats/{id}",
        "Show a chat: members, membership history, events",
        "",
        200,
    ),
    (
        "post",
        "/admin/v1/tenants/{slug}/chats/{id}/members",
        "Add a member (user id or handle)",
        "NewMember",
        200,
    ),
    (
        "delete",
        "/admin/v1/tenants/{slug}/chats/{id}/members/{user_id}",
        "Remove a member",
        "",
        200,
    ),
    ("get", "/admin/v1/tenants/{slug}/crm-links", "List CRM links", "", 200),
    (
        "post",
        "/admin/v1/tenants/{slug}/crm-links",
        "Link a chat to a CRM entity (newest last)",
        "CrmLink",
        201,
    ),
];

fn schemas() -> Value {
    let s = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    let int = json!({"type": "integer"});
    let string = json!({"type": "string"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "NewTenant": s(json!({"slug": string, "name": string}), &["slug"]),
        "User": s(json!({"id": int, "name": string, "handle": string, "active": {"type": "boolean"}}), &["name"]),
        "ActiveFlag": s(json!({"active": {"type": "boolean"}}), &["active"]),
        "App": s(json!({"id": int, "client_id": string, "name": string}), &["client_id"]),
        "Bot": s(json!({"id": int, "app": string, "name": string}), &["app", "name"]),
        "Line": s(json!({"number": string, "user_id": int, "active": {"type": "boolean"}}), &["number"]),
        "Credential": s(json!({
            "kind": {"type": "string", "enum": ["bitrix_webhook", "bitrix_oauth", "vibecode_personal", "vibecode_app", "vibecode_session", "chert_signing", "linq_api_key"]},
            "secret": string, "user": int, "app": string, "scopes": strings,
            "expires_at": int, "expires_in": int, "label": string
        }), &["kind"]),
        "Member": {"oneOf": [int, string]},
        "Chat": s(json!({
            "id": int, "uuid": {"type": "string", "format": "uuid"},
            "kind": {"type": "string", "enum": ["dm", "group", "open_line"]},
            "network": {"type": "string", "enum": ["internal", "imessage"]},
            "title": string, "owner": int, "line": string, "chat_key": string,
            "members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
            "crm": {"type": "array", "items": {"$ref": "#/components/schemas/CrmEntity"}}
        }), &[]),
        "CrmEntity": s(json!({"entity_type": string, "entity_id": int}), &["entity_type", "entity_id"]),
        "NewMember": s(json!({"member": {"$ref": "#/components/schemas/Member"}}), &["member"]),
        "CrmLink": s(json!({"entity_type": string, "entity_id": int, "chat_id": int}), &["entity_type", "entity_id", "chat_id"]),
        "World": s(json!({"tenants": {"type": "array", "items": {"type": "object"}}}), &[]),
        "Error": {"type": "object", "required": ["error"], "additionalProperties": false, "properties": {
            "error": s(json!({"code": string, "message": string}), &["code", "message"])
        }},
    })
}

pub fn document() -> Value {
    use crate::common::json_response;
    let err = |d: &str| json_response(d, json!({"$ref": "#/components/schemas/Error"}));
    let mut paths = Map::new();
    for (method, path, summary, schema, status) in ROUTES {
        let params = crate::common::path_params(path, &[("slug", "demo"), ("id", "1")]);
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                status.to_string(): json_response("success: the entity or list", json!({"type": ["object", "array"]})),
                "400": err("invalid_request: malformed request"),
                "401": err("unauthorized: missing or invalid admin token"),
                "404": err("not_found: tenant or entity not found"),
                "409": err("conflict: the entity already exists"),
                "422": err("invalid, rule_violation: the change breaks a rule"),
                "503": err("unavailable: the store is unavailable"),
            }
        });
        if !schema.is_empty() {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "confab admin API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
        "security": [{"adminToken": []}],
        "paths": paths,
    })
}
