//! How Bitrix24 words each core error, per method family. The Bitrix REST
//! face sends these as `{"error", "error_description"}`; the Vibecode
//! gateway wraps the description in 422 `BITRIX_ERROR` (seed 000: "the text
//! in message"). Codes and texts are the documented ones (b24restdocs, see
//! docs/faces/bitrix.md); where the docs name no code, the choice is noted.

use confab_core::CoreError;

/// The Bitrix method whose wording applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ImChatAdd,
    ImChatGet,
    ImChatLeave,
    ImChatUserAdd,
    ImChatUserDelete,
    ImChatUserList,
    ImChatSetOwner,
    ImMessageAdd,
    ImbotChatAdd,
    ImbotChatLeave,
    ImbotChatUserAdd,
    ImbotChatUserDelete,
    ImbotChatUserList,
    ImbotChatSetOwner,
    ImbotMessageAdd,
    CrmChatUserAdd,
    CrmChatUserDelete,
    CrmChatGet,
    CrmChatGetLastId,
}

impl Method {
    fn is_crm(self) -> bool {
        matches!(
            self,
            Method::CrmChatUserAdd | Method::CrmChatUserDelete | Method::CrmChatGet | Method::CrmChatGetLastId
        )
    }
}

/// A Bitrix error: HTTP status, `error`, `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitrixError {
    pub status: u16,
    pub code: &'static str,
    pub description: String,
}

impl BitrixError {
    pub fn new(status: u16, code: &'static str, description: impl Into<String>) -> Self {
        BitrixError {
            status,
            code,
            description: description.into(),
        }
    }
}

const ACTION_UNAVAILABLE: &str = "Action unavailable";

/// Maps a core error to Bitrix's words for `method`. Exhaustive over
/// `CoreError`: a new core error does not compile until it is worded here.
pub fn word(method: Method, e: &CoreError) -> BitrixError {
    use CoreError::*;
    use Method::*;
    let b = |status: u16, code: &'static str, d: &str| BitrixError::new(status, code, d);
    match e {
        // No documented code for an unknown chat on im.*/imbot.*; the
        // Vibecode seed shows Bitrix's text "Chat not found".
        ChatNotFound if method.is_crm() => b(
            400,
            "CHAT_NOT_IN_CRM",
            "Chat does not belong to the CRM object being checked",
        ),
        ChatNotFound => b(400, "CHAT_NOT_FOUND", "Chat not found"),
        UserNotFound => match method {
            CrmChatUserDelete => b(
                400,
                "WRONG_REQUEST",
                "You don't have access or user already not in chat",
            ),
            ImChatUserDelete => b(400, "USER_NOT_FOUND", "The specified user is not in the chat"),
            _ => b(400, "USER_NOT_FOUND", "User not found"),
        },
        BotNotFound => b(400, "BOT_ID_ERROR", "Bot not found"),
        BotLimit { max } => b(
            400,
            "MAX_COUNT_ERROR",
            &format!("Has reached the maximum number of bots for application (max: {max})"),
        ),
        ForeignBot => b(400, "APP_ID_ERROR", "Bot was installed by another rest application"),
        NotAMember | NoLongerMember | LeftChat => match (method, e) {
            (ImChatLeave, _) => b(403, "ACCESS_DENIED_KICK", "Access denied to kick user from chat"),
            (ImbotChatLeave, _) => b(
                400,
                "WRONG_REQUEST",
                "You don't have access or user isn't member in chat",
            ),
            (ImbotChatUserDelete, _) => b(
                400,
                "WRONG_REQUEST",
                "You don't have access or user isn't a member of the chat",
            ),
            (ImChatUserDelete, _) => b(400, "USER_NOT_FOUND", "The specified user is not in the chat"),
            // The current docs (b24restdocs eb7aeef6) dropped the seed's
            // USER_NOT_FOUND row: "not in chat" is this one error now.
            (CrmChatUserDelete, _) => b(
                400,
                "WRONG_REQUEST",
                "You don't have access or user already not in chat",
            ),
            (ImChatSetOwner | ImbotChatSetOwner, _) => b(
                400,
                "WRONG_REQUEST",
                "Change owner can only owner and user must be member in chat",
            ),
            // im.message.add documents its errors as HTTP 400.
            (ImMessageAdd | ImbotMessageAdd, _) => b(400, "ACCESS_ERROR", "You don't have access to this chat"),
            _ => b(403, "ACCESS_ERROR", ACTION_UNAVAILABLE),
        },
        DirectChat => b(403, "ACCESS_ERROR", ACTION_UNAVAILABLE),
        RemovalForbidden => match method {
            ImChatUserAdd | ImbotChatUserAdd => b(403, "ACCESS_ERROR", "It is forbidden to add users to this chat"),
            _ => b(403, "ACCESS_ERROR", "It is forbidden to delete users of this chat"),
        },
        OwnerCannotLeave => b(403, "ACCESS_ERROR", "LEAVE_OWNER_FORBIDDEN"),
        NoCrmChat => b(400, "CRM_CHAT_EMPTY_CRM_DATA", "Could not find CRM object"),
        ChatNotOfEntity => b(
            400,
            "CHAT_NOT_IN_CRM",
            "Chat does not belong to the CRM object being checked",
        ),
        // Current docs wording (the seed had "Chat user is not active").
        UserInactive => b(400, "CRM_CHAT_USER_NOT_ACTIVE", "User not active"),
        PermissionDenied => match method {
            CrmChatUserDelete => b(
                403,
                "CHAT_DELETE_USER_PERMISSION_DENIED",
                "You don't have access to delete a user from this chat",
            ),
            CrmChatUserAdd | CrmChatGet | CrmChatGetLastId => b(
                403,
                "ACCESS_DENIED",
                "Access denied! You don't have access to join user to chat",
            ),
            ImChatUserDelete | ImbotChatUserDelete => b(
                403,
                "ACCESS_DENIED_KICK",
                "Insufficient rights to exclude participants from the chat",
            ),
            ImChatUserAdd | ImbotChatUserAdd => b(
                403,
                "ACCESS_DENIED_EXTEND",
                "Insufficient permissions to add participants to the chat",
            ),
            ImChatSetOwner | ImbotChatSetOwner => b(
                400,
                "WRONG_REQUEST",
                "Change owner can only owner and user must be member in chat",
            ),
            _ => b(403, "ACCESS_ERROR", ACTION_UNAVAILABLE),
        },
        // iMessage-only rules reached from a Bitrix method (e.g. adding to
        // an iMessage group): the operation is not available for that chat.
        GroupTooSmall { .. } | NotSupported | DeliveryFailed | TooManyParticipants { .. } | ForeignLine => {
            b(403, "ACCESS_ERROR", ACTION_UNAVAILABLE)
        }
        Invalid(msg) => b(400, "WRONG_REQUEST", msg),
        Conflict(what) => b(400, "WRONG_REQUEST", &format!("{what} already exists")),
        Unavailable(_) | Internal(_) => b(500, "INTERNAL_SERVER_ERROR", "Internal server error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_001_wording() {
        let w = |e| word(Method::ImbotChatLeave, &e);
        assert_eq!(
            w(CoreError::OwnerCannotLeave),
            BitrixError::new(403, "ACCESS_ERROR", "LEAVE_OWNER_FORBIDDEN")
        );
        assert_eq!(w(CoreError::ForeignBot).code, "APP_ID_ERROR");
        assert_eq!(w(CoreError::BotNotFound).description, "Bot not found");
        assert_eq!(
            w(CoreError::NotAMember).description,
            "You don't have access or user isn't member in chat"
        );
    }

    #[test]
    fn seed_002_wording() {
        let w = |e| word(Method::CrmChatUserDelete, &e);
        assert_eq!(
            w(CoreError::NoLongerMember).description,
            "You don't have access or user already not in chat"
        );
        // Current docs: one row for "not in chat", never-member or left.
        assert_eq!(w(CoreError::NotAMember), w(CoreError::NoLongerMember));
        assert_eq!(w(CoreError::PermissionDenied).status, 403);
        assert_eq!(w(CoreError::UserInactive).code, "CRM_CHAT_USER_NOT_ACTIVE");
    }
}
