//! Chert's error envelope and code table (docs /api/errors):
//! `{"success": false, "error": {"status", "code", "message", "retryable"},
//! "trace_id"}`. The table is data: the mapping and the tests read it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use confab_core::CoreError;
use serde_json::json;

/// One documented code: default HTTP status and whether a retry may help
/// (`retryable` is "always present, authoritative": true for 3xxx, the 4xxx
/// delivery errors and 1007; false otherwise, 4099 included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: u16,
    pub status: u16,
    pub retryable: bool,
    pub name: &'static str,
}

pub const CODES: &[Code] = &[
    Code {
        code: 1001,
        status: 400,
        retryable: false,
        name: "missing or invalid field / address not in group",
    },
    Code {
        code: 1002,
        status: 400,
        retryable: false,
        name: "group size rule",
    },
    Code {
        code: 1003,
        status: 400,
        retryable: false,
        name: "invalid phone number",
    },
    Code {
        code: 1006,
        status: 400,
        retryable: false,
        name: "not a group (direct message) / too many recipients",
    },
    Code {
        code: 2002,
        status: 404,
        retryable: false,
        name: "chat not found",
    },
    Code {
        code: 2004,
        status: 401,
        retryable: false,
        name: "bad signature or token",
    },
    Code {
        code: 2006,
        status: 403,
        retryable: false,
        name: "from number not assigned to this tenant",
    },
    Code {
        code: 2013,
        status: 401,
        retryable: false,
        name: "AUTH_TIMESTAMP_SKEW",
    },
    Code {
        code: 3000,
        status: 500,
        retryable: true,
        name: "internal error",
    },
    Code {
        code: 3001,
        status: 503,
        retryable: true,
        name: "service temporarily unavailable",
    },
    Code {
        code: 4001,
        status: 502,
        retryable: true,
        name: "downstream delivery failed",
    },
    Code {
        code: 4099,
        status: 501,
        retryable: false,
        name: "NOT_SUPPORTED: no chat key or pinned line",
    },
];

pub fn code(n: u16) -> Code {
    CODES.iter().copied().find(|c| c.code == n).unwrap_or(Code {
        code: n,
        status: 500,
        retryable: true,
        name: "",
    })
}

#[derive(Debug)]
pub struct ChertError {
    pub status: StatusCode,
    pub code: u16,
    pub message: String,
    pub retryable: bool,
    /// Filled in by the router layer from the request's trace id.
    pub trace_id: String,
}

impl ChertError {
    /// An error with the code's default status.
    pub fn new(code_no: u16, message: impl Into<String>) -> Self {
        let c = code(code_no);
        ChertError {
            status: StatusCode::from_u16(c.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: c.code,
            message: message.into(),
            retryable: c.retryable,
            trace_id: String::new(),
        }
    }

    /// The same code sent with another status (the docs: status is "not
    /// derivable from the code", e.g. 4099 is 422 on add/remove).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).unwrap_or(self.status);
        self
    }

    pub fn missing(field: &str) -> Self {
        Self::new(1001, format!("Missing required field: {field}"))
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(2004, message)
    }

    pub fn trace(mut self, trace_id: &str) -> Self {
        self.trace_id = trace_id.to_string();
        self
    }
}

/// The route a core error came from: the same rule is worded, and
/// sometimes sent with a status, per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Leave,
    Create,
    Add,
    Remove,
    Send,
    Read,
}

pub fn from_core(route: Route, e: CoreError) -> ChertError {
    use CoreError::*;
    let not_supported_status = match route {
        Route::Add | Route::Remove | Route::Send => 422,
        Route::Leave | Route::Create | Route::Read => 501,
    };
    match e {
        ChatNotFound => ChertError::new(2002, "Chat not found"),
        DirectChat => ChertError::new(1006, "Chat is a direct message"),
        // Seed 003: "leaving twice yields 1006 once the chat is no longer a
        // group from your line's perspective".
        LeftChat => ChertError::new(1006, "Chat is no longer a group from this line's perspective"),
        GroupTooSmall { min_remaining } => match route {
            Route::Leave => ChertError::new(
                1002,
                format!("Group would have fewer than {min_remaining} members after leaving"),
            ),
            _ => ChertError::new(1002, format!("Group is already at the minimum size of {min_remaining}")),
        },
        NotSupported => ChertError::new(4099, "Group is missing its chat key or has no pinned line")
            .with_status(not_supported_status),
        DeliveryFailed => ChertError::new(4001, "Delivery failed"),
        NotAMember | NoLongerMember => ChertError::new(1001, "Address is not in this group"),
        TooManyParticipants { max } => {
            ChertError::new(1006, format!("A group can have at most {max} recipients")).with_status(422)
        }
        ForeignLine => ChertError::new(2006, "The from number is not assigned to this tenant"),
        UserNotFound => ChertError::new(1001, "Address is not in this group"),
        UserInactive => ChertError::new(1001, "Address is not active"),
        Invalid(msg) => ChertError::new(1001, msg),
        Conflict(what) => ChertError::new(1001, format!("{what} already exists")),
        // Bitrix-only rules cannot be reached through Chert's routes; if
        // they are, the operation is not available for this chat.
        e @ (BotNotFound
        | BotLimit { .. }
        | ForeignBot
        | OwnerCannotLeave
        | RemovalForbidden
        | NoCrmChat
        | ChatNotOfEntity
        | PermissionDenied) => ChertError::new(1006, format!("Not available for this chat: {e}")),
        Unavailable(detail) => {
            tracing::warn!(%detail, "store unavailable");
            ChertError::new(3001, "Service temporarily unavailable")
        }
        Internal(detail) => {
            tracing::error!(%detail, "internal error");
            ChertError::new(3000, "Internal error")
        }
    }
}

impl IntoResponse for ChertError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "error": {"status": self.status.as_u16(), "code": self.code, "message": self.message, "retryable": self.retryable},
            "trace_id": self.trace_id,
        });
        (self.status, Json(body)).into_response()
    }
}
