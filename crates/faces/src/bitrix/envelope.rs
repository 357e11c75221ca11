//! Bitrix envelopes: `{"result", "time", "total"?, "next"?}` and
//! `{"error", "error_description"}`, always `Content-Type: application/json`
//! (aiohttp-based clients refuse anything else), never a redirect.

use super::errors::BitrixError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// System errors (`_includes/system-errors.md`). Where the docs and the
/// official Python SDK's own integration tests disagree, the SDK wins
/// (noted per constructor).
pub mod system {
    use super::BitrixError;

    pub fn method_not_found() -> BitrixError {
        // Not documented for REST v1; REST 3.0 answers ERROR_METHOD_NOT_FOUND / 404.
        BitrixError::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found")
    }
    pub fn no_auth() -> BitrixError {
        BitrixError::new(401, "NO_AUTH_FOUND", "Wrong authorization data")
    }
    pub fn invalid_credentials() -> BitrixError {
        // Docs: 403; b24pysdk tests/integration/errors asserts 401 for a
        // wrong webhook code, and so does the im.chat.add page's example.
        BitrixError::new(401, "INVALID_CREDENTIALS", "Invalid request credentials")
    }
    pub fn invalid_token() -> BitrixError {
        BitrixError::new(401, "invalid_token", "Unable to get application by token")
    }
    pub fn expired_token() -> BitrixError {
        // b24jssdk refreshes on 401 + expired_token.
        BitrixError::new(401, "expired_token", "The access token provided has expired.")
    }
    pub fn insufficient_scope(webhook: bool) -> BitrixError {
        // Docs: 403; b24pysdk's integration test asserts 401.
        let by = if webhook { "webhook" } else { "access" };
        BitrixError::new(
            401,
            "insufficient_scope",
            format!("The request requires higher privileges than provided by the {by} token"),
        )
    }
    pub fn query_limit() -> BitrixError {
        BitrixError::new(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    }
    pub fn operation_time_limit() -> BitrixError {
        BitrixError::new(
            429,
            "OPERATION_TIME_LIMIT",
            "Method is blocked due to operation time limit.",
        )
    }
    pub fn internal() -> BitrixError {
        BitrixError::new(500, "INTERNAL_SERVER_ERROR", "Internal server error")
    }
    pub fn wrong_auth_type() -> BitrixError {
        BitrixError::new(
            403,
            "WRONG_AUTH_TYPE",
            "Access for this method not allowed by session authorization.",
        )
    }
    pub fn batch_length() -> BitrixError {
        BitrixError::new(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
    }
    pub fn batch_not_allowed() -> BitrixError {
        BitrixError::new(
            405,
            "ERROR_BATCH_METHOD_NOT_ALLOWED",
            "Method is not allowed for batch usage",
        )
    }
}

fn iso(secs: f64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    t.format(&f).unwrap_or_default()
}

/// When a call started, for the `time` object.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub started: Instant,
    pub start_unix: f64,
}

impl Clock {
    pub fn start() -> Clock {
        let start_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Clock {
            started: Instant::now(),
            start_unix,
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The `time` object (`api-reference/data-types.md#time`) with real
    /// values; `operating` is this method's accumulated seconds.
    pub fn time(&self, operating: f64, operating_reset_at: i64) -> Value {
        let duration = self.elapsed();
        let finish = self.start_unix + duration;
        json!({
            "start": self.start_unix,
            "finish": finish,
            "duration": duration,
            "processing": duration,
            "date_start": iso(self.start_unix),
            "date_finish": iso(finish),
            "operating_reset_at": operating_reset_at,
            "operating": operating,
        })
    }
}

fn with_json(status: StatusCode, body: Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

pub fn success(body: Value) -> Response {
    with_json(StatusCode::OK, body)
}

impl IntoResponse for BitrixError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        with_json(
            status,
            json!({"error": self.code, "error_description": self.description}),
        )
    }
}
