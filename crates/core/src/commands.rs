//! Commands: each runs inside one store transaction (`&mut dyn Tx`), loads
//! what its policy needs, asks the policy, applies the change and appends
//! the membership event — all or nothing.

use crate::error::CoreError;
use crate::model::*;
use crate::policy::{self, LeavePolicy, RemovePolicy};
use crate::tx::{NewChat, NewUser, Tx};
use uuid::Uuid;

/// Who a command names as a participant: a user id (Bitrix, Vibecode) or a
/// handle (E.164 / e-mail; Chert, Linq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRef {
    Id(UserId),
    Handle(String),
}

/// Who leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaver {
    /// `LeavePolicy::Bitrix`: this user leaves.
    User(UserId),
    /// `LeavePolicy::Bot`: a bot of `app` leaves; `bot_id` None = the
    /// app's first bot.
    Bot { app: AppId, bot_id: Option<UserId> },
    /// `LeavePolicy::IMessage`: the chat's pinned line leaves.
    Line,
}

impl Leaver {
    pub fn policy(&self) -> LeavePolicy {
        match self {
            Leaver::User(_) => LeavePolicy::Bitrix,
            Leaver::Bot { .. } => LeavePolicy::Bot,
            Leaver::Line => LeavePolicy::IMessage,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    pub tenant: TenantId,
    pub chat: ChatId,
    pub leaver: Leaver,
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveOutcome {
    pub chat: Chat,
    pub user: User,
    pub owner_kept: bool,
    pub event: Event,
}

fn find_chat(tx: &mut dyn Tx, tenant: TenantId, chat: ChatId) -> Result<Chat, CoreError> {
    tx.lock_chat(tenant, chat)?.ok_or(CoreError::ChatNotFound)
}

/// The chat, locked, telling the store whose rows the rules of an add or
/// a removal ask for next: the actor's and the member's (by id).
fn lock_chat_for_pair(
    tx: &mut dyn Tx,
    tenant: TenantId,
    chat: ChatId,
    actor: Option<UserId>,
    member: &MemberRef,
) -> Result<Chat, CoreError> {
    let member = match member {
        MemberRef::Id(id) => Some(*id),
        MemberRef::Handle(_) => None,
    };
    let users: Vec<UserId> = actor.into_iter().chain(member).collect();
    tx.lock_chat_for(tenant, chat, &users)?.ok_or(CoreError::ChatNotFound)
}

fn find_user(tx: &mut dyn Tx, tenant: TenantId, user: UserId) -> Result<User, CoreError> {
    tx.user(tenant, user)?.ok_or(CoreError::UserNotFound)
}

/// The roster the rules need: the active count and the memberships of
/// `users` — point lookups, not the whole member list.
fn roster(tx: &mut dyn Tx, chat: &Chat, users: &[Option<UserId>]) -> Result<policy::Roster, CoreError> {
    let count = tx.active_count(chat.tenant_id, chat.id)?;
    let mut known = Vec::new();
    for u in users.iter().flatten() {
        if let Some(m) = tx.membership(chat.tenant_id, chat.id, *u)? {
            known.push(m);
        }
    }
    Ok(policy::Roster::new(count, known))
}

fn pinned_line(tx: &mut dyn Tx, chat: &Chat) -> Result<Option<Line>, CoreError> {
    match chat.line_id {
        Some(id) => tx.line(chat.tenant_id, id),
        None => Ok(None),
    }
}

/// Resolves a member reference; with `create`, an unknown handle becomes a
/// new contact (a person user with that handle).
fn resolve_member(tx: &mut dyn Tx, tenant: TenantId, who: &MemberRef, create: bool) -> Result<Option<User>, CoreError> {
    match who {
        MemberRef::Id(id) => tx.user(tenant, *id),
        MemberRef::Handle(h) => match tx.user_by_handle(tenant, h)? {
            Some(u) => Ok(Some(u)),
            None if create => tx
                .insert_user(NewUser {
                    tenant_id: tenant,
                    id: None,
                    kind: UserKind::Person,
                    name: h.clone(),
                    handle: Some(h.clone()),
                    active: true,
                    app_id: None,
                })
                .map(Some),
            None => Ok(None),
        },
    }
}

fn event(
    tx: &mut dyn Tx,
    chat: &Chat,
    kind: EventKind,
    actor: Option<UserId>,
    subject: Option<UserId>,
    trace_id: &Option<String>,
) -> Result<Event, CoreError> {
    let at = tx.now();
    tx.append_event(chat_event(chat, kind, actor, subject, trace_id, at))
}

/// An event of `chat` (no message) at `at`.
fn chat_event(
    chat: &Chat,
    kind: EventKind,
    actor: Option<UserId>,
    subject: Option<UserId>,
    trace_id: &Option<String>,
    at: Timestamp,
) -> NewEvent {
    NewEvent {
        tenant_id: chat.tenant_id,
        chat_id: chat.id,
        kind,
        actor_id: actor,
        subject_id: subject,
        message_id: None,
        trace_id: trace_id.clone(),
        at,
    }
}

/// Loads what a leave needs and asks its policy; writes nothing.
/// Gives the chat, the leaver (with their user row when it was read) and
/// the policy's decision.
fn plan_leave(tx: &mut dyn Tx, cmd: &Leave) -> Result<(Chat, UserId, Option<User>, policy::LeaveDecision), CoreError> {
    // Seed 001: the bot is resolved before the chat is looked at.
    let bot = match &cmd.leaver {
        Leaver::Bot { app, bot_id } => Some(acting_bot(tx, cmd.tenant, *app, *bot_id)?),
        _ => None,
    };
    let chat = match (&cmd.leaver, &bot) {
        // The leaver's membership and user row are needed next.
        (Leaver::User(id), _) => tx
            .lock_chat_for(cmd.tenant, cmd.chat, &[*id])?
            .ok_or(CoreError::ChatNotFound)?,
        (_, Some(bot)) => tx
            .lock_chat_for(cmd.tenant, cmd.chat, &[bot.id])?
            .ok_or(CoreError::ChatNotFound)?,
        _ => find_chat(tx, cmd.tenant, cmd.chat)?,
    };
    let line = pinned_line(tx, &chat)?;
    let leaver = match &cmd.leaver {
        Leaver::User(id) => Some(*id),
        Leaver::Bot { .. } => bot.as_ref().map(|b| b.id),
        Leaver::Line => None,
    };
    let members = roster(tx, &chat, &[leaver, line.as_ref().map(|l| l.user_id)])?;
    let (user_id, user, decision) = match (&cmd.leaver, bot) {
        (Leaver::User(id), _) => {
            let user = find_user(tx, cmd.tenant, *id)?;
            let decision = policy::bitrix_leave(&chat, &members, &user, members.latest(user.id))?;
            (user.id, Some(user), decision)
        }
        (Leaver::Bot { .. }, Some(bot)) => {
            let decision = policy::bot_leave(&chat, &members, bot.id, members.latest(bot.id))?;
            (bot.id, Some(bot), decision)
        }
        (Leaver::Bot { .. }, None) => return Err(CoreError::BotNotFound),
        (Leaver::Line, _) => {
            let decision = policy::imessage_leave(&chat, &members, line.as_ref())?;
            let line = line.ok_or(CoreError::NotSupported)?;
            (line.user_id, None, decision)
        }
    };
    Ok((chat, user_id, user, decision))
}

/// The bot an app acts as (Bitrix `imbot.*`, seed 001): the one `bot_id`
/// names, or the app's first bot when none is named. A deactivated
/// (unregistered) bot is no bot of the app. The app's bots are read only
/// when none is named.
pub fn acting_bot(tx: &mut dyn Tx, tenant: TenantId, app: AppId, bot_id: Option<UserId>) -> Result<User, CoreError> {
    let requested = match bot_id {
        Some(id) => tx.user(tenant, id)?.filter(|u| u.active),
        None => None,
    };
    let app_bots: Vec<User> = match bot_id {
        Some(_) => Vec::new(),
        None => tx.bots_of_app(tenant, app)?.into_iter().filter(|b| b.active).collect(),
    };
    policy::resolve_bot(app, bot_id, requested.as_ref(), &app_bots).cloned()
}

/// The rules of a leave, checked without applying it: how an asynchronous
/// leave (Linq) is accepted; the worker checks again when it runs.
pub fn check_leave(tx: &mut dyn Tx, cmd: &Leave) -> Result<Chat, CoreError> {
    plan_leave(tx, cmd).map(|(chat, ..)| chat)
}

pub fn leave(tx: &mut dyn Tx, cmd: &Leave) -> Result<LeaveOutcome, CoreError> {
    let (mut chat, user_id, user, decision) = plan_leave(tx, cmd)?;
    let now = tx.now();
    tx.close_membership(chat.tenant_id, chat.id, user_id, now, false)?;
    if !decision.keep_owner && chat.owner_id == Some(user_id) {
        tx.set_owner(chat.tenant_id, chat.id, None)?;
        chat.owner_id = None;
    }
    let user = match user {
        Some(u) => u,
        None => find_user(tx, cmd.tenant, user_id)?,
    };
    let event = event(tx, &chat, EventKind::Left, Some(user_id), Some(user_id), &cmd.trace_id)?;
    let owner_kept = decision.keep_owner && chat.owner_id == Some(user_id);
    Ok(LeaveOutcome {
        chat,
        user,
        owner_kept,
        event,
    })
}

/// Which chat a removal targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatSelector {
    Id(ChatId),
    /// Seed 002: a CRM entity's chat; `chat` None = its last chat.
    Crm {
        entity: CrmEntity,
        chat: Option<ChatId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remove {
    pub tenant: TenantId,
    pub chat: ChatSelector,
    /// None = administrator (or the pinned line, for iMessage).
    pub actor: Option<UserId>,
    pub member: MemberRef,
    pub policy: RemovePolicy,
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveOutcome {
    pub chat: Chat,
    pub user: User,
    pub event: Event,
}

/// Loads what a removal needs and asks its policy; writes nothing.
fn plan_remove(tx: &mut dyn Tx, cmd: &Remove) -> Result<(Chat, User), CoreError> {
    let chat_id = match &cmd.chat {
        ChatSelector::Id(id) => *id,
        ChatSelector::Crm { entity, chat } => {
            let chats = tx.crm_chats(cmd.tenant, *entity)?;
            policy::resolve_crm_chat(&chats, *chat)?
        }
    };
    let chat = lock_chat_for_pair(tx, cmd.tenant, chat_id, cmd.actor, &cmd.member)?;
    let actor = match cmd.actor {
        Some(id) => Some(find_user(tx, cmd.tenant, id)?),
        None => None,
    };
    let target = match resolve_member(tx, cmd.tenant, &cmd.member, false)? {
        Some(u) => u,
        // An unknown handle is simply not in the group; an unknown id is
        // an unknown user.
        // For an iMessage group a stand-in that was never a member lets the
        // group-level rules answer first (e.g. 409 after the line left).
        None => match (&cmd.member, cmd.policy) {
            (MemberRef::Handle(_), RemovePolicy::IMessage) => User {
                tenant_id: cmd.tenant,
                id: UserId(0),
                kind: UserKind::Person,
                name: String::new(),
                handle: None,
                active: true,
                app_id: None,
            },
            (MemberRef::Handle(_), _) => return Err(CoreError::NotAMember),
            (MemberRef::Id(_), _) => return Err(CoreError::UserNotFound),
        },
    };
    let line = pinned_line(tx, &chat)?;
    let members = roster(
        tx,
        &chat,
        &[cmd.actor, Some(target.id), line.as_ref().map(|l| l.user_id)],
    )?;
    let latest = members.latest(target.id).cloned();
    match cmd.policy {
        RemovePolicy::OpenLine => {
            let actor = actor.as_ref().ok_or(CoreError::PermissionDenied)?;
            policy::crm_remove(&chat, &members, actor, &target, latest.as_ref())?
        }
        RemovePolicy::IMessage => policy::imessage_remove(&chat, &members, line.as_ref(), target.id, latest.as_ref())?,
        RemovePolicy::Bitrix => {
            let actor = actor.as_ref().ok_or(CoreError::PermissionDenied)?;
            policy::bitrix_remove(&chat, &members, actor, target.id, latest.as_ref())?
        }
        RemovePolicy::Admin => policy::admin_remove(&members, target.id, latest.as_ref())?,
    }
    Ok((chat, target))
}

/// The rules of a removal, checked without applying it (Linq's queued
/// removal is accepted this way and checked again when it runs).
pub fn check_remove(tx: &mut dyn Tx, cmd: &Remove) -> Result<Chat, CoreError> {
    plan_remove(tx, cmd).map(|(chat, _)| chat)
}

pub fn remove(tx: &mut dyn Tx, cmd: &Remove) -> Result<RemoveOutcome, CoreError> {
    let (chat, target) = plan_remove(tx, cmd)?;
    let now = tx.now();
    tx.close_membership(chat.tenant_id, chat.id, target.id, now, true)?;
    let event = event(tx, &chat, EventKind::Removed, cmd.actor, Some(target.id), &cmd.trace_id)?;
    // No roster in the outcome, as with `add`.
    Ok(RemoveOutcome {
        chat,
        user: target,
        event,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub tenant: TenantId,
    pub chat: ChatId,
    /// None = administrator, or the pinned line for iMessage chats.
    pub actor: Option<UserId>,
    pub member: MemberRef,
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOutcome {
    pub chat: Chat,
    pub user: User,
    /// False when the user was already an active member (no-op).
    pub added: bool,
    pub event: Option<Event>,
}

/// The chat-level rules of an add, checked without applying it (and
/// without creating a contact for a new handle).
pub fn check_add(tx: &mut dyn Tx, cmd: &Add) -> Result<Chat, CoreError> {
    let chat = find_chat(tx, cmd.tenant, cmd.chat)?;
    let actor = match cmd.actor {
        Some(id) => Some(find_user(tx, cmd.tenant, id)?),
        None => None,
    };
    let line = pinned_line(tx, &chat)?;
    let target = match resolve_member(tx, cmd.tenant, &cmd.member, false)? {
        Some(u) => u,
        // A handle never seen before: judge the chat with a stand-in contact.
        None => User {
            tenant_id: cmd.tenant,
            id: UserId(0),
            kind: UserKind::Person,
            name: String::new(),
            handle: None,
            active: true,
            app_id: None,
        },
    };
    let members = roster(
        tx,
        &chat,
        &[cmd.actor, Some(target.id), line.as_ref().map(|l| l.user_id)],
    )?;
    policy::add_member(&chat, &members, line.as_ref(), actor.as_ref(), &target)?;
    Ok(chat)
}

pub fn add(tx: &mut dyn Tx, cmd: &Add) -> Result<AddOutcome, CoreError> {
    let chat = lock_chat_for_pair(tx, cmd.tenant, cmd.chat, cmd.actor, &cmd.member)?;
    let actor = match cmd.actor {
        Some(id) => Some(find_user(tx, cmd.tenant, id)?),
        None => None,
    };
    let line = pinned_line(tx, &chat)?;
    // Check the chat-level rules before creating a contact for the handle,
    // so a refused add leaves nothing behind (the transaction would roll
    // back anyway; this keeps the error order of the docs).
    let target = resolve_member(tx, cmd.tenant, &cmd.member, true)?.ok_or(CoreError::UserNotFound)?;
    let members = roster(
        tx,
        &chat,
        &[cmd.actor, Some(target.id), line.as_ref().map(|l| l.user_id)],
    )?;
    let added = policy::add_member(&chat, &members, line.as_ref(), actor.as_ref(), &target)?;
    let mut ev = None;
    if added {
        let now = tx.now();
        tx.open_membership(chat.tenant_id, chat.id, target.id, Role::Member, now)?;
        ev = Some(event(
            tx,
            &chat,
            EventKind::Joined,
            cmd.actor,
            Some(target.id),
            &cmd.trace_id,
        )?);
    }
    // No roster in the outcome: only the admin API answers with one (and
    // reads it itself), and reading every active member made each add cost
    // in proportion to the chat's size (BENCHMARKS.md, session 13).
    Ok(AddOutcome {
        chat,
        user: target,
        added,
        event: ev,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOwner {
    pub tenant: TenantId,
    pub chat: ChatId,
    /// None = administrator.
    pub actor: Option<UserId>,
    pub new_owner: UserId,
    pub trace_id: Option<String>,
}

pub fn transfer_owner(tx: &mut dyn Tx, cmd: &TransferOwner) -> Result<Chat, CoreError> {
    let mut chat = find_chat(tx, cmd.tenant, cmd.chat)?;
    let members = roster(tx, &chat, &[cmd.actor, Some(cmd.new_owner), chat.owner_id])?;
    let actor = match cmd.actor {
        Some(id) => Some(find_user(tx, cmd.tenant, id)?),
        None => None,
    };
    find_user(tx, cmd.tenant, cmd.new_owner)?;
    policy::transfer_owner(&chat, &members, actor.as_ref(), cmd.new_owner)?;
    if chat.owner_id == Some(cmd.new_owner) {
        return Ok(chat);
    }
    if let Some(old) = chat.owner_id {
        if members.active(old).is_some() {
            tx.set_role(chat.tenant_id, chat.id, old, Role::Member)?;
        }
    }
    tx.set_role(chat.tenant_id, chat.id, cmd.new_owner, Role::Owner)?;
    tx.set_owner(chat.tenant_id, chat.id, Some(cmd.new_owner))?;
    chat.owner_id = Some(cmd.new_owner);
    event(
        tx,
        &chat,
        EventKind::OwnerChanged,
        cmd.actor,
        Some(cmd.new_owner),
        &cmd.trace_id,
    )?;
    Ok(chat)
}

/// Who writes a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author {
    User(UserId),
    /// The chat's pinned line (Chert, Linq).
    Line,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    pub tenant: TenantId,
    pub chat: ChatId,
    pub author: Author,
    pub text: String,
    pub trace_id: Option<String>,
}

pub fn send_message(tx: &mut dyn Tx, cmd: &SendMessage) -> Result<(Chat, Message), CoreError> {
    // The author's membership and row are asked for next.
    let chat = match cmd.author {
        Author::User(id) => tx.lock_chat_for(cmd.tenant, cmd.chat, &[id])?,
        Author::Line => tx.lock_chat(cmd.tenant, cmd.chat)?,
    }
    .ok_or(CoreError::ChatNotFound)?;
    let (author_id, line) = match cmd.author {
        Author::User(id) => (id, None),
        Author::Line => {
            let line = pinned_line(tx, &chat)?.ok_or(CoreError::NotSupported)?;
            (line.user_id, Some(line))
        }
    };
    let author = find_user(tx, cmd.tenant, author_id)?;
    let members = roster(tx, &chat, &[Some(author.id)])?;
    policy::send_message(&members, &author, members.latest(author.id))?;
    if let Some(line) = line {
        policy::line_can_deliver(&line)?;
    }
    if cmd.text.is_empty() {
        return Err(CoreError::Invalid("message text is empty".into()));
    }
    let now = tx.now();
    let msg = tx.insert_message(chat.tenant_id, chat.id, author.id, &cmd.text, now)?;
    let at = tx.now();
    tx.append_event(NewEvent {
        tenant_id: chat.tenant_id,
        chat_id: chat.id,
        kind: EventKind::MessageSent,
        actor_id: Some(author.id),
        subject_id: None,
        message_id: Some(msg.id),
        trace_id: cmd.trace_id.clone(),
        at,
    })?;
    Ok((chat, msg))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creator {
    User(UserId),
    /// The tenant's line with this number (iMessage chats).
    Line(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateChat {
    pub tenant: TenantId,
    pub id: Option<ChatId>,
    pub uuid: Option<Uuid>,
    pub kind: ChatKind,
    pub network: Network,
    pub title: String,
    /// Becomes the owner. None = no owner (administrator-made chat).
    pub creator: Option<Creator>,
    /// Everyone else in the chat (duplicates and the creator are ignored).
    pub members: Vec<MemberRef>,
    pub chat_key: Option<String>,
    pub crm: Option<CrmEntity>,
    pub trace_id: Option<String>,
}

pub fn create_chat(tx: &mut dyn Tx, cmd: &CreateChat) -> Result<(Chat, Vec<Membership>), CoreError> {
    let (owner, line) = match &cmd.creator {
        Some(Creator::User(id)) => (Some(find_user(tx, cmd.tenant, *id)?), None),
        Some(Creator::Line(number)) => {
            let line = tx.line_by_number(cmd.tenant, number)?.ok_or(CoreError::ForeignLine)?;
            policy::line_can_deliver(&line)?;
            (Some(find_user(tx, cmd.tenant, line.user_id)?), Some(line))
        }
        None => (None, None),
    };
    // Members named by id are read together (on PostgreSQL one round trip
    // for all of them, not one each); then each member in order, so the
    // first one that fails gives the error.
    let ids: Vec<UserId> = cmd
        .members
        .iter()
        .filter_map(|m| match m {
            MemberRef::Id(id) => Some(*id),
            MemberRef::Handle(_) => None,
        })
        .collect();
    let by_id = if ids.len() > 1 {
        tx.users_by_ids(cmd.tenant, &ids)?
    } else {
        Vec::new()
    };
    let mut others: Vec<User> = Vec::new();
    for m in &cmd.members {
        // (An id not read together is looked up again: a contact made for
        // an earlier handle of this list may have taken it.)
        let found = match by_id.iter().find(|u| matches!(m, MemberRef::Id(id) if u.id == *id)) {
            Some(u) => Some(u.clone()),
            None => resolve_member(tx, cmd.tenant, m, true)?,
        };
        let u = found.ok_or(CoreError::UserNotFound)?;
        if !u.active {
            return Err(CoreError::UserInactive);
        }
        if owner.as_ref().map(|o| o.id) != Some(u.id) && !others.iter().any(|o| o.id == u.id) {
            others.push(u);
        }
    }
    policy::create_chat(cmd.kind, cmd.network, others.len())?;
    if cmd.title.chars().count() > 255 {
        return Err(CoreError::Invalid("title is longer than 255 characters".into()));
    }
    let now = tx.now();
    let chat = tx.insert_chat(NewChat {
        tenant_id: cmd.tenant,
        id: cmd.id,
        uuid: cmd.uuid,
        kind: cmd.kind,
        network: cmd.network,
        title: cmd.title.clone(),
        owner_id: owner.as_ref().map(|o| o.id),
        line_id: line.as_ref().map(|l| l.id),
        chat_key: cmd.chat_key.clone(),
        created_at: now,
    })?;
    // Every membership at once (on PostgreSQL the chat row is updated
    // once, not once per member, which left a dead row version each), then
    // every event at once: the chat's creation and each member's joining,
    // in this order.
    let memberships: Vec<(UserId, Role)> = owner
        .iter()
        .map(|o| (o.id, Role::Owner))
        .chain(others.iter().map(|u| (u.id, Role::Member)))
        .collect();
    tx.open_memberships(chat.tenant_id, chat.id, &memberships, now)?;
    let owner_id = owner.as_ref().map(|o| o.id);
    let new_event = |kind, actor, subject| chat_event(&chat, kind, actor, subject, &cmd.trace_id, now);
    let events: Vec<NewEvent> = std::iter::once(new_event(EventKind::ChatCreated, owner_id, None))
        .chain(owner_id.map(|o| new_event(EventKind::Joined, Some(o), Some(o))))
        .chain(
            others
                .iter()
                .map(|u| new_event(EventKind::Joined, owner_id, Some(u.id))),
        )
        .collect();
    tx.append_events(events)?;
    if let Some(entity) = cmd.crm {
        tx.link_crm(cmd.tenant, entity, chat.id)?;
    }
    let members = tx.active_members(chat.tenant_id, chat.id)?;
    Ok((chat, members))
}

/// Bitrix `imbot.register`: a new bot of `app`, unique `code` per portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterBot {
    pub tenant: TenantId,
    pub app: AppId,
    pub code: String,
    pub name: String,
    /// Opaque registration data kept with the bot (type, handlers).
    pub meta: String,
}

pub fn register_bot(tx: &mut dyn Tx, cmd: &RegisterBot) -> Result<User, CoreError> {
    let existing = tx
        .bots_of_app(cmd.tenant, cmd.app)?
        .into_iter()
        .filter(|b| b.active)
        .count();
    policy::can_register_bot(existing)?;
    let bot = tx.insert_user(NewUser {
        tenant_id: cmd.tenant,
        id: None,
        kind: UserKind::Bot,
        name: cmd.name.clone(),
        handle: None,
        active: true,
        app_id: Some(cmd.app),
    })?;
    Ok(bot)
}

/// Bitrix `imbot.unregister`: the bot leaves every chat (one `left` event
/// each) and is deactivated. Only its own app may do it.
pub fn unregister_bot(tx: &mut dyn Tx, tenant: TenantId, app: AppId, bot_id: UserId) -> Result<User, CoreError> {
    let requested = tx.user(tenant, bot_id)?;
    // A named bot is resolved without the app's other bots.
    let user = policy::resolve_bot(app, Some(bot_id), requested.as_ref(), &[])?.clone();
    let bot = user.id;
    if !user.active {
        return Err(CoreError::BotNotFound);
    }
    let now = tx.now();
    for chat_id in chats_of(tx, tenant, bot)? {
        if let Some(chat) = tx.lock_chat(tenant, chat_id)? {
            tx.close_membership(tenant, chat.id, bot, now, false)?;
            event(tx, &chat, EventKind::Left, Some(bot), Some(bot), &None)?;
        }
    }
    tx.append_event(NewEvent {
        tenant_id: tenant,
        chat_id: ChatId(0),
        kind: EventKind::BotDeleted,
        actor_id: None,
        subject_id: Some(bot),
        message_id: None,
        trace_id: None,
        at: now,
    })?;
    Ok(user)
}

fn chats_of(tx: &mut dyn Tx, tenant: TenantId, user: UserId) -> Result<Vec<ChatId>, CoreError> {
    tx.chat_ids_of_user(tenant, user)
}

/// Carries out an accepted asynchronous operation with the same commands
/// the synchronous faces use (the pinned line acts), under its trace id.
pub fn run_operation(tx: &mut dyn Tx, op: &Operation) -> Result<(), CoreError> {
    let trace_id = Some(op.trace_id.clone());
    match op.kind {
        OperationKind::Leave => {
            leave(
                tx,
                &Leave {
                    tenant: op.tenant_id,
                    chat: op.chat_id,
                    leaver: Leaver::Line,
                    trace_id,
                },
            )?;
        }
        OperationKind::Add => {
            let handle = op
                .handle
                .clone()
                .ok_or_else(|| CoreError::Invalid("operation without a handle".into()))?;
            add(
                tx,
                &Add {
                    tenant: op.tenant_id,
                    chat: op.chat_id,
                    actor: None,
                    member: MemberRef::Handle(handle),
                    trace_id,
                },
            )?;
        }
        OperationKind::Remove => {
            let handle = op
                .handle
                .clone()
                .ok_or_else(|| CoreError::Invalid("operation without a handle".into()))?;
            remove(
                tx,
                &Remove {
                    tenant: op.tenant_id,
                    chat: ChatSelector::Id(op.chat_id),
                    actor: None,
                    member: MemberRef::Handle(handle),
                    policy: RemovePolicy::IMessage,
                    trace_id,
                },
            )?;
        }
    }
    Ok(())
}

/// Checks the pinned line is still in the chat (typing, mark read).
pub fn line_presence(tx: &mut dyn Tx, tenant: TenantId, chat: ChatId) -> Result<Chat, CoreError> {
    let chat = find_chat(tx, tenant, chat)?;
    let line = pinned_line(tx, &chat)?;
    let members = roster(tx, &chat, &[line.as_ref().map(|l| l.user_id)])?;
    policy::line_present(&chat, &members, line.as_ref())?;
    Ok(chat)
}

/// Renames a group from its pinned line (Linq `PUT /v3/chats/{id}`).
pub fn rename_chat(tx: &mut dyn Tx, tenant: TenantId, chat: ChatId, title: &str) -> Result<Chat, CoreError> {
    let mut chat = line_presence(tx, tenant, chat)?;
    policy::can_rename(&chat)?;
    if title.chars().count() > 255 {
        return Err(CoreError::Invalid("display_name is longer than 255 characters".into()));
    }
    tx.set_title(tenant, chat.id, title)?;
    chat.title = title.to_string();
    Ok(chat)
}

/// A chat and its active members, for a viewer allowed to see them
/// (`policy::can_view`); `NotAMember` otherwise.
pub fn view_chat(
    tx: &mut dyn Tx,
    tenant: TenantId,
    chat: ChatId,
    viewer: UserId,
) -> Result<(Chat, Vec<Membership>), CoreError> {
    let chat = visible_chat(tx, tenant, chat, viewer)?;
    let all = tx.active_members(chat.tenant_id, chat.id)?;
    Ok((chat, all))
}

/// [`view_chat`] without reading the members: the chat, if the viewer may
/// see it.
pub fn visible_chat(tx: &mut dyn Tx, tenant: TenantId, chat: ChatId, viewer: UserId) -> Result<Chat, CoreError> {
    let chat = find_chat(tx, tenant, chat)?;
    let members = roster(tx, &chat, &[Some(viewer)])?;
    policy::can_view(&chat, &members, viewer)?;
    Ok(chat)
}
