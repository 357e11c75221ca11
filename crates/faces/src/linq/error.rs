//! Linq's error envelope (`/error`): `{"success": false, "error": {"status",
//! "code", "message"}, "trace_id"}`; 429 adds `retry_after` and
//! `Retry-After`. Every response is `application/json`. 4xx answers that a
//! retry cannot cure carry `x-should-retry: false`, so the official SDK
//! (which retries 408/409/429/5xx) does not repeat them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use confab_core::CoreError;
use serde_json::json;

#[derive(Debug)]
pub struct LinqError {
    pub status: StatusCode,
    pub code: u16,
    pub message: String,
    pub retry_after: Option<u64>,
    pub trace_id: String,
}

impl LinqError {
    pub fn new(status: u16, code: u16, message: impl Into<String>) -> Self {
        LinqError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            retry_after: None,
            trace_id: String::new(),
        }
    }
    pub fn missing(field: &str) -> Self {
        Self::new(400, 1001, format!("Missing required field: {field}"))
    }
    pub fn e164(value: &str) -> Self {
        Self::new(400, 1002, format!("Phone number must be in E.164 format: {value}"))
    }
    pub fn body(detail: impl std::fmt::Display) -> Self {
        Self::new(400, 1003, format!("Invalid request body: {detail}"))
    }
    pub fn param(detail: impl std::fmt::Display) -> Self {
        Self::new(400, 1005, format!("Invalid parameter value: {detail}"))
    }
    pub fn unauthorized() -> Self {
        Self::new(401, 2004, "Unauthorized - missing or invalid authentication token")
    }
    pub fn chat_not_found() -> Self {
        Self::new(404, 2001, "Chat not found")
    }
    pub fn unavailable() -> Self {
        Self::new(409, 2013, "This chat is unavailable")
    }
}

/// Core refusals in Linq's words (seed 004 and the `/error` code table).
pub fn from_core(e: CoreError) -> LinqError {
    use CoreError::*;
    match e {
        ChatNotFound | NotSupported => LinqError::chat_not_found(),
        // Seed 004: after leaving, every interaction → 409 / 2013.
        LeftChat => LinqError::unavailable(),
        DirectChat => LinqError::new(409, 1006, "Cannot update direct message chats"),
        GroupTooSmall { min_remaining } => LinqError::param(format!(
            "the group must keep at least {min_remaining} participants (leaving needs 4 or more active participants including yourself)"
        )),
        NotAMember | NoLongerMember => LinqError::param("the handle is not an active participant of this chat"),
        UserNotFound => LinqError::param("unknown handle"),
        TooManyParticipants { max } => LinqError::param(format!("a group can have at most {max} recipients")),
        ForeignLine => LinqError::new(403, 2006, "Cannot send from this phone number"),
        DeliveryFailed => LinqError::new(502, 4001, "Delivery failed"),
        UserInactive => LinqError::param("the handle is not active"),
        Invalid(m) => LinqError::param(m),
        Conflict(what) => LinqError::param(format!("{what} already exists")),
        e @ (BotNotFound | BotLimit { .. } | ForeignBot | OwnerCannotLeave | RemovalForbidden | NoCrmChat | ChatNotOfEntity
        | PermissionDenied) => LinqError::new(403, 2005, format!("Access denied: {e}")),
        Unavailable(detail) | Internal(detail) => {
            tracing::warn!(%detail, "linq request failed");
            LinqError::new(500, 3006, "Internal server error")
        }
    }
}

impl IntoResponse for LinqError {
    fn into_response(self) -> Response {
        let mut error = json!({"status": self.status.as_u16(), "code": self.code, "message": self.message});
        if let Some(s) = self.retry_after {
            error["retry_after"] = json!(s);
        }
        let mut res = (
            self.status,
            Json(json!({"success": false, "error": error, "trace_id": self.trace_id})),
        )
            .into_response();
        let h = res.headers_mut();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                h.insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        // 429 and 5xx may be retried; other refusals will not change.
        if self.status.is_client_error() && self.status != StatusCode::TOO_MANY_REQUESTS {
            h.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        res
    }
}
