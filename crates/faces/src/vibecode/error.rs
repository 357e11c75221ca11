//! The Vibecode error envelope: `{"success": false, "error": {"code",
//! "message", "hint"?, "retryAfter"?}}` (docs /docs/errors).

use crate::bitrix::errors::{word, Method};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use confab_core::CoreError;
use serde_json::json;

#[derive(Debug)]
pub struct VibeError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl VibeError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        VibeError {
            status,
            code,
            message: message.into(),
            hint: None,
            retry_after: None,
        }
    }

    pub fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// A malformed request (confab's choice of code; the public error page
    /// was cut before its validation rows).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// Seed 000: any Bitrix24 error → 422 `BITRIX_ERROR` with Bitrix's own
    /// text; Bitrix unreachable or failing → 502 `BITRIX_UNAVAILABLE`.
    pub fn from_core(method: Method, e: CoreError) -> Self {
        match e {
            CoreError::Unavailable(ref detail) => {
                tracing::warn!(%detail, "store unavailable");
                Self::new(StatusCode::BAD_GATEWAY, "BITRIX_UNAVAILABLE", "Bitrix24 is unavailable")
            }
            CoreError::Internal(ref detail) => {
                tracing::error!(%detail, "internal error");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "BITRIX_UNAVAILABLE",
                    "Bitrix24 returned a server error",
                )
            }
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "BITRIX_ERROR",
                word(method, &other).description,
            ),
        }
    }
}

impl IntoResponse for VibeError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(h) = self.hint {
            error["hint"] = json!(h);
        }
        if let Some(s) = self.retry_after {
            error["retryAfter"] = json!(s);
        }
        let mut res = (self.status, Json(json!({"success": false, "error": error}))).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        res
    }
}
