//! The one error type of the domain. Each face maps every variant to its own
//! wire code with an exhaustive `match` (no `_ =>` arm), so adding a variant
//! fails to compile until every face has decided what it means.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The chat does not exist in this tenant (a foreign tenant's chat is
    /// "not found", never "forbidden").
    #[error("chat not found")]
    ChatNotFound,
    /// The user does not exist in this tenant.
    #[error("user not found")]
    UserNotFound,
    /// Seed 001: `BOT_ID` names no bot, or `BOT_ID` was absent and the app
    /// has registered no bot.
    #[error("bot not found")]
    BotNotFound,
    /// Seed 001: the bot was registered by another application.
    #[error("bot was installed by another application")]
    ForeignBot,
    /// Bitrix: an app registers at most `max` bots.
    #[error("the application has reached the maximum number of bots ({max})")]
    BotLimit { max: usize },
    /// The user is not an active member of the chat.
    #[error("user is not a member of the chat")]
    NotAMember,
    /// The user was a member but has left or been removed (Bitrix
    /// "user already not in chat").
    #[error("user is no longer a member of the chat")]
    NoLongerMember,
    /// Seed 003/004: the acting line already left this chat. Chert answers
    /// 1006 ("no longer a group from your line's perspective"), Linq 409/2013.
    #[error("you have left this chat")]
    LeftChat,
    /// A direct (1-on-1) chat cannot be left and has no participants to
    /// add or remove.
    #[error("chat is a direct message")]
    DirectChat,
    /// Seed 003/004: an iMessage group must keep at least `min_remaining`
    /// members (Apple's minimum group size).
    #[error("group would have fewer than {min_remaining} members")]
    GroupTooSmall { min_remaining: usize },
    /// Seed 003: the group has no pinned line or lacks its chat key.
    #[error("group is missing its chat key or has no pinned line")]
    NotSupported,
    /// Seed 003: the line could not deliver the change upstream (in confab:
    /// the pinned line is deactivated).
    #[error("delivery failed")]
    DeliveryFailed,
    /// Seed 001: a bot that owns the chat cannot leave without handing over
    /// ownership (`LEAVE_OWNER_FORBIDDEN`).
    #[error("the owner cannot leave without transferring ownership")]
    OwnerCannotLeave,
    /// Seed 001/002: this kind of chat does not allow removing members.
    #[error("it is forbidden to delete users of this chat")]
    RemovalForbidden,
    /// Seed 002: `CHAT_ID` was absent and the CRM entity has no chat.
    #[error("the CRM entity has no chat")]
    NoCrmChat,
    /// Seed 002: the chat is not linked to the given CRM entity.
    #[error("chat does not belong to the CRM entity")]
    ChatNotOfEntity,
    /// Seed 002: the user to remove is deactivated.
    #[error("chat user is not active")]
    UserInactive,
    /// The actor has no right to do this in this chat.
    #[error("permission denied")]
    PermissionDenied,
    /// A group was given more participants than allowed.
    #[error("too many participants: at most {max}")]
    TooManyParticipants { max: usize },
    /// The sending line does not belong to this tenant (Chert 2006).
    #[error("line not assigned to this tenant")]
    ForeignLine,
    /// Input the core refuses (bad handle, empty title, duplicate id, ...).
    #[error("{0}")]
    Invalid(String),
    /// A unique key already exists (admin creation).
    #[error("{0} already exists")]
    Conflict(String),
    /// The store is unreachable or timed out: retryable, never the
    /// client's fault (Vibecode 502 BITRIX_UNAVAILABLE, Linq 500/3006).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken invariant. Logged, never echoed in detail.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// True for errors that a retry may cure (store trouble).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CoreError::Unavailable(_))
    }
}
