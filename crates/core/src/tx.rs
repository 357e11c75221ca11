//! The port through which core reads and writes inside ONE transaction.
//!
//! A store hands `&mut dyn Tx` to a command function only while it holds the
//! transaction (and thereby the chat's lock), so every read here is
//! consistent with every write that follows it.

use crate::error::CoreError;
use crate::model::*;
use uuid::Uuid;

/// What a new chat looks like before it has ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChat {
    pub tenant_id: TenantId,
    /// Fixed id (world files); None = next free id.
    pub id: Option<ChatId>,
    pub uuid: Option<Uuid>,
    pub kind: ChatKind,
    pub network: Network,
    pub title: String,
    pub owner_id: Option<UserId>,
    pub line_id: Option<LineId>,
    pub chat_key: Option<String>,
    pub created_at: Timestamp,
}

/// Which chats [`Tx::chats_page`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatFilter {
    pub network: Network,
    /// Only chats pinned to this line.
    pub line: Option<LineId>,
    pub member: MemberFilter,
}

/// Which members a chat listed by [`Tx::chats_page`] must have had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberFilter {
    Any,
    /// This user, now or ever.
    User(UserId),
    /// Someone, now or ever, whose user has no handle.
    WithoutHandle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub tenant_id: TenantId,
    pub id: Option<UserId>,
    pub kind: UserKind,
    pub name: String,
    pub handle: Option<String>,
    pub active: bool,
    pub app_id: Option<AppId>,
}

pub type TxResult<T> = Result<T, CoreError>;

pub trait Tx {
    fn now(&self) -> Timestamp;

    // ---- reads (tenant-scoped: a foreign id reads as None) ----
    fn chat(&mut self, tenant: TenantId, id: ChatId) -> TxResult<Option<Chat>>;
    fn chat_by_uuid(&mut self, tenant: TenantId, uuid: Uuid) -> TxResult<Option<Chat>>;
    /// Takes the chat's lock for the rest of the transaction (PostgreSQL
    /// `SELECT … FOR UPDATE`; a no-op where the transaction already holds
    /// the single writer).
    fn lock_chat(&mut self, tenant: TenantId, id: ChatId) -> TxResult<Option<Chat>>;
    /// `lock_chat`, told that the rules will next ask for each of `users`'
    /// latest membership of the chat and user row (one or two users: a
    /// leaver, or an actor and the member it adds or removes), and that an
    /// event of the chat may follow: a store may fetch them with the lock
    /// (PostgreSQL: one round trip instead of up to five, and the event's
    /// id and subscriptions, so its insert can wait for COMMIT). Answers are
    /// the same as asking separately.
    fn lock_chat_for(&mut self, tenant: TenantId, id: ChatId, _users: &[UserId]) -> TxResult<Option<Chat>> {
        self.lock_chat(tenant, id)
    }
    /// How many members are active.
    fn active_count(&mut self, tenant: TenantId, chat: ChatId) -> TxResult<usize>;
    /// Active memberships, oldest first.
    fn active_members(&mut self, tenant: TenantId, chat: ChatId) -> TxResult<Vec<Membership>>;
    /// Active memberships, oldest first, each with its user's row (one
    /// read, not one per member); with `page` (offset, limit), that page
    /// of them only.
    fn active_member_users(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        page: Option<(usize, usize)>,
    ) -> TxResult<Vec<(Membership, User)>>;
    /// The latest membership row of the user in the chat (active or not).
    fn membership(&mut self, tenant: TenantId, chat: ChatId, user: UserId) -> TxResult<Option<Membership>>;
    fn user(&mut self, tenant: TenantId, id: UserId) -> TxResult<Option<User>>;
    /// The users of `ids` that exist, in any order (a new chat's members);
    /// a store may read them together.
    fn users_by_ids(&mut self, tenant: TenantId, ids: &[UserId]) -> TxResult<Vec<User>> {
        let mut found = Vec::new();
        for &id in ids {
            found.extend(self.user(tenant, id)?);
        }
        Ok(found)
    }
    fn user_by_handle(&mut self, tenant: TenantId, handle: &str) -> TxResult<Option<User>>;
    /// Bots registered by the app, in registration (id) order.
    fn bots_of_app(&mut self, tenant: TenantId, app: AppId) -> TxResult<Vec<User>>;
    /// Every bot of the tenant (of any app), in id order.
    fn bots(&mut self, tenant: TenantId) -> TxResult<Vec<User>>;
    fn line(&mut self, tenant: TenantId, id: LineId) -> TxResult<Option<Line>>;
    fn line_by_number(&mut self, tenant: TenantId, number: &str) -> TxResult<Option<Line>>;
    /// Ids of the chats the user is an active member of.
    fn chat_ids_of_user(&mut self, tenant: TenantId, user: UserId) -> TxResult<Vec<ChatId>>;
    /// The entity's chats, oldest first (the last one is `getLastId`).
    fn crm_chats(&mut self, tenant: TenantId, entity: CrmEntity) -> TxResult<Vec<ChatId>>;

    // ---- writes ----
    fn insert_chat(&mut self, chat: NewChat) -> TxResult<Chat>;
    fn insert_user(&mut self, user: NewUser) -> TxResult<User>;
    fn open_membership(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        user: UserId,
        role: Role,
        at: Timestamp,
    ) -> TxResult<()>;
    /// `open_membership` for each of `members` in order (a new chat's
    /// owner and members), with the same result; a store may write them
    /// together (the chat row updated once, not once per member).
    fn open_memberships(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        members: &[(UserId, Role)],
        at: Timestamp,
    ) -> TxResult<()> {
        for &(user, role) in members {
            self.open_membership(tenant, chat, user, role, at)?;
        }
        Ok(())
    }
    /// Ends the user's active membership at `at`: `removed` when someone
    /// else takes them out, not when they leave.
    fn close_membership(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        user: UserId,
        at: Timestamp,
        removed: bool,
    ) -> TxResult<()>;
    fn set_role(&mut self, tenant: TenantId, chat: ChatId, user: UserId, role: Role) -> TxResult<()>;
    fn set_title(&mut self, tenant: TenantId, chat: ChatId, title: &str) -> TxResult<()>;
    fn set_owner(&mut self, tenant: TenantId, chat: ChatId, owner: Option<UserId>) -> TxResult<()>;
    fn link_crm(&mut self, tenant: TenantId, entity: CrmEntity, chat: ChatId) -> TxResult<()>;
    fn insert_message(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        author: UserId,
        text: &str,
        at: Timestamp,
    ) -> TxResult<Message>;
    /// Appends the event; stores also write the matching outbox rows here,
    /// in the same transaction.
    fn append_event(&mut self, event: NewEvent) -> TxResult<Event>;
    /// `append_event` for each of `events` in order (a new chat's), with
    /// the same result; a store may write them together.
    fn append_events(&mut self, events: Vec<NewEvent>) -> TxResult<Vec<Event>> {
        events.into_iter().map(|e| self.append_event(e)).collect()
    }
}

/// Administration and authentication reads/writes, in the same transaction
/// discipline as the commands.
pub trait AdminTx {
    fn insert_tenant(&mut self, slug: &str, name: &str) -> TxResult<Tenant>;
    fn tenant(&mut self, id: TenantId) -> TxResult<Option<Tenant>>;
    fn tenant_by_slug(&mut self, slug: &str) -> TxResult<Option<Tenant>>;
    fn tenants(&mut self) -> TxResult<Vec<Tenant>>;
    fn insert_app(&mut self, tenant: TenantId, id: Option<AppId>, client_id: &str, name: &str) -> TxResult<App>;
    fn app(&mut self, tenant: TenantId, id: AppId) -> TxResult<Option<App>>;
    fn app_by_client_id(&mut self, tenant: TenantId, client_id: &str) -> TxResult<Option<App>>;
    fn apps(&mut self, tenant: TenantId) -> TxResult<Vec<App>>;
    fn users(&mut self, tenant: TenantId) -> TxResult<Vec<User>>;
    fn set_user_active(&mut self, tenant: TenantId, id: UserId, active: bool) -> TxResult<()>;
    fn insert_line(&mut self, tenant: TenantId, number: &str, user: UserId) -> TxResult<Line>;
    fn set_line_active(&mut self, tenant: TenantId, id: LineId, active: bool) -> TxResult<()>;
    fn lines(&mut self, tenant: TenantId) -> TxResult<Vec<Line>>;
    fn chats(&mut self, tenant: TenantId) -> TxResult<Vec<Chat>>;
    /// The tenant's chats that pass `filter`, newest (highest id) first:
    /// `offset` of them skipped, then at most `limit`. Reads about
    /// `offset + limit` chats when most pass, not every chat.
    fn chats_page(&mut self, tenant: TenantId, filter: ChatFilter, offset: usize, limit: usize) -> TxResult<Vec<Chat>>;
    /// Chats the user is an active member of, by id.
    fn chats_of_user(&mut self, tenant: TenantId, user: UserId) -> TxResult<Vec<Chat>>;
    /// Every membership row of the chat, history included, oldest first.
    fn membership_history(&mut self, tenant: TenantId, chat: ChatId) -> TxResult<Vec<Membership>>;
    fn message_by_uuid(&mut self, tenant: TenantId, uuid: Uuid) -> TxResult<Option<Message>>;
    /// Messages of a chat with id below `before` (None = newest), newest first.
    fn messages(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        before: Option<MessageId>,
        limit: usize,
    ) -> TxResult<Vec<Message>>;
    fn crm_links(&mut self, tenant: TenantId) -> TxResult<Vec<(CrmEntity, ChatId)>>;
    fn events(&mut self, tenant: TenantId, chat: Option<ChatId>) -> TxResult<Vec<Event>>;
    fn insert_credential(&mut self, cred: NewCredential) -> TxResult<Credential>;
    fn credential_by_hash(&mut self, kind: CredentialKind, secret_hash: &str) -> TxResult<Option<Credential>>;
    /// [`AdminTx::credential_by_hash`] with the credential's tenant: what
    /// every request's authentication asks when its credential is not
    /// cached. A store answers it in one statement.
    fn credential_and_tenant_by_hash(
        &mut self,
        kind: CredentialKind,
        secret_hash: &str,
    ) -> TxResult<Option<(Credential, Tenant)>> {
        let Some(cred) = self.credential_by_hash(kind, secret_hash)? else {
            return Ok(None);
        };
        Ok(self.tenant(cred.tenant_id)?.map(|t| (cred, t)))
    }
    fn credentials(&mut self, tenant: TenantId) -> TxResult<Vec<Credential>>;
    /// A stored answer to an idempotent request: (body hash, response).
    fn idempotent_response(&mut self, tenant: TenantId, scope: &str, key: &str) -> TxResult<Option<(String, String)>>;
    fn save_idempotent_response(
        &mut self,
        tenant: TenantId,
        scope: &str,
        key: &str,
        body_hash: &str,
        response: &str,
    ) -> TxResult<()>;
    /// A bot's registration: (CODE, JSON metadata).
    fn bot_registration(&mut self, tenant: TenantId, bot: UserId) -> TxResult<Option<(String, String)>>;
    fn set_bot_registration(
        &mut self,
        tenant: TenantId,
        bot: UserId,
        code: Option<&str>,
        meta: Option<&str>,
    ) -> TxResult<()>;
    fn bot_by_code(&mut self, tenant: TenantId, code: &str) -> TxResult<Option<UserId>>;
    /// Binds a chat to a free entity (`ENTITY_TYPE`, `ENTITY_ID`).
    fn bind_chat(&mut self, tenant: TenantId, entity_type: &str, entity_id: &str, chat: ChatId) -> TxResult<()>;
    /// The newest chat bound to the entity.
    fn chat_by_binding(&mut self, tenant: TenantId, entity_type: &str, entity_id: &str) -> TxResult<Option<ChatId>>;
    fn setting(&mut self, key: &str) -> TxResult<Option<String>>;

    // ---- webhooks: subscriptions, the outbox, attempts ----
    fn insert_subscription(&mut self, sub: &Subscription) -> TxResult<()>;
    fn update_subscription(&mut self, sub: &Subscription) -> TxResult<()>;
    fn delete_subscription(&mut self, tenant: TenantId, id: &str) -> TxResult<bool>;
    fn subscription(&mut self, id: &str) -> TxResult<Option<Subscription>>;
    fn subscriptions(&mut self, tenant: TenantId, face: &str) -> TxResult<Vec<Subscription>>;
    fn event(&mut self, id: EventId) -> TxResult<Option<Event>>;
    /// Claims up to `limit` pending deliveries due at `now_ms`, leasing them
    /// until `now_ms + lease_ms` (a crashed worker's lease simply expires).
    fn claim_deliveries(&mut self, now_ms: i64, lease_ms: i64, limit: usize) -> TxResult<Vec<Delivery>>;
    /// Records an attempt and the row's new state.
    fn record_attempt(&mut self, attempt: &Attempt, status: DeliveryStatus, next_attempt_at: i64) -> TxResult<()>;
    fn deliveries(
        &mut self,
        tenant: Option<TenantId>,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> TxResult<Vec<Delivery>>;
    fn delivery(&mut self, id: i64) -> TxResult<Option<Delivery>>;
    fn attempts(&mut self, delivery: i64) -> TxResult<Vec<Attempt>>;
    /// Puts a delivery back in the queue, due now.
    fn replay_delivery(&mut self, id: i64, now_ms: i64) -> TxResult<bool>;

    /// (pending deliveries, queued operations) — for metrics.
    fn queue_depths(&mut self) -> TxResult<(i64, i64)>;

    // ---- asynchronous operations ----
    fn insert_operation(&mut self, op: &Operation) -> TxResult<()>;
    fn operation(&mut self, tenant: TenantId, trace_id: &str) -> TxResult<Option<Operation>>;
    fn claim_operations(&mut self, now_ms: i64, lease_ms: i64, limit: usize) -> TxResult<Vec<Operation>>;
    fn finish_operation(
        &mut self,
        trace_id: &str,
        status: OperationStatus,
        error: Option<&str>,
        at: Timestamp,
    ) -> TxResult<()>;
    fn set_setting(&mut self, key: &str, value: &str) -> TxResult<()>;

    // ---- state several nodes share: rate limits, replay protection ----
    /// Serializes, until the transaction ends, every transaction that locks
    /// the same key (PostgreSQL advisory lock; SQLite's writer is alone).
    fn lock_key(&mut self, key: &str) -> TxResult<()>;
    /// A leaky bucket's (level, updated at unix ms).
    fn bucket(&mut self, key: &str) -> TxResult<Option<(f64, i64)>>;
    fn set_bucket(&mut self, key: &str, level: f64, updated_ms: i64) -> TxResult<()>;
    /// A sliding window's hits (unix ms) after `since_ms`, oldest first;
    /// older ones are forgotten.
    fn window_hits(&mut self, key: &str, since_ms: i64) -> TxResult<Vec<i64>>;
    fn add_window_hit(&mut self, key: &str, at_ms: i64) -> TxResult<()>;
    /// Records `key` until `expires_at` (unix s); false when it is already
    /// recorded and not yet expired (a replay).
    fn claim_nonce(&mut self, key: &str, now: Timestamp, expires_at: Timestamp) -> TxResult<bool>;
}

/// What a store hands to a job: the command port and the admin port over
/// one and the same transaction.
pub trait StoreTx: Tx + AdminTx {
    fn as_tx(&mut self) -> &mut dyn Tx;
}
