//! Domain types. Ids are typed so a chat id cannot be passed as a user id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! int_id {
    ($($name:ident),*) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { self.0.fmt(f) }
        }
    )*};
}
int_id!(TenantId, UserId, ChatId, AppId, LineId, MessageId, EventId);

/// Seconds since the Unix epoch, UTC. Core never reads the clock itself:
/// the caller passes `now` so rules stay pure and testable.
pub type Timestamp = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    Person,
    Bot,
    /// The user that stands for one of the tenant's own iMessage lines
    /// (`is_me` in Chert/Linq): when Chert or Linq "leave", this user leaves.
    Line,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Person => "person",
            UserKind::Bot => "bot",
            UserKind::Line => "line",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "person" => Some(UserKind::Person),
            "bot" => Some(UserKind::Bot),
            "line" => Some(UserKind::Line),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub tenant_id: TenantId,
    pub id: UserId,
    pub kind: UserKind,
    pub name: String,
    /// E.164 number or e-mail: how iMessage faces address this user.
    pub handle: Option<String>,
    /// Deactivated users cannot be removed through CRM chats
    /// (seed 002, "Chat user is not active") and cannot act.
    pub active: bool,
    /// For bots: the app that registered it (seed 001).
    pub app_id: Option<AppId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub tenant_id: TenantId,
    pub id: AppId,
    /// Bitrix `CLIENT_ID` of the installed application.
    pub client_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub tenant_id: TenantId,
    pub id: LineId,
    /// E.164 number of the line.
    pub phone_number: String,
    /// The user of kind `Line` that is this line inside chats.
    pub user_id: UserId,
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Dm,
    Group,
    /// A Bitrix open-line chat, linked to CRM entities.
    OpenLine,
}

impl ChatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Dm => "dm",
            ChatKind::Group => "group",
            ChatKind::OpenLine => "open_line",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dm" => Some(ChatKind::Dm),
            "group" => Some(ChatKind::Group),
            "open_line" => Some(ChatKind::OpenLine),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A Bitrix24 chat (Bitrix REST and Vibecode faces).
    Internal,
    /// An iMessage chat on one of the tenant's lines (Chert and Linq faces).
    Imessage,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Internal => "internal",
            Network::Imessage => "imessage",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "internal" => Some(Network::Internal),
            "imessage" => Some(Network::Imessage),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub tenant_id: TenantId,
    pub id: ChatId,
    pub uuid: Uuid,
    pub kind: ChatKind,
    pub network: Network,
    pub title: String,
    /// Owner (Bitrix "author"). Stays set when the owner leaves (seed 000).
    pub owner_id: Option<UserId>,
    /// The line pinned to an iMessage chat (Chert 4099 when missing).
    pub line_id: Option<LineId>,
    /// Upstream group conversation key (Chert 4099 when missing).
    pub chat_key: Option<String>,
    pub created_at: Timestamp,
}

impl Chat {
    /// Chert's `ch_…` identifier, derived from the UUID so every face
    /// names the same chat.
    pub fn chert_id(&self) -> String {
        format!("ch_{}", self.uuid.simple())
    }

    /// Parses a `ch_…` id back into the chat UUID.
    pub fn parse_chert_id(s: &str) -> Option<Uuid> {
        let hex = s.strip_prefix("ch_")?;
        if hex.len() != 32 {
            return None;
        }
        Uuid::parse_str(hex).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// One stay of a user in a chat. Rows are never deleted: leaving sets
/// `left_at`, rejoining opens a new row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: Timestamp,
    pub left_at: Option<Timestamp>,
    /// Ended by a removal (someone else took the member out), not by
    /// leaving; false while active.
    #[serde(default)]
    pub removed: bool,
}

impl Membership {
    pub fn is_active(&self) -> bool {
        self.left_at.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmEntityType {
    Lead,
    Deal,
    Contact,
    Company,
}

impl CrmEntityType {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmEntityType::Lead => "lead",
            CrmEntityType::Deal => "deal",
            CrmEntityType::Contact => "contact",
            CrmEntityType::Company => "company",
        }
    }
    /// Bitrix accepts the type in any case (`lead`, `LEAD`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lead" => Some(CrmEntityType::Lead),
            "deal" => Some(CrmEntityType::Deal),
            "contact" => Some(CrmEntityType::Contact),
            "company" => Some(CrmEntityType::Company),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CrmEntity {
    pub entity_type: CrmEntityType,
    pub entity_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub chat_id: ChatId,
    pub id: MessageId,
    pub uuid: Uuid,
    pub author_id: UserId,
    pub text: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ChatCreated,
    Joined,
    Left,
    Removed,
    OwnerChanged,
    MessageSent,
    /// A bot was unregistered (Bitrix ONIMBOTDELETE); not tied to a chat
    /// (`chat_id` 0).
    BotDeleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ChatCreated => "chat_created",
            EventKind::Joined => "joined",
            EventKind::Left => "left",
            EventKind::Removed => "removed",
            EventKind::OwnerChanged => "owner_changed",
            EventKind::MessageSent => "message_sent",
            EventKind::BotDeleted => "bot_deleted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "chat_created" => EventKind::ChatCreated,
            "joined" => EventKind::Joined,
            "left" => EventKind::Left,
            "removed" => EventKind::Removed,
            "owner_changed" => EventKind::OwnerChanged,
            "message_sent" => EventKind::MessageSent,
            "bot_deleted" => EventKind::BotDeleted,
            _ => return None,
        })
    }
}

/// A membership/chat event as recorded in the same transaction as the
/// change it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    pub chat_id: ChatId,
    pub kind: EventKind,
    /// Who did it (None for admin/system actions).
    pub actor_id: Option<UserId>,
    /// Whom it concerns (the member who joined/left, the new owner, ...).
    pub subject_id: Option<UserId>,
    pub message_id: Option<MessageId>,
    pub trace_id: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub uuid: Uuid,
    #[serde(flatten)]
    pub event: NewEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Queued,
    Done,
    Failed,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Queued => "queued",
            OperationStatus::Done => "done",
            OperationStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(OperationStatus::Queued),
            "done" => Some(OperationStatus::Done),
            "failed" => Some(OperationStatus::Failed),
            _ => None,
        }
    }
}

/// An asynchronous command (Linq's queued leave, add, remove): accepted in
/// one transaction, carried out by a worker in another; the outcome is kept
/// under the trace id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub tenant_id: TenantId,
    pub trace_id: String,
    pub kind: OperationKind,
    pub chat_id: ChatId,
    /// The participant to add or remove (None for a leave).
    pub handle: Option<String>,
    pub status: OperationStatus,
    /// Why it failed, in core words (see [`crate::CoreError`]'s Display).
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// The pinned line leaves (`LeavePolicy::IMessage`).
    Leave,
    /// The pinned line adds a participant.
    Add,
    /// The pinned line removes a participant (`RemovePolicy::IMessage`).
    Remove,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Leave => "leave",
            OperationKind::Add => "add",
            OperationKind::Remove => "remove",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "leave" => Some(OperationKind::Leave),
            "add" => Some(OperationKind::Add),
            "remove" => Some(OperationKind::Remove),
            _ => None,
        }
    }
}

/// A webhook subscription of some face. Matching is face-neutral: the face
/// translates its event names into core kinds when it creates one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub tenant_id: TenantId,
    /// "linq", "chert" or "bitrix": who renders and signs its deliveries.
    pub face: String,
    pub target_url: String,
    /// The face's own event names, as the client gave them.
    pub events: Vec<String>,
    /// Core kinds wanted; empty = all.
    pub kinds: Vec<EventKind>,
    /// Only chats pinned to one of these numbers; empty = all.
    pub lines: Vec<String>,
    /// Only events whose subject is this user (Bitrix bot handlers).
    pub subject_id: Option<UserId>,
    /// Signing secret (kept in clear: confab signs with it).
    #[serde(skip_serializing)]
    pub secret: String,
    /// Face-specific settings (webhook version, handler type, ...).
    pub extra: String,
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Subscription {
    /// Linq and Chert are iMessage APIs: their subscriptions announce only
    /// iMessage chats, which are the chats pinned to a line.
    pub fn imessage_only(&self) -> bool {
        matches!(self.face.as_str(), "linq" | "chert")
    }

    /// Whether an event is queued for this subscription: its kind is
    /// wanted, its subject is the one asked for, and its chat is pinned to
    /// one of the lines asked for (`line`: the number of the line the
    /// event's chat is pinned to, if any). An iMessage face's subscription
    /// hears no chat without a line, whatever its filter: such an event
    /// would only be queued to be skipped by the delivery worker.
    pub fn hears(&self, event: &NewEvent, line: Option<&str>) -> bool {
        let kind_ok = self.kinds.is_empty() || self.kinds.contains(&event.kind);
        let line_ok = match line {
            Some(n) => self.lines.is_empty() || self.lines.iter().any(|l| l == n),
            None => self.lines.is_empty() && !self.imessage_only(),
        };
        let subject_ok = self.subject_id.is_none() || self.subject_id == event.subject_id;
        kind_ok && line_ok && subject_ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One outbox row: an event to deliver to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub tenant_id: TenantId,
    pub subscription_id: String,
    pub event_id: EventId,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub delivery_id: i64,
    pub attempt: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// Bitrix incoming webhook: `/rest/{user_id}/{code}/…`; secret = code.
    BitrixWebhook,
    /// Bitrix OAuth access token for an app + user (`auth` parameter).
    BitrixOauth,
    /// Vibecode personal key `vibe_api_…`; no user = "no configured tokens".
    VibecodePersonal,
    /// Vibecode OAuth application key `vibe_app_…`.
    VibecodeApp,
    /// Vibecode user session token (Bearer) for an app key.
    VibecodeSession,
    /// Chert tenant signing secret (HMAC key and bearer token); kept in
    /// clear because confab must compute HMACs with it.
    ChertSigning,
    /// Linq Partner API key (Bearer).
    LinqApiKey,
}

impl CredentialKind {
    pub const ALL: [CredentialKind; 7] = [
        CredentialKind::BitrixWebhook,
        CredentialKind::BitrixOauth,
        CredentialKind::VibecodePersonal,
        CredentialKind::VibecodeApp,
        CredentialKind::VibecodeSession,
        CredentialKind::ChertSigning,
        CredentialKind::LinqApiKey,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::BitrixWebhook => "bitrix_webhook",
            CredentialKind::BitrixOauth => "bitrix_oauth",
            CredentialKind::VibecodePersonal => "vibecode_personal",
            CredentialKind::VibecodeApp => "vibecode_app",
            CredentialKind::VibecodeSession => "vibecode_session",
            CredentialKind::ChertSigning => "chert_signing",
            CredentialKind::LinqApiKey => "linq_api_key",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Secrets confab must use as HMAC keys are stored in clear; all
    /// others only as a hash.
    pub fn keeps_secret(self) -> bool {
        matches!(self, CredentialKind::ChertSigning)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: i64,
    pub tenant_id: TenantId,
    pub kind: CredentialKind,
    pub user_id: Option<UserId>,
    pub app_id: Option<AppId>,
    pub scopes: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub label: String,
    /// Only for kinds with [`CredentialKind::keeps_secret`]. Never logged,
    /// never serialized to a client after creation.
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    pub created_at: Timestamp,
}

impl Credential {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub tenant_id: TenantId,
    pub kind: CredentialKind,
    /// Hex SHA-256 of the secret: what lookups compare.
    pub secret_hash: String,
    pub secret: Option<String>,
    pub user_id: Option<UserId>,
    pub app_id: Option<AppId>,
    pub scopes: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub label: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(face: &str, kinds: Vec<EventKind>, lines: Vec<&str>, subject: Option<i64>) -> Subscription {
        Subscription {
            id: "s".into(),
            tenant_id: TenantId(1),
            face: face.into(),
            target_url: "http://127.0.0.1:9/".into(),
            events: vec![],
            kinds,
            lines: lines.into_iter().map(String::from).collect(),
            subject_id: subject.map(UserId),
            secret: String::new(),
            extra: String::new(),
            active: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn left(subject: i64) -> NewEvent {
        NewEvent {
            tenant_id: TenantId(1),
            chat_id: ChatId(1),
            kind: EventKind::Left,
            actor_id: Some(UserId(subject)),
            subject_id: Some(UserId(subject)),
            message_id: None,
            trace_id: None,
            at: 0,
        }
    }

    #[test]
    fn what_a_subscription_hears() {
        let e = left(7);
        let line = Some("+15550000000");
        // iMessage faces: chats pinned to a line only, and to one of theirs.
        for face in ["linq", "chert"] {
            assert!(sub(face, vec![], vec![], None).hears(&e, line));
            assert!(
                !sub(face, vec![], vec![], None).hears(&e, None),
                "{face}: a chat without a line"
            );
            assert!(sub(face, vec![], vec!["+15550000000"], None).hears(&e, line));
            assert!(!sub(face, vec![], vec!["+15559999999"], None).hears(&e, line));
            assert!(!sub(face, vec![], vec!["+15550000000"], None).hears(&e, None));
        }
        // Bitrix: any chat; its bot handlers by subject.
        assert!(sub("bitrix", vec![], vec![], None).hears(&e, None));
        assert!(sub("bitrix", vec![], vec![], Some(7)).hears(&e, None));
        assert!(!sub("bitrix", vec![], vec![], Some(8)).hears(&e, None));
        // Kinds.
        assert!(sub("bitrix", vec![EventKind::Left], vec![], None).hears(&e, None));
        assert!(!sub("bitrix", vec![EventKind::Joined], vec![], None).hears(&e, None));
    }
}
