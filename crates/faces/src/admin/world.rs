//! World files: a declarative description of tenants, users, apps, bots,
//! lines, chats, members, CRM links and credentials (with known secrets),
//! applied idempotently in ONE transaction. The admin API's create routes
//! use the same spec types and functions, in `Mode::Create`.
//!
//! Idempotency rule: an entity is matched by its natural key (tenant slug,
//! user/bot/chat id, app client id, line number, credential secret). If it
//! exists it is left exactly as it is — in particular the members of an
//! existing chat are not touched, so re-applying a file after a leave does
//! not undo the leave.

use crate::common::{hash_secret, random_hex32, random_token};
use confab_core::commands::{self, CreateChat, Creator, MemberRef};
use confab_core::tx::{NewUser, StoreTx};
use confab_core::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    #[serde(default)]
    pub bots: Vec<BotSpec>,
    #[serde(default)]
    pub lines: Vec<LineSpec>,
    #[serde(default)]
    pub chats: Vec<ChatSpec>,
    #[serde(default)]
    pub credentials: Vec<CredentialSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Fixed id (Bitrix-style integer). Required in world files; the admin
    /// API picks the next free id when absent.
    #[serde(default)]
    pub id: Option<i64>,
    pub name: String,
    /// `person` (default) or `bot`; bots are better declared under `bots`.
    #[serde(default)]
    pub kind: Option<String>,
    /// E.164 number or e-mail, for iMessage chats.
    #[serde(default)]
    pub handle: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    #[serde(default)]
    pub id: Option<i64>,
    /// Bitrix `CLIENT_ID`.
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotSpec {
    #[serde(default)]
    pub id: Option<i64>,
    /// `client_id` of the app that registers it.
    pub app: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineSpec {
    /// E.164 number of the line.
    pub number: String,
    /// Fixed id of the user that stands for the line in chats.
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default = "yes")]
    pub active: bool,
}

/// A chat member: a user id, or a handle (an unknown handle becomes a contact).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum MemberSpec {
    Id(i64),
    Handle(String),
}

impl MemberSpec {
    pub fn to_ref(&self) -> MemberRef {
        match self {
            MemberSpec::Id(id) => MemberRef::Id(UserId(*id)),
            MemberSpec::Handle(h) => MemberRef::Handle(h.clone()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrmSpec {
    pub entity_type: String,
    pub entity_id: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSpec {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub uuid: Option<Uuid>,
    /// `dm`, `group` (default) or `open_line`.
    #[serde(default)]
    pub kind: Option<String>,
    /// `internal` (default) or `imessage`.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// Owner user id (internal chats). iMessage chats are owned by their line.
    #[serde(default)]
    pub owner: Option<i64>,
    /// The pinned line's number (iMessage chats).
    #[serde(default)]
    pub line: Option<String>,
    /// Upstream chat key. iMessage chats get a generated one when absent;
    /// `""` means "no chat key" (Chert 4099).
    #[serde(default)]
    pub chat_key: Option<String>,
    #[serde(default)]
    pub members: Vec<MemberSpec>,
    #[serde(default)]
    pub crm: Vec<CrmSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// One of `bitrix_webhook`, `bitrix_oauth`, `vibecode_personal`,
    /// `vibecode_app`, `vibecode_session`, `chert_signing`, `linq_api_key`.
    pub kind: String,
    /// The secret (webhook code, token, key, signing secret). Generated
    /// when absent; returned once.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub user: Option<i64>,
    /// `client_id` of the app.
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Unix seconds; or use `expires_in`.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// World files: existing entities are kept as they are.
    Upsert,
    /// Admin API: an existing entity is a conflict.
    Create,
}

/// What an apply did, for logs and the admin API.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Applied {
    pub created: usize,
    pub unchanged: usize,
}

impl Applied {
    fn mark(&mut self, created: bool) {
        if created {
            self.created += 1
        } else {
            self.unchanged += 1
        }
    }
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::Invalid(msg.into())
}

pub fn parse_toml(text: &str) -> Result<World, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// Applies a whole world in the caller's transaction.
pub fn apply(tx: &mut dyn StoreTx, world: &World) -> Result<Applied, CoreError> {
    let mut applied = Applied::default();
    for t in &world.tenants {
        let (tenant, created) = ensure_tenant(tx, &t.slug, t.name.as_deref(), Mode::Upsert)?;
        applied.mark(created);
        // Inactive users are created active and deactivated at the end, so
        // a world can describe a user who was deactivated while in a chat.
        let mut deactivate = Vec::new();
        for u in &t.users {
            if u.id.is_none() {
                return Err(invalid(format!(
                    "tenant {}: every user in a world file needs an id",
                    t.slug
                )));
            }
            let (user, created) = ensure_user(
                tx,
                tenant.id,
                &UserSpec {
                    active: true,
                    ..u.clone()
                },
                Mode::Upsert,
            )?;
            if created && !u.active {
                deactivate.push(user.id);
            }
            applied.mark(created);
        }
        for a in &t.apps {
            applied.mark(ensure_app(tx, tenant.id, a, Mode::Upsert)?.1);
        }
        for b in &t.bots {
            if b.id.is_none() {
                return Err(invalid(format!(
                    "tenant {}: every bot in a world file needs an id",
                    t.slug
                )));
            }
            applied.mark(ensure_bot(tx, tenant.id, b, Mode::Upsert)?.1);
        }
        // Lines, like users, are deactivated only after their chats exist.
        let mut silence = Vec::new();
        for l in &t.lines {
            let (line, created) = ensure_line(
                tx,
                tenant.id,
                &LineSpec {
                    active: true,
                    ..l.clone()
                },
                Mode::Upsert,
            )?;
            if created && !l.active {
                silence.push(line.id);
            }
            applied.mark(created);
        }
        for c in &t.chats {
            if c.id.is_none() {
                return Err(invalid(format!(
                    "tenant {}: every chat in a world file needs an id",
                    t.slug
                )));
            }
            applied.mark(ensure_chat(tx, tenant.id, c, Mode::Upsert)?.1);
        }
        for c in &t.credentials {
            if c.secret.is_none() {
                return Err(invalid(format!(
                    "tenant {}: every credential in a world file needs its secret",
                    t.slug
                )));
            }
            applied.mark(ensure_credential(tx, tenant.id, c, Mode::Upsert)?.created);
        }
        for id in deactivate {
            tx.set_user_active(tenant.id, id, false)?;
        }
        for id in silence {
            tx.set_line_active(tenant.id, id, false)?;
        }
    }
    Ok(applied)
}

fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn ensure_tenant(
    tx: &mut dyn StoreTx,
    slug: &str,
    name: Option<&str>,
    mode: Mode,
) -> Result<(Tenant, bool), CoreError> {
    if !valid_slug(slug) {
        return Err(invalid(
            "tenant slug must be 1-64 characters of letters, digits, '-' or '_'",
        ));
    }
    match (tx.tenant_by_slug(slug)?, mode) {
        (Some(t), Mode::Upsert) => Ok((t, false)),
        (Some(_), Mode::Create) => Err(CoreError::Conflict(format!("tenant {slug}"))),
        (None, _) => Ok((tx.insert_tenant(slug, name.unwrap_or(slug))?, true)),
    }
}

pub fn ensure_user(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    u: &UserSpec,
    mode: Mode,
) -> Result<(User, bool), CoreError> {
    let kind = match u.kind.as_deref() {
        None => UserKind::Person,
        Some(k) => match UserKind::parse(k) {
            Some(UserKind::Person) => UserKind::Person,
            _ => {
                return Err(invalid(format!(
                    "user kind must be \"person\" (declare bots under bots, lines under lines), got {k:?}"
                )))
            }
        },
    };
    if u.name.trim().is_empty() {
        return Err(invalid("user name must not be empty"));
    }
    if let Some(id) = u.id {
        if id <= 0 {
            return Err(invalid("user id must be a positive integer"));
        }
        if let (Some(existing), Mode::Upsert) = (tx.user(tenant, UserId(id))?, mode) {
            return Ok((existing, false));
        }
    }
    let user = tx.insert_user(NewUser {
        tenant_id: tenant,
        id: u.id.map(UserId),
        kind,
        name: u.name.clone(),
        handle: u.handle.clone(),
        active: u.active,
        app_id: None,
    })?;
    Ok((user, true))
}

pub fn ensure_app(tx: &mut dyn StoreTx, tenant: TenantId, a: &AppSpec, mode: Mode) -> Result<(App, bool), CoreError> {
    if a.client_id.trim().is_empty() {
        return Err(invalid("app client_id must not be empty"));
    }
    if let (Some(existing), Mode::Upsert) = (tx.app_by_client_id(tenant, &a.client_id)?, mode) {
        return Ok((existing, false));
    }
    let name = a.name.clone().unwrap_or_else(|| a.client_id.clone());
    Ok((tx.insert_app(tenant, a.id.map(AppId), &a.client_id, &name)?, true))
}

fn app_by_client_id(tx: &mut dyn StoreTx, tenant: TenantId, client_id: &str) -> Result<App, CoreError> {
    tx.app_by_client_id(tenant, client_id)?
        .ok_or_else(|| invalid(format!("unknown app {client_id:?}")))
}

pub fn ensure_bot(tx: &mut dyn StoreTx, tenant: TenantId, b: &BotSpec, mode: Mode) -> Result<(User, bool), CoreError> {
    let app = app_by_client_id(tx, tenant, &b.app)?;
    if let Some(id) = b.id {
        if id <= 0 {
            return Err(invalid("bot id must be a positive integer"));
        }
        if let (Some(existing), Mode::Upsert) = (tx.user(tenant, UserId(id))?, mode) {
            return Ok((existing, false));
        }
    }
    let bot = tx.insert_user(NewUser {
        tenant_id: tenant,
        id: b.id.map(UserId),
        kind: UserKind::Bot,
        name: b.name.clone(),
        handle: None,
        active: true,
        app_id: Some(app.id),
    })?;
    Ok((bot, true))
}

pub fn ensure_line(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    l: &LineSpec,
    mode: Mode,
) -> Result<(Line, bool), CoreError> {
    if !crate::common::is_e164(&l.number) {
        return Err(invalid(format!("line number {:?} is not in E.164 format", l.number)));
    }
    if let (Some(existing), Mode::Upsert) = (tx.line_by_number(tenant, &l.number)?, mode) {
        return Ok((existing, false));
    }
    let user = tx.insert_user(NewUser {
        tenant_id: tenant,
        id: l.user_id.map(UserId),
        kind: UserKind::Line,
        name: format!("Line {}", l.number),
        handle: Some(l.number.clone()),
        active: true,
        app_id: None,
    })?;
    let line = tx.insert_line(tenant, &l.number, user.id)?;
    if !l.active {
        tx.set_line_active(tenant, line.id, false)?;
    }
    Ok((
        Line {
            active: l.active,
            ..line
        },
        true,
    ))
}

pub fn ensure_chat(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    c: &ChatSpec,
    mode: Mode,
) -> Result<(Chat, bool), CoreError> {
    if let Some(id) = c.id {
        if id <= 0 {
            return Err(invalid("chat id must be a positive integer"));
        }
        if let (Some(existing), Mode::Upsert) = (tx.chat(tenant, ChatId(id))?, mode) {
            return Ok((existing, false));
        }
    }
    let kind = match c.kind.as_deref() {
        None => ChatKind::Group,
        Some(k) => {
            ChatKind::parse(k).ok_or_else(|| invalid(format!("chat kind must be dm, group or open_line, got {k:?}")))?
        }
    };
    let network = match c.network.as_deref() {
        None if c.line.is_some() => Network::Imessage,
        None => Network::Internal,
        Some(n) => {
            Network::parse(n).ok_or_else(|| invalid(format!("chat network must be internal or imessage, got {n:?}")))?
        }
    };
    let creator = match (network, &c.line, c.owner) {
        (Network::Imessage, Some(number), _) => Some(Creator::Line(number.clone())),
        (Network::Imessage, None, _) => {
            return Err(invalid("an imessage chat needs its line (the pinned line's number)"))
        }
        (Network::Internal, Some(_), _) => return Err(invalid("only imessage chats have a line")),
        (Network::Internal, None, owner) => owner.map(|o| Creator::User(UserId(o))),
    };
    let chat_key = match (&c.chat_key, network) {
        (Some(k), _) if k.is_empty() => None,
        (Some(k), _) => Some(k.clone()),
        (None, Network::Imessage) => Some(random_token(24)),
        (None, Network::Internal) => None,
    };
    let mut crm = Vec::new();
    for l in &c.crm {
        let entity_type = CrmEntityType::parse(&l.entity_type).ok_or_else(|| {
            invalid(format!(
                "CRM entity type must be lead, deal, contact or company, got {:?}",
                l.entity_type
            ))
        })?;
        crm.push(CrmEntity {
            entity_type,
            entity_id: l.entity_id,
        });
    }
    let (chat, _) = commands::create_chat(
        tx.as_tx(),
        &CreateChat {
            tenant,
            id: c.id.map(ChatId),
            uuid: c.uuid,
            kind,
            network,
            title: c.title.clone().unwrap_or_default(),
            creator,
            members: c.members.iter().map(MemberSpec::to_ref).collect(),
            chat_key,
            crm: crm.first().copied(),
            trace_id: None,
        },
    )?;
    for entity in crm.iter().skip(1) {
        tx.link_crm(tenant, *entity, chat.id)?;
    }
    Ok((chat, true))
}

/// A created (or found) credential; `secret` is set only when created.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedCredential {
    #[serde(flatten)]
    pub credential: Credential,
    /// Shown once, at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip)]
    pub created: bool,
}

fn generated_secret(kind: CredentialKind) -> String {
    match kind {
        // Bitrix webhook codes look like "4h6k2m9x1q0p7z3s".
        CredentialKind::BitrixWebhook => random_token(16),
        CredentialKind::BitrixOauth => random_token(40),
        CredentialKind::VibecodePersonal => format!("vibe_api_{}", random_token(32)),
        CredentialKind::VibecodeApp => format!("vibe_app_{}", random_token(32)),
        CredentialKind::VibecodeSession => random_token(48),
        CredentialKind::ChertSigning => random_hex32(),
        CredentialKind::LinqApiKey => random_token(48),
    }
}

pub fn ensure_credential(
    tx: &mut dyn StoreTx,
    tenant: TenantId,
    c: &CredentialSpec,
    mode: Mode,
) -> Result<IssuedCredential, CoreError> {
    let kind = CredentialKind::parse(&c.kind).ok_or_else(|| {
        let kinds: Vec<_> = CredentialKind::ALL.iter().map(|k| k.as_str()).collect();
        invalid(format!(
            "credential kind must be one of {}, got {:?}",
            kinds.join(", "),
            c.kind
        ))
    })?;
    let secret = match &c.secret {
        Some(s) if s.trim().is_empty() => return Err(invalid("credential secret must not be empty")),
        Some(s) => s.clone(),
        None => generated_secret(kind),
    };
    let secret_hash = hash_secret(&secret);
    if let Some(existing) = tx.credential_by_hash(kind, &secret_hash)? {
        if mode == Mode::Upsert && existing.tenant_id == tenant {
            return Ok(IssuedCredential {
                credential: existing,
                secret: None,
                created: false,
            });
        }
        return Err(CoreError::Conflict(format!(
            "{} credential with this secret",
            kind.as_str()
        )));
    }
    let user_id = match c.user {
        Some(id) => Some(
            tx.user(tenant, UserId(id))?
                .ok_or_else(|| invalid(format!("unknown user {id}")))?
                .id,
        ),
        None => None,
    };
    let app_id = match &c.app {
        Some(client_id) => Some(app_by_client_id(tx, tenant, client_id)?.id),
        None => None,
    };
    let needs = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(invalid(format!("a {} credential needs {what}", kind.as_str())))
        }
    };
    match kind {
        CredentialKind::BitrixWebhook => needs(user_id.is_some(), "a user")?,
        CredentialKind::BitrixOauth | CredentialKind::VibecodeSession => {
            needs(user_id.is_some() && app_id.is_some(), "a user and an app")?
        }
        CredentialKind::VibecodeApp => needs(app_id.is_some(), "an app")?,
        CredentialKind::VibecodePersonal | CredentialKind::ChertSigning | CredentialKind::LinqApiKey => {}
    }
    let expires_at = c.expires_at.or(c.expires_in.map(|s| tx.now() + s));
    let credential = tx.insert_credential(NewCredential {
        tenant_id: tenant,
        kind,
        secret_hash,
        secret: kind.keeps_secret().then(|| secret.clone()),
        user_id,
        app_id,
        scopes: c.scopes.clone(),
        expires_at,
        label: c.label.clone().unwrap_or_default(),
    })?;
    Ok(IssuedCredential {
        credential,
        secret: Some(secret),
        created: true,
    })
}
