//! `Tx` / `AdminTx` written once, over any SQL connection that implements
//! [`Conn`]: SQLite (rusqlite) and PostgreSQL (tokio-postgres). The SQL is
//! the common subset of both dialects (`?N` placeholders, rewritten to
//! `$N` for PostgreSQL; `RETURNING`; `ON CONFLICT`); the few places where
//! they differ ask [`Dialect`].

use confab_core::tx::{AdminTx, ChatFilter, MemberFilter, NewChat, NewUser, StoreTx, Tx, TxResult};
use confab_core::*;
use uuid::Uuid;

/// A bound parameter or a read column, in the types both databases share.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

/// How a Rust value becomes a [`Val`] parameter.
pub trait ToVal {
    fn to_val(&self) -> Val;
}
impl ToVal for i64 {
    fn to_val(&self) -> Val {
        Val::Int(*self)
    }
}
impl ToVal for f64 {
    fn to_val(&self) -> Val {
        Val::Real(*self)
    }
}
impl ToVal for bool {
    fn to_val(&self) -> Val {
        Val::Bool(*self)
    }
}
impl ToVal for str {
    fn to_val(&self) -> Val {
        Val::Text(self.to_owned())
    }
}
impl ToVal for String {
    fn to_val(&self) -> Val {
        Val::Text(self.clone())
    }
}
impl<T: ToVal + ?Sized> ToVal for &T {
    fn to_val(&self) -> Val {
        (**self).to_val()
    }
}
impl<T: ToVal> ToVal for Option<T> {
    fn to_val(&self) -> Val {
        self.as_ref().map_or(Val::Null, ToVal::to_val)
    }
}

/// SQL built once from the column lists (`format!` with constants only),
/// as a `&'static str`: building it at every call cost an allocation and
/// a formatting pass per statement.
macro_rules! sql {
    ($($fmt:tt)*) => {{
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!($($fmt)*));
        SQL.as_str()
    }};
}

/// `p![a, b]`: the parameters of one statement.
#[macro_export]
macro_rules! p {
    ($($v:expr),* $(,)?) => { &[$($crate::sql::ToVal::to_val(&$v)),*][..] };
}
pub use p;

/// [`Tx::chats_page`]'s statement for a kind of member filter; parameters
/// tenant, network, line (or NULL), limit, offset, and for a person their
/// id. Newest first along the primary key, stopping after offset + limit
/// rows. A person, former member included: every chat they ever joined is
/// in `user_chats`. Members without a handle: the chat's memberships, each
/// with its user. One statement per kind, none with an `IS NULL OR` on the
/// member: a generic plan (a pooled connection's, after five executions)
/// has to serve every value of such a condition, so PostgreSQL walked
/// every chat of the tenant and checked each against the person's chats
/// instead of starting from them.
pub(crate) fn chats_page_sql(member: MemberFilter) -> &'static str {
    const OF_NETWORK_AND_LINE: &str =
        "tenant_id = ?1 AND network = ?2 AND (CAST(?3 AS BIGINT) IS NULL OR line_id = ?3)";
    const NEWEST_FIRST: &str = "ORDER BY id DESC LIMIT ?4 OFFSET ?5";
    match member {
        MemberFilter::Any => sql!("SELECT {CHAT_COLS} FROM chats WHERE {OF_NETWORK_AND_LINE} {NEWEST_FIRST}"),
        MemberFilter::User(_) => sql!(
            "SELECT {CHAT_COLS} FROM chats WHERE {OF_NETWORK_AND_LINE} \
             AND id IN (SELECT u.chat_id FROM user_chats u WHERE u.tenant_id = ?1 AND u.user_id = ?6) \
             {NEWEST_FIRST}"
        ),
        MemberFilter::WithoutHandle => sql!(
            "SELECT {CHAT_COLS} FROM chats WHERE {OF_NETWORK_AND_LINE} \
             AND EXISTS (SELECT 1 FROM memberships m JOIN users u \
             ON u.tenant_id = m.tenant_id AND u.id = m.user_id \
             WHERE m.tenant_id = ?1 AND m.chat_id = chats.id AND COALESCE(u.handle, '') = '') \
             {NEWEST_FIRST}"
        ),
    }
}

/// The chats where user ?2 of tenant ?1 is an active member (`chat_id`
/// column). PostgreSQL finds them in the partial index `memberships_user`;
/// SQLite in `user_chats` (every chat the person ever joined), each checked
/// for an active membership by the primary key (see SQLite migration 9).
const CHATS_OF_USER_PG: &str = "SELECT chat_id FROM memberships WHERE tenant_id = ?1 AND user_id = ?2 AND ended = 0";
const CHATS_OF_USER_SQLITE: &str =
    "SELECT u.chat_id FROM user_chats u WHERE u.tenant_id = ?1 AND u.user_id = ?2 AND EXISTS \
     (SELECT 1 FROM memberships m WHERE m.tenant_id = ?1 AND m.chat_id = u.chat_id AND m.user_id = ?2 AND m.ended = 0)";

/// Forgets the Chert signatures expired by ?1 (by the index
/// `replay_nonces_expiry` on PostgreSQL, migration 4).
pub(crate) const SWEEP_NONCES: &str = "DELETE FROM replay_nonces WHERE expires_at <= ?1";

/// A chat's active members, oldest first (its roster).
pub(crate) fn active_members_sql() -> &'static str {
    sql!("SELECT {MEMBER_COLS} FROM memberships WHERE tenant_id = ?1 AND chat_id = ?2 AND ended = 0 ORDER BY seq")
}

/// PostgreSQL's leave: the membership closed and the chat's count kept in
/// one statement (?1 tenant, ?2 chat, ?3 user, ?4 when).
pub(crate) const CLOSE_MEMBERSHIP_PG: &str =
    "WITH closed AS (UPDATE memberships SET ended = seq, left_at = ?4, removed = ?5 WHERE tenant_id = ?1 AND chat_id = ?2 AND user_id = ?3 AND ended = 0 RETURNING 1) \
     UPDATE chats SET active_count = active_count - (SELECT count(*) FROM closed) WHERE tenant_id = ?1 AND id = ?2";

/// How a read column becomes a Rust value.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}
impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            Val::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
}
impl FromVal for f64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Real(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromVal for bool {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Bool(b) => Some(*b),
            Val::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow(pub Vec<Val>);

impl SqlRow {
    pub fn get<T: FromVal>(&self, i: usize) -> TxResult<T> {
        let v = self.0.get(i).unwrap_or(&Val::Null);
        T::from_val(v)
            .ok_or_else(|| CoreError::Internal(format!("column {i} holds {v:?}, not a {}", std::any::type_name::<T>())))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One open transaction of some SQL database.
pub trait Conn {
    fn dialect(&self) -> Dialect;
    /// Whether `SELECT … FOR UPDATE` should take row locks: PostgreSQL in
    /// a write transaction (a read-only one may not lock).
    fn row_locks(&self) -> bool;
    fn query(&mut self, sql: &str, params: &[Val]) -> TxResult<Vec<SqlRow>>;
    /// `first`, then `second`, which starts once `first` is done: a store
    /// may send both in one round trip (PostgreSQL pipelines them, and under
    /// READ COMMITTED `second` reads with a snapshot taken after `first`'s
    /// row locks were granted).
    fn query_two(&mut self, first: (&str, &[Val]), second: (&str, &[Val])) -> TxResult<(Vec<SqlRow>, Vec<SqlRow>)> {
        Ok((self.query(first.0, first.1)?, self.query(second.0, second.1)?))
    }
    /// Rows changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> TxResult<u64>;
    /// Runs a statement whose answer the caller does not need. A store may
    /// hold it back and send it with its next statement, or with `COMMIT`,
    /// in one round trip (PostgreSQL); a failure then surfaces there and
    /// fails the job, whose transaction is rolled back (at `COMMIT`
    /// PostgreSQL rolls back by itself), so only statements whose failure
    /// is never an expected outcome are deferred. SQLite runs it at once.
    fn exec_deferred(&mut self, sql: &str, params: &[Val]) -> TxResult<()> {
        self.exec(sql, params).map(|_| ())
    }
    /// Runs an `INSERT` (without `RETURNING`) into a table keyed by `id`
    /// and gives the new row's id.
    fn insert(&mut self, sql: &str, params: &[Val]) -> TxResult<i64> {
        self.query(&format!("{sql} RETURNING id"), params)?
            .first()
            .ok_or_else(|| CoreError::Internal("INSERT … RETURNING gave no row".into()))?
            .get(0)
    }
}

/// Rewrites `?N` placeholders to PostgreSQL's `$N` (the SQL here never
/// holds a `?` inside a string literal).
pub fn dollar_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

/// The store's semantics, once, over a [`Conn`].
pub struct SqlTx<C: Conn> {
    c: C,
    now: Timestamp,
    /// Active counts read with `lock_chat` in this transaction, so the
    /// rules' `active_count` costs no second statement; forgotten when a
    /// membership of that chat opens or closes.
    counts: Vec<((i64, i64), i64)>,
    /// Rows fetched with `lock_chat_for` (one entry per user), each served
    /// once to the lookup it was fetched for; any write forgets them.
    prefetched: Vec<Prefetched>,
    /// PostgreSQL: what the event of a user's leave needs, fetched with
    /// `lock_chat_for` — its id, drawn from the events' sequence under the
    /// chat's lock, and the tenant's subscriptions with the chat's line —
    /// so that `append_event` asks nothing and its insert waits for
    /// `COMMIT` (see `Conn::exec_deferred`). Kept across the command's
    /// writes; forgotten when a subscription changes.
    next_event: Option<NextEvent>,
    /// Set when the job queued work for the delivery worker (an outbox row,
    /// an operation, a replay): the store wakes the worker after COMMIT.
    wakes_worker: bool,
}

struct NextEvent {
    key: (i64, i64),
    id: i64,
    subscriptions: Vec<Subscription>,
    line: Option<String>,
}

struct Prefetched {
    key: (i64, i64, i64),
    membership: Option<Option<Membership>>,
    user: Option<Option<User>>,
}

impl<C: Conn> SqlTx<C> {
    pub fn new(c: C, now: Timestamp) -> Self {
        SqlTx {
            c,
            now,
            counts: Vec::new(),
            prefetched: Vec::new(),
            next_event: None,
            wakes_worker: false,
        }
    }

    /// Whether the job queued work for the delivery worker.
    pub fn wakes_worker(&self) -> bool {
        self.wakes_worker
    }

    /// The connection back, once the job is done with the transaction.
    pub fn into_conn(self) -> C {
        self.c
    }

    fn forget_count(&mut self, tenant: TenantId, chat: ChatId) {
        self.counts.retain(|(k, _)| *k != (tenant.0, chat.0));
    }

    fn one<T>(&mut self, sql: &str, p: &[Val], f: impl FnOnce(&SqlRow) -> TxResult<T>) -> TxResult<Option<T>> {
        no_nul(p)?;
        match self.c.query(sql, p)?.first() {
            Some(r) => f(r).map(Some),
            None => Ok(None),
        }
    }

    fn many<T>(&mut self, sql: &str, p: &[Val], f: impl FnMut(&SqlRow) -> TxResult<T>) -> TxResult<Vec<T>> {
        no_nul(p)?;
        self.c.query(sql, p)?.iter().map(f).collect()
    }

    fn exec(&mut self, sql: &str, p: &[Val]) -> TxResult<u64> {
        no_nul(p)?;
        self.prefetched.clear();
        self.c.exec(sql, p)
    }

    /// A write whose answer is not needed (see [`Conn::exec_deferred`]).
    fn exec_deferred(&mut self, sql: &str, p: &[Val]) -> TxResult<()> {
        no_nul(p)?;
        self.prefetched.clear();
        self.c.exec_deferred(sql, p)
    }

    /// An `INSERT` into a table with an `id` key: the new row's id.
    fn insert_id(&mut self, sql: &str, p: &[Val]) -> TxResult<i64> {
        no_nul(p)?;
        self.prefetched.clear();
        self.c.insert(sql, p)
    }

    fn skip_locked(&self) -> &'static str {
        match self.c.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The next free per-tenant id of `table`. On PostgreSQL a transaction
    /// advisory lock per (table, tenant) serializes allocation across
    /// connections and nodes; SQLite's writer is already alone.
    fn next_id(&mut self, table: &str, tenant: TenantId) -> TxResult<i64> {
        if self.c.dialect() == Dialect::Postgres {
            self.one(
                "SELECT pg_advisory_xact_lock(hashtext(?1), CAST(?2 AS INTEGER))::text",
                p![table, tenant.0],
                |_| Ok(()),
            )?;
        }
        let sql = format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table} WHERE tenant_id = ?1");
        Ok(self.one(&sql, p![tenant.0], |r| r.get(0))?.unwrap_or(1))
    }
}

/// PostgreSQL cannot hold a NUL character in text (the statement fails,
/// which would read as a server error), so text with one is refused on both
/// stores alike, as the client's mistake, before it reaches the database.
fn no_nul(p: &[Val]) -> TxResult<()> {
    if p.iter().any(|v| matches!(v, Val::Text(s) if s.contains('\0'))) {
        return Err(CoreError::Invalid(
            "text must not contain NUL (\\u0000) characters".into(),
        ));
    }
    Ok(())
}

fn bad(what: &str, v: &str) -> CoreError {
    CoreError::Internal(format!("bad {what} in the database: {v}"))
}

fn parse_uuid(s: String) -> TxResult<Uuid> {
    Uuid::parse_str(&s).map_err(|_| bad("uuid", &s))
}

/// The chat row with its active count, locked until the transaction ends
/// (`lock_chat` and `lock_chat_for` on a database with row locks).
fn chat_for_update() -> &'static str {
    sql!("SELECT {CHAT_COLS}, active_count FROM chats WHERE tenant_id = ?1 AND id = ?2 FOR UPDATE")
}

const CHAT_COLS: &str = "tenant_id, id, uuid, kind, network, title, owner_id, line_id, chat_key, created_at";
fn chat_row(r: &SqlRow) -> TxResult<Chat> {
    let kind: String = r.get(3)?;
    let network: String = r.get(4)?;
    Ok(Chat {
        tenant_id: TenantId(r.get(0)?),
        id: ChatId(r.get(1)?),
        uuid: parse_uuid(r.get(2)?)?,
        kind: ChatKind::parse(&kind).ok_or_else(|| bad("chat kind", &kind))?,
        network: Network::parse(&network).ok_or_else(|| bad("network", &network))?,
        title: r.get(5)?,
        owner_id: r.get::<Option<i64>>(6)?.map(UserId),
        line_id: r.get::<Option<i64>>(7)?.map(LineId),
        chat_key: r.get(8)?,
        created_at: r.get(9)?,
    })
}

const USER_COLS: &str = "tenant_id, id, kind, name, handle, active, app_id";
fn user_row(r: &SqlRow) -> TxResult<User> {
    let kind: String = r.get(2)?;
    Ok(User {
        tenant_id: TenantId(r.get(0)?),
        id: UserId(r.get(1)?),
        kind: UserKind::parse(&kind).ok_or_else(|| bad("user kind", &kind))?,
        name: r.get(3)?,
        handle: r.get(4)?,
        active: r.get(5)?,
        app_id: r.get::<Option<i64>>(6)?.map(AppId),
    })
}

const MEMBER_COLS: &str = "chat_id, user_id, role, joined_at, left_at, removed";
/// A user's active membership of a chat, by its full key.
pub static MEMBERSHIP_ACTIVE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {MEMBER_COLS} FROM memberships WHERE tenant_id = ?1 AND chat_id = ?2 AND user_id = ?3 AND ended = 0"
    )
});
/// A user's latest membership of a chat, active or not, in one statement:
/// the active row has the highest `seq` of the user's rows in the chat.
/// PostgreSQL sorts those few rows in memory; SQLite would open a temporary
/// b-tree for it, so SQLite uses the two statements around it instead.
pub static MEMBERSHIP_LATEST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {MEMBER_COLS} FROM memberships WHERE tenant_id = ?1 AND chat_id = ?2 AND user_id = ?3 ORDER BY seq DESC LIMIT 1"
    )
});
/// A user's most recently closed membership of a chat: the last in key
/// order (a closed row's `ended` is its `seq`), so no sort is needed.
pub static MEMBERSHIP_LAST_CLOSED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {MEMBER_COLS} FROM memberships WHERE tenant_id = ?1 AND chat_id = ?2 AND user_id = ?3 ORDER BY ended DESC LIMIT 1"
    )
});
fn member_row(r: &SqlRow) -> TxResult<Membership> {
    let role: String = r.get(2)?;
    Ok(Membership {
        chat_id: ChatId(r.get(0)?),
        user_id: UserId(r.get(1)?),
        role: Role::parse(&role).ok_or_else(|| bad("role", &role))?,
        joined_at: r.get(3)?,
        left_at: r.get(4)?,
        removed: r.get(5)?,
    })
}

const LINE_COLS: &str = "tenant_id, id, phone_number, user_id, active";
fn line_row(r: &SqlRow) -> TxResult<Line> {
    Ok(Line {
        tenant_id: TenantId(r.get(0)?),
        id: LineId(r.get(1)?),
        phone_number: r.get(2)?,
        user_id: UserId(r.get(3)?),
        active: r.get(4)?,
    })
}

fn app_row(r: &SqlRow) -> TxResult<App> {
    Ok(App {
        tenant_id: TenantId(r.get(0)?),
        id: AppId(r.get(1)?),
        client_id: r.get(2)?,
        name: r.get(3)?,
    })
}

fn tenant_row(r: &SqlRow) -> TxResult<Tenant> {
    Ok(Tenant {
        id: TenantId(r.get(0)?),
        slug: r.get(1)?,
        name: r.get(2)?,
    })
}

const EVENT_COLS: &str = "id, uuid, tenant_id, chat_id, kind, actor_id, subject_id, message_id, trace_id, at";
fn event_row(r: &SqlRow) -> TxResult<Event> {
    let kind: String = r.get(4)?;
    Ok(Event {
        id: EventId(r.get(0)?),
        uuid: parse_uuid(r.get(1)?)?,
        event: NewEvent {
            tenant_id: TenantId(r.get(2)?),
            chat_id: ChatId(r.get(3)?),
            kind: EventKind::parse(&kind).ok_or_else(|| bad("event kind", &kind))?,
            actor_id: r.get::<Option<i64>>(5)?.map(UserId),
            subject_id: r.get::<Option<i64>>(6)?.map(UserId),
            message_id: r.get::<Option<i64>>(7)?.map(MessageId),
            trace_id: r.get(8)?,
            at: r.get(9)?,
        },
    })
}

const CRED_COLS: &str = "id, tenant_id, kind, user_id, app_id, scopes, expires_at, label, secret, created_at";
fn cred_row(r: &SqlRow) -> TxResult<Credential> {
    let kind: String = r.get(2)?;
    let scopes: String = r.get(5)?;
    Ok(Credential {
        id: r.get(0)?,
        tenant_id: TenantId(r.get(1)?),
        kind: CredentialKind::parse(&kind).ok_or_else(|| bad("credential kind", &kind))?,
        user_id: r.get::<Option<i64>>(3)?.map(UserId),
        app_id: r.get::<Option<i64>>(4)?.map(AppId),
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        expires_at: r.get(6)?,
        label: r.get(7)?,
        secret: r.get(8)?,
        created_at: r.get(9)?,
    })
}

/// The events' sequence: the identity column's, by its default name
/// (`pg_only_the_events_sequence_has_its_default_name`). A user's leave
/// draws its event's id from it under the chat's lock.
pub(crate) const EVENTS_SEQUENCE: &str = "events_id_seq";

/// The phone number of chat `?2`'s line in tenant `?1` (no row: no line).
const LINE_OF_CHAT: &str =
    "SELECT l.phone_number FROM chats c JOIN lines l ON l.tenant_id = c.tenant_id AND l.id = c.line_id WHERE c.tenant_id = ?1 AND c.id = ?2";
const EVENT_INSERT: &str = "INSERT INTO events (uuid, tenant_id, chat_id, kind, actor_id, subject_id, message_id, trace_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const SUB_COLS: &str =
    "id, tenant_id, face, target_url, events, kinds, lines, subject_id, secret, extra, active, created_at, updated_at";
fn sub_row(r: &SqlRow) -> TxResult<Subscription> {
    let events: String = r.get(4)?;
    let kinds: String = r.get(5)?;
    let lines: String = r.get(6)?;
    Ok(Subscription {
        id: r.get(0)?,
        tenant_id: TenantId(r.get(1)?),
        face: r.get(2)?,
        target_url: r.get(3)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        kinds: kinds.split_whitespace().filter_map(EventKind::parse).collect(),
        lines: lines.split_whitespace().map(str::to_owned).collect(),
        subject_id: r.get::<Option<i64>>(7)?.map(UserId),
        secret: r.get(8)?,
        extra: r.get(9)?,
        active: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// How many columns a list such as [`CHAT_COLS`] names (counted when
/// compiling).
const fn count_cols(list: &str) -> usize {
    let bytes = list.as_bytes();
    let (mut n, mut i) = (1, 0);
    while i < bytes.len() {
        if bytes[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The columns of `list` (`a, b`) qualified by a table's `alias` (`s.a, s.b`).
fn qualified(list: &str, alias: &str) -> String {
    let cols: Vec<String> = list.split(", ").map(|c| format!("{alias}.{c}")).collect();
    cols.join(", ")
}

/// The subscription columns of a join that names the table `s`.
static S_SUB_COLS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| qualified(SUB_COLS, "s"));

/// The subscription columns of a join that names the table `s`, with the
/// chat's line number just before them (see [`joined_subscriptions`]).
static LINE_AND_SUB_COLS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("CASE WHEN s.id IS NOT NULL THEN ({LINE_OF_CHAT}) END, {}", *S_SUB_COLS));

/// What [`LINE_AND_SUB_COLS`] gave, from column `at` of each row (one row
/// per subscription; NULLs when there is none): the subscriptions, and the
/// chat's line number (asked only when there is a subscription).
fn joined_subscriptions(rows: &[SqlRow], at: usize) -> TxResult<(Vec<Subscription>, Option<String>)> {
    let subs = subscriptions_from(rows, at + 1)?;
    let line = match rows.first() {
        Some(r) if !subs.is_empty() => r.get(at)?,
        _ => None,
    };
    Ok((subs, line))
}

/// Columns `from..from + n` of a row (of a join), as a row of their own.
fn part(r: &SqlRow, from: usize, n: usize) -> SqlRow {
    SqlRow(r.0.iter().skip(from).take(n).cloned().collect())
}

/// The subscriptions joined from column `at` of each row (one row per
/// subscription; NULLs when there is none).
fn subscriptions_from(rows: &[SqlRow], at: usize) -> TxResult<Vec<Subscription>> {
    rows.iter()
        .filter(|r| !matches!(r.0.get(at), None | Some(Val::Null)))
        .map(|r| sub_row(&part(r, at, usize::MAX)))
        .collect()
}

/// How a subscription's lists are stored: events as JSON, kinds space-separated.
fn sub_columns(sub: &Subscription) -> TxResult<(String, String)> {
    let events = serde_json::to_string(&sub.events).map_err(|e| CoreError::Internal(e.to_string()))?;
    let kinds: Vec<&str> = sub.kinds.iter().map(|k| k.as_str()).collect();
    Ok((events, kinds.join(" ")))
}

/// `chat_id, id, uuid, author_id, text, created_at`.
fn message_row(r: &SqlRow) -> TxResult<Message> {
    Ok(Message {
        chat_id: ChatId(r.get(0)?),
        id: MessageId(r.get(1)?),
        uuid: parse_uuid(r.get(2)?)?,
        author_id: UserId(r.get(3)?),
        text: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const DELIVERY_COLS: &str =
    "id, tenant_id, subscription_id, event_id, status, attempts, next_attempt_at, last_status, last_error, created_at";
fn delivery_row(r: &SqlRow) -> TxResult<Delivery> {
    let status: String = r.get(4)?;
    Ok(Delivery {
        id: r.get(0)?,
        tenant_id: TenantId(r.get(1)?),
        subscription_id: r.get(2)?,
        event_id: EventId(r.get(3)?),
        status: DeliveryStatus::parse(&status).ok_or_else(|| bad("delivery status", &status))?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_status: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
    })
}

const OP_COLS: &str = "trace_id, tenant_id, kind, chat_id, handle, status, error, created_at, finished_at";
fn op_row(r: &SqlRow) -> TxResult<Operation> {
    let kind: String = r.get(2)?;
    let status: String = r.get(5)?;
    Ok(Operation {
        trace_id: r.get(0)?,
        tenant_id: TenantId(r.get(1)?),
        kind: OperationKind::parse(&kind).ok_or_else(|| bad("operation kind", &kind))?,
        chat_id: ChatId(r.get(3)?),
        handle: r.get(4)?,
        status: OperationStatus::parse(&status).ok_or_else(|| bad("operation status", &status))?,
        error: r.get(6)?,
        created_at: r.get(7)?,
        finished_at: r.get(8)?,
    })
}

impl<C: Conn> SqlTx<C> {
    /// One outbox row per active subscription that wants this event, in the
    /// event's own transaction: nothing happens unannounced, nothing is
    /// announced that did not happen.
    fn enqueue_deliveries(&mut self, event: &Event) -> TxResult<()> {
        let e = &event.event;
        let subs = self.many(
            sql!("SELECT {SUB_COLS} FROM subscriptions WHERE tenant_id = ?1 AND active = TRUE"),
            p![e.tenant_id.0],
            sub_row,
        )?;
        self.enqueue_for(event, subs, None)
    }

    /// Outbox rows for the subscriptions among `subs` that hear `event`;
    /// `line` is the chat's line number when the caller knows it already.
    fn enqueue_for(&mut self, event: &Event, subs: Vec<Subscription>, line: Option<Option<String>>) -> TxResult<()> {
        let e = &event.event;
        if subs.is_empty() {
            return Ok(());
        }
        let line_number: Option<String> = match line {
            Some(known) => known,
            None => self.one(LINE_OF_CHAT, p![e.tenant_id.0, e.chat_id.0], |r| r.get(0))?,
        };
        let now_ms = self.now * 1000;
        for sub in subs {
            if sub.hears(e, line_number.as_deref()) {
                self.wakes_worker = true;
                self.exec_deferred(
                    "INSERT INTO outbox (tenant_id, subscription_id, event_id, next_attempt_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    p![e.tenant_id.0, sub.id, event.id.0, now_ms, self.now],
                )?;
            }
        }
        Ok(())
    }
}

impl<C: Conn> Tx for SqlTx<C> {
    fn now(&self) -> Timestamp {
        self.now
    }

    fn chat(&mut self, tenant: TenantId, id: ChatId) -> TxResult<Option<Chat>> {
        self.one(
            sql!("SELECT {CHAT_COLS} FROM chats WHERE tenant_id = ?1 AND id = ?2"),
            p![tenant.0, id.0],
            chat_row,
        )
    }

    fn chat_by_uuid(&mut self, tenant: TenantId, uuid: Uuid) -> TxResult<Option<Chat>> {
        self.one(
            sql!("SELECT {CHAT_COLS} FROM chats WHERE tenant_id = ?1 AND uuid = ?2"),
            p![tenant.0, uuid.to_string()],
            chat_row,
        )
    }

    fn lock_chat(&mut self, tenant: TenantId, id: ChatId) -> TxResult<Option<Chat>> {
        // SQLite's write transaction already holds the single writer lock,
        // and a read-only transaction changes nothing to protect; elsewhere
        // the row lock serializes commands on this chat across connections
        // and nodes until the transaction ends. The active count comes
        // along for the rules.
        let sql = if self.c.row_locks() {
            chat_for_update()
        } else {
            sql!("SELECT {CHAT_COLS}, active_count FROM chats WHERE tenant_id = ?1 AND id = ?2")
        };
        let found = self.one(sql, p![tenant.0, id.0], |r| Ok((chat_row(r)?, r.get::<i64>(10)?)))?;
        Ok(found.map(|(chat, count)| {
            self.forget_count(tenant, id);
            self.counts.push(((tenant.0, id.0), count));
            chat
        }))
    }

    fn lock_chat_for(&mut self, tenant: TenantId, id: ChatId, users: &[UserId]) -> TxResult<Option<Chat>> {
        let users: &[UserId] = match users {
            [a, b] if a == b => &users[..1],
            [_] | [_, _] => users,
            _ => &[],
        };
        if users.is_empty() || !(self.c.row_locks() && self.c.dialect() == Dialect::Postgres) {
            return self.lock_chat(tenant, id);
        }
        // One round trip, two statements: the chat row locked, with its
        // count and its line's number; then, once the lock is granted and
        // so with a snapshot that sees whatever the lock's previous holder
        // committed, each user's latest membership and user row (NULLs when
        // absent; one user or two: a leaver, or an actor and the member it
        // adds or removes), and for the event its id (drawn after the lock,
        // so a chat's events are numbered in the order they commit) and the
        // tenant's subscriptions, one row each (see `NextEvent`). One
        // statement would read the membership from a snapshot taken before
        // waiting for the lock: two leaves of one user could then both see
        // it active. `nextval` sits in the select list, so with several
        // subscriptions each row draws one and the first is used (the
        // sequence only gets gaps, as after a rollback).
        //
        // What PostgreSQL spends on these per leave grows with the
        // relations they touch (each opened and locked at every execution):
        // the line's number is read by its key in the first statement,
        // rather than by joining chats to lines again under the
        // subscriptions, and the sequence is named, not looked up in the
        // catalog (`pg_get_serial_sequence` scans `pg_depend` each time).
        // About +5 % in pgbench runs of a leave's statements (BENCHMARKS.md,
        // session 12). Reading the line before the lock wait is safe: a
        // chat's `line_id` is set when it is created and a line's number
        // never changes (lines are only added, or switched on and off). The
        // sub-select's `lines` row is not locked (`FOR UPDATE OF chats`).
        static LOCK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {CHAT_COLS}, active_count, \
                 (SELECT l.phone_number FROM lines l WHERE l.tenant_id = chats.tenant_id AND l.id = chats.line_id) \
                 FROM chats WHERE tenant_id = ?1 AND id = ?2 FOR UPDATE OF chats"
            )
        });
        // `?3` is the first user; the second, if any, is `?4`.
        fn after(users: usize) -> String {
            let mut cols = String::new();
            let mut joins = String::new();
            for n in 0..users {
                let p = format!("?{}", 3 + n);
                cols.push_str(&format!("m{n}.*, u{n}.*, "));
                joins.push_str(&format!(
                    "LEFT JOIN LATERAL ({latest}) m{n} ON true \
                     LEFT JOIN LATERAL (SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND id = {p}) u{n} ON true ",
                    latest = MEMBERSHIP_LATEST.replace("?3", &p),
                ));
            }
            format!(
                "SELECT {cols}nextval('{EVENTS_SEQUENCE}'), {subs} FROM (SELECT 1) one {joins}\
                 LEFT JOIN subscriptions s ON s.tenant_id = ?1 AND s.active = TRUE",
                subs = *S_SUB_COLS
            )
        }
        static AFTER: [std::sync::LazyLock<String>; 2] = [
            std::sync::LazyLock::new(|| after(1)),
            std::sync::LazyLock::new(|| after(2)),
        ];
        const CHAT_N: usize = count_cols(CHAT_COLS) + 1;
        let (chat_n, member_n, user_n) = (CHAT_N, count_cols(MEMBER_COLS), count_cols(USER_COLS));
        let present = |r: &SqlRow| !matches!(r.0.first(), None | Some(Val::Null));
        let mut params = p![tenant.0, id.0].to_vec();
        params.extend(users.iter().map(|u| Val::Int(u.0)));
        no_nul(&params)?;
        let (chats, rows) = self
            .c
            .query_two((&LOCK, p![tenant.0, id.0]), (&AFTER[users.len() - 1], &params))?;
        let (Some(c), Some(r)) = (chats.first(), rows.first()) else {
            return Ok(None);
        };
        let chat = chat_row(c)?;
        let count: i64 = c.get(chat_n - 1)?;
        let mut prefetched = Vec::with_capacity(users.len());
        for (n, user) in users.iter().enumerate() {
            let at = n * (member_n + user_n);
            let m = part(r, at, member_n);
            let u = part(r, at + member_n, user_n);
            prefetched.push(Prefetched {
                key: (tenant.0, id.0, user.0),
                membership: Some(if present(&m) { Some(member_row(&m)?) } else { None }),
                user: Some(if present(&u) { Some(user_row(&u)?) } else { None }),
            });
        }
        let event_at = users.len() * (member_n + user_n);
        self.next_event = Some(NextEvent {
            key: (tenant.0, id.0),
            id: r.get(event_at)?,
            line: c.get(chat_n)?,
            subscriptions: subscriptions_from(&rows, event_at + 1)?,
        });
        self.forget_count(tenant, id);
        self.counts.push(((tenant.0, id.0), count));
        self.prefetched = prefetched;
        Ok(Some(chat))
    }

    fn active_count(&mut self, tenant: TenantId, chat: ChatId) -> TxResult<usize> {
        // Kept on the chat row by open/close_membership.
        let known = self
            .counts
            .iter()
            .find(|(k, _)| *k == (tenant.0, chat.0))
            .map(|(_, n)| *n);
        let n: i64 = match known {
            Some(n) => n,
            None => self
                .one(
                    "SELECT active_count FROM chats WHERE tenant_id = ?1 AND id = ?2",
                    p![tenant.0, chat.0],
                    |r| r.get(0),
                )?
                .unwrap_or(0),
        };
        Ok(n.max(0) as usize)
    }

    fn active_members(&mut self, tenant: TenantId, chat: ChatId) -> TxResult<Vec<Membership>> {
        self.many(active_members_sql(), p![tenant.0, chat.0], member_row)
    }

    fn active_member_users(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        page: Option<(usize, usize)>,
    ) -> TxResult<Vec<(Membership, User)>> {
        fn sql(paged: bool) -> String {
            format!(
                "SELECT {}, {} FROM memberships m JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id \
                 WHERE m.tenant_id = ?1 AND m.chat_id = ?2 AND m.ended = 0 ORDER BY m.seq{}",
                qualified(MEMBER_COLS, "m"),
                qualified(USER_COLS, "u"),
                if paged { " LIMIT ?3 OFFSET ?4" } else { "" }
            )
        }
        static ALL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| sql(false));
        static PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| sql(true));
        const MEMBER_N: usize = count_cols(MEMBER_COLS);
        const USER_N: usize = count_cols(USER_COLS);
        let row = |r: &SqlRow| {
            Ok((
                member_row(&part(r, 0, MEMBER_N))?,
                user_row(&part(r, MEMBER_N, USER_N))?,
            ))
        };
        match page {
            None => self.many(&ALL, p![tenant.0, chat.0], row),
            Some((offset, limit)) => {
                let (offset, limit) = (
                    offset.min(i64::MAX as usize) as i64,
                    limit.min(i64::MAX as usize) as i64,
                );
                self.many(&PAGE, p![tenant.0, chat.0, limit, offset], row)
            }
        }
    }

    fn membership(&mut self, tenant: TenantId, chat: ChatId, user: UserId) -> TxResult<Option<Membership>> {
        if let Some(p) = self.prefetched.iter_mut().find(|p| p.key == (tenant.0, chat.0, user.0)) {
            if let Some(m) = p.membership.take() {
                return Ok(m);
            }
        }
        if self.c.dialect() == Dialect::Postgres {
            // One round trip, whether or not the user is active.
            return self.one(&MEMBERSHIP_LATEST, p![tenant.0, chat.0, user.0], member_row);
        }
        // The active row if there is one (the usual case: a leave, a
        // removal), else the most recently closed; each a walk of the key
        // in its own order, so SQLite needs no temporary b-tree to sort.
        let active = self.one(&MEMBERSHIP_ACTIVE, p![tenant.0, chat.0, user.0], member_row)?;
        if active.is_some() {
            return Ok(active);
        }
        self.one(&MEMBERSHIP_LAST_CLOSED, p![tenant.0, chat.0, user.0], member_row)
    }

    fn user(&mut self, tenant: TenantId, id: UserId) -> TxResult<Option<User>> {
        if let Some(p) = self
            .prefetched
            .iter_mut()
            .find(|p| (p.key.0, p.key.2) == (tenant.0, id.0))
        {
            if let Some(u) = p.user.take() {
                return Ok(u);
            }
        }
        self.one(
            sql!("SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND id = ?2"),
            p![tenant.0, id.0],
            user_row,
        )
    }

    fn users_by_ids(&mut self, tenant: TenantId, ids: &[UserId]) -> TxResult<Vec<User>> {
        if self.c.dialect() != Dialect::Postgres || ids.len() < 2 {
            let mut found = Vec::new();
            for &id in ids {
                found.extend(self.user(tenant, id)?);
            }
            return Ok(found);
        }
        // One round trip: the ids as a comma-separated list of numbers.
        let list: Vec<String> = ids.iter().map(|u| u.0.to_string()).collect();
        self.many(
            sql!(
                "SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 \
                 AND id = ANY (CAST(string_to_array(?2, ',') AS BIGINT[]))"
            ),
            p![tenant.0, list.join(",")],
            user_row,
        )
    }

    fn user_by_handle(&mut self, tenant: TenantId, handle: &str) -> TxResult<Option<User>> {
        self.one(
            sql!("SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND handle = ?2"),
            p![tenant.0, handle],
            user_row,
        )
    }

    fn bots_of_app(&mut self, tenant: TenantId, app: AppId) -> TxResult<Vec<User>> {
        self.many(
            sql!("SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND app_id = ?2 AND kind = 'bot' ORDER BY id"),
            p![tenant.0, app.0],
            user_row,
        )
    }

    fn bots(&mut self, tenant: TenantId) -> TxResult<Vec<User>> {
        // Every bot belongs to an app, so the index of users with an app
        // (`users_app`) finds them without reading the tenant's people.
        self.many(
            sql!("SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND app_id IS NOT NULL AND kind = 'bot' ORDER BY id"),
            p![tenant.0],
            user_row,
        )
    }

    fn line(&mut self, tenant: TenantId, id: LineId) -> TxResult<Option<Line>> {
        self.one(
            sql!("SELECT {LINE_COLS} FROM lines WHERE tenant_id = ?1 AND id = ?2"),
            p![tenant.0, id.0],
            line_row,
        )
    }

    fn line_by_number(&mut self, tenant: TenantId, number: &str) -> TxResult<Option<Line>> {
        self.one(
            sql!("SELECT {LINE_COLS} FROM lines WHERE tenant_id = ?1 AND phone_number = ?2"),
            p![tenant.0, number],
            line_row,
        )
    }

    fn chat_ids_of_user(&mut self, tenant: TenantId, user: UserId) -> TxResult<Vec<ChatId>> {
        let sql = match self.c.dialect() {
            Dialect::Postgres => sql!("SELECT chat_id FROM ({CHATS_OF_USER_PG}) mine ORDER BY chat_id"),
            Dialect::Sqlite => sql!("SELECT chat_id FROM ({CHATS_OF_USER_SQLITE}) mine ORDER BY chat_id"),
        };
        self.many(sql, p![tenant.0, user.0], |r| Ok(ChatId(r.get(0)?)))
    }

    fn crm_chats(&mut self, tenant: TenantId, entity: CrmEntity) -> TxResult<Vec<ChatId>> {
        self.many(
            "SELECT chat_id FROM crm_links WHERE tenant_id = ?1 AND entity_type = ?2 AND entity_id = ?3 ORDER BY seq",
            p![tenant.0, entity.entity_type.as_str(), entity.entity_id],
            |r| Ok(ChatId(r.get(0)?)),
        )
    }

    fn insert_chat(&mut self, c: NewChat) -> TxResult<Chat> {
        let id = match c.id {
            Some(id) => id,
            None => ChatId(self.next_id("chats", c.tenant_id)?),
        };
        if self.chat(c.tenant_id, id)?.is_some() {
            return Err(CoreError::Conflict(format!("chat {id}")));
        }
        let chat = Chat {
            tenant_id: c.tenant_id,
            id,
            uuid: c.uuid.unwrap_or_else(Uuid::new_v4),
            kind: c.kind,
            network: c.network,
            title: c.title,
            owner_id: c.owner_id,
            line_id: c.line_id,
            chat_key: c.chat_key,
            created_at: c.created_at,
        };
        self.exec(
            sql!("INSERT INTO chats ({CHAT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            p![
                chat.tenant_id.0,
                chat.id.0,
                chat.uuid.to_string(),
                chat.kind.as_str(),
                chat.network.as_str(),
                chat.title,
                chat.owner_id.map(|u| u.0),
                chat.line_id.map(|l| l.0),
                chat.chat_key,
                chat.created_at
            ],
        )?;
        Ok(chat)
    }

    fn insert_user(&mut self, u: NewUser) -> TxResult<User> {
        let id = match u.id {
            Some(id) => id,
            None => UserId(self.next_id("users", u.tenant_id)?),
        };
        if self.user(u.tenant_id, id)?.is_some() {
            return Err(CoreError::Conflict(format!("user {id}")));
        }
        if let Some(h) = &u.handle {
            if self.user_by_handle(u.tenant_id, h)?.is_some() {
                return Err(CoreError::Conflict(format!("user with handle {h}")));
            }
        }
        let user = User {
            tenant_id: u.tenant_id,
            id,
            kind: u.kind,
            name: u.name,
            handle: u.handle,
            active: u.active,
            app_id: u.app_id,
        };
        self.exec(
            sql!("INSERT INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            p![
                user.tenant_id.0,
                user.id.0,
                user.kind.as_str(),
                user.name,
                user.handle,
                user.active,
                user.app_id.map(|a| a.0)
            ],
        )?;
        Ok(user)
    }

    fn open_membership(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        user: UserId,
        role: Role,
        at: Timestamp,
    ) -> TxResult<()> {
        // The chat row counts its active members and hands out the
        // membership's place in the chat's order (`seq`) in one update.
        // A write: what `lock_chat_for` fetched is forgotten, as in `exec`.
        self.prefetched.clear();
        if self.c.dialect() == Dialect::Postgres {
            // Both in one statement, sent with the next one (the event's
            // insert, or COMMIT): the chat's row is locked by this
            // transaction, and the rules have checked the user is not
            // active, so it fails only if the database does. Without the
            // chat's row `seq` would be NULL, which its column refuses, so
            // the transaction fails then as it does on SQLite at once.
            // The person's chats (PostgreSQL migration 6) in the same
            // statement.
            self.exec_deferred(
                "WITH c AS (UPDATE chats SET active_count = active_count + 1, member_seq = member_seq + 1 \
                 WHERE tenant_id = ?1 AND id = ?2 RETURNING member_seq), \
                 u AS (INSERT INTO user_chats (tenant_id, user_id, chat_id) VALUES (?1, ?3, ?2) \
                 ON CONFLICT DO NOTHING) \
                 INSERT INTO memberships (tenant_id, chat_id, user_id, ended, seq, role, joined_at) \
                 VALUES (?1, ?2, ?3, 0, (SELECT member_seq FROM c), ?4, ?5)",
                p![tenant.0, chat.0, user.0, role.as_str(), at],
            )?;
            self.forget_count(tenant, chat);
            return Ok(());
        }
        self.open_memberships(tenant, chat, &[(user, role)], at)
    }

    fn open_memberships(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        members: &[(UserId, Role)],
        at: Timestamp,
    ) -> TxResult<()> {
        let n = members.len() as i64;
        match members {
            [] => return Ok(()),
            [(user, role)] if self.c.dialect() == Dialect::Postgres => {
                return self.open_membership(tenant, chat, *user, *role, at);
            }
            _ => {}
        }
        self.prefetched.clear();
        if self.c.dialect() == Dialect::Postgres {
            // As `open_membership`'s statement, for all of them: the chat
            // row updated once (each update leaves a dead row version for
            // VACUUM), the ids and roles as comma-separated lists (ids are
            // numbers, roles single words), `seq` in their order.
            let users: Vec<String> = members.iter().map(|(u, _)| u.0.to_string()).collect();
            let roles: Vec<&str> = members.iter().map(|(_, r)| r.as_str()).collect();
            self.exec_deferred(
                "WITH c AS (UPDATE chats SET active_count = active_count + ?3, member_seq = member_seq + ?3 \
                 WHERE tenant_id = ?1 AND id = ?2 RETURNING member_seq - ?3 AS base), \
                 v AS (SELECT * FROM unnest(CAST(string_to_array(?4, ',') AS BIGINT[]), string_to_array(?5, ',')) \
                 WITH ORDINALITY AS v(user_id, role, i)), \
                 u AS (INSERT INTO user_chats (tenant_id, user_id, chat_id) SELECT ?1, v.user_id, ?2 FROM v \
                 ON CONFLICT DO NOTHING) \
                 INSERT INTO memberships (tenant_id, chat_id, user_id, ended, seq, role, joined_at) \
                 SELECT ?1, ?2, v.user_id, 0, (SELECT base FROM c) + v.i, v.role, ?6 FROM v",
                p![tenant.0, chat.0, n, users.join(","), roles.join(","), at],
            )?;
            self.forget_count(tenant, chat);
            return Ok(());
        }
        let base: Option<i64> = self.one(
            "UPDATE chats SET active_count = active_count + ?3, member_seq = member_seq + ?3 \
             WHERE tenant_id = ?1 AND id = ?2 RETURNING member_seq - ?3",
            p![tenant.0, chat.0, n],
            |r| r.get(0),
        )?;
        let Some(base) = base else {
            return Err(CoreError::Internal(format!(
                "a membership of chat {} that has no row",
                chat.0
            )));
        };
        for (seq, (user, role)) in (base + 1..).zip(members) {
            self.exec(
                "INSERT INTO memberships (tenant_id, chat_id, user_id, ended, seq, role, joined_at) \
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
                p![tenant.0, chat.0, user.0, seq, role.as_str(), at],
            )?;
            // The person's chats, for `chat_ids_of_user` (SQLite migration 9).
            self.exec(
                "INSERT OR IGNORE INTO user_chats (tenant_id, user_id, chat_id) VALUES (?1, ?2, ?3)",
                p![tenant.0, user.0, chat.0],
            )?;
        }
        self.forget_count(tenant, chat);
        Ok(())
    }

    fn close_membership(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        user: UserId,
        at: Timestamp,
        removed: bool,
    ) -> TxResult<()> {
        if self.c.dialect() == Dialect::Postgres {
            // One statement for both changes, sent with the next one
            // (the event's insert): no round trip of its own.
            self.exec_deferred(CLOSE_MEMBERSHIP_PG, p![tenant.0, chat.0, user.0, at, removed])?;
            self.forget_count(tenant, chat);
            return Ok(());
        }
        let closed = self.exec(
            "UPDATE memberships SET ended = seq, left_at = ?4, removed = ?5 \
             WHERE tenant_id = ?1 AND chat_id = ?2 AND user_id = ?3 AND ended = 0",
            p![tenant.0, chat.0, user.0, at, removed],
        )?;
        if closed > 0 {
            self.exec(
                "UPDATE chats SET active_count = active_count - ?3 WHERE tenant_id = ?1 AND id = ?2",
                p![tenant.0, chat.0, closed as i64],
            )?;
            self.forget_count(tenant, chat);
        }
        Ok(())
    }

    fn set_role(&mut self, tenant: TenantId, chat: ChatId, user: UserId, role: Role) -> TxResult<()> {
        self.exec(
            "UPDATE memberships SET role = ?4 WHERE tenant_id = ?1 AND chat_id = ?2 AND user_id = ?3 AND ended = 0",
            p![tenant.0, chat.0, user.0, role.as_str()],
        )?;
        Ok(())
    }

    fn set_title(&mut self, tenant: TenantId, chat: ChatId, title: &str) -> TxResult<()> {
        self.exec(
            "UPDATE chats SET title = ?3 WHERE tenant_id = ?1 AND id = ?2",
            p![tenant.0, chat.0, title],
        )?;
        Ok(())
    }

    fn set_owner(&mut self, tenant: TenantId, chat: ChatId, owner: Option<UserId>) -> TxResult<()> {
        self.exec(
            "UPDATE chats SET owner_id = ?3 WHERE tenant_id = ?1 AND id = ?2",
            p![tenant.0, chat.0, owner.map(|u| u.0)],
        )?;
        Ok(())
    }

    fn link_crm(&mut self, tenant: TenantId, entity: CrmEntity, chat: ChatId) -> TxResult<()> {
        self.exec(
            "INSERT INTO crm_links (tenant_id, entity_type, entity_id, chat_id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            p![tenant.0, entity.entity_type.as_str(), entity.entity_id, chat.0],
        )?;
        Ok(())
    }

    fn insert_message(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        author: UserId,
        text: &str,
        at: Timestamp,
    ) -> TxResult<Message> {
        // Time-ordered (v7), as an event's: the unique index on `uuid`
        // grows at its right edge instead of taking a write at a random
        // page per message.
        let uuid = Uuid::now_v7();
        let id = if self.c.dialect() == Dialect::Postgres {
            // From the sequence (PostgreSQL migration 5): no lock across the
            // tenant, one statement. Drawn after the chat's row lock, so the
            // ids of a chat's messages follow their commit order.
            MessageId(self.insert_id(
                "INSERT INTO messages (tenant_id, id, uuid, chat_id, author_id, text, created_at) \
                 VALUES (?1, nextval('messages_id_seq'), ?2, ?3, ?4, ?5, ?6)",
                p![tenant.0, uuid.to_string(), chat.0, author.0, text, at],
            )?)
        } else {
            let id = MessageId(self.next_id("messages", tenant)?);
            self.exec(
                "INSERT INTO messages (tenant_id, id, uuid, chat_id, author_id, text, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                p![tenant.0, id.0, uuid.to_string(), chat.0, author.0, text, at],
            )?;
            id
        };
        Ok(Message {
            chat_id: chat,
            id,
            uuid,
            author_id: author,
            text: text.to_owned(),
            created_at: at,
        })
    }

    fn append_event(&mut self, e: NewEvent) -> TxResult<Event> {
        // Time-ordered (v7), so the unique index on `uuid` grows at its
        // right edge instead of taking a write at a random page per event.
        let uuid = Uuid::now_v7();
        let params = p![
            uuid.to_string(),
            e.tenant_id.0,
            e.chat_id.0,
            e.kind.as_str(),
            e.actor_id.map(|u| u.0),
            e.subject_id.map(|u| u.0),
            e.message_id.map(|m| m.0),
            e.trace_id.clone(),
            e.at
        ];
        let next = self.next_event.take_if(|n| n.key == (e.tenant_id.0, e.chat_id.0));
        if let Some(next) = next {
            // Everything it needs was fetched with the chat's lock: the
            // insert and its outbox rows go out with COMMIT.
            static WITH_ID: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| EVENT_INSERT.replace(", at)", ", at, id)").replace("?9)", "?9, ?10)"));
            let mut params = params.to_vec();
            params.push(Val::Int(next.id));
            self.exec_deferred(&WITH_ID, &params)?;
            let event = Event {
                id: EventId(next.id),
                uuid,
                event: e,
            };
            self.enqueue_for(&event, next.subscriptions, Some(next.line))?;
            return Ok(event);
        }
        if self.c.dialect() == Dialect::Postgres {
            // One round trip: the insert, and the tenant's subscriptions
            // joined to its id (NULL columns when there is none), with the
            // chat's line number that their filters need (looked up only
            // when there is a subscription).
            static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                // The event's tenant and chat are ?2 and ?3 here.
                let subs = LINE_AND_SUB_COLS.replace("?2", "?3").replace("?1", "?2");
                format!(
                    "WITH ev AS ({EVENT_INSERT} RETURNING id) SELECT ev.id, {subs} \
                     FROM ev LEFT JOIN subscriptions s ON s.tenant_id = ?2 AND s.active = TRUE"
                )
            });
            no_nul(params)?;
            let rows = self.c.query(&SQL, params)?;
            let id: i64 = rows
                .first()
                .ok_or_else(|| CoreError::Internal("INSERT … RETURNING gave no row".into()))?
                .get(0)?;
            let (subs, line) = joined_subscriptions(&rows, 1)?;
            let event = Event {
                id: EventId(id),
                uuid,
                event: e,
            };
            self.enqueue_for(&event, subs, Some(line))?;
            return Ok(event);
        }
        let id = self.insert_id(EVENT_INSERT, params)?;
        let event = Event {
            id: EventId(id),
            uuid,
            event: e,
        };
        self.enqueue_deliveries(&event)?;
        Ok(event)
    }

    fn append_events(&mut self, events: Vec<NewEvent>) -> TxResult<Vec<Event>> {
        let one_chat = events
            .windows(2)
            .all(|w| (w[0].tenant_id, w[0].chat_id) == (w[1].tenant_id, w[1].chat_id));
        let Some(first) = events.first().filter(|_| one_chat && events.len() > 1) else {
            return events.into_iter().map(|e| self.append_event(e)).collect();
        };
        if self.c.dialect() != Dialect::Postgres {
            return events.into_iter().map(|e| self.append_event(e)).collect();
        }
        // One round trip for all of them (a new chat's creation and each
        // member's joining, which took one each): their ids drawn in order,
        // and the tenant's subscriptions with the chat's line number, as
        // `lock_chat_for` fetches them for one event; the inserts and
        // their outbox rows then go out with the next statement or COMMIT.
        static IDS: &str = "SELECT nextval('events_id_seq') FROM generate_series(1, CAST(?1 AS BIGINT)) ORDER BY 1";
        static SUBS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {} FROM (SELECT 1) one LEFT JOIN subscriptions s ON s.tenant_id = ?1 AND s.active = TRUE",
                *LINE_AND_SUB_COLS
            )
        });
        let (tenant, chat) = (first.tenant_id.0, first.chat_id.0);
        let (ids, subs) = self
            .c
            .query_two((IDS, p![events.len() as i64]), (&SUBS, p![tenant, chat]))?;
        let (subs, line) = joined_subscriptions(&subs, 0)?;
        if ids.len() != events.len() {
            return Err(CoreError::Internal(format!(
                "{} event ids drawn for {} events",
                ids.len(),
                events.len()
            )));
        }
        let mut out = Vec::with_capacity(events.len());
        for (row, e) in ids.iter().zip(events) {
            self.next_event = Some(NextEvent {
                key: (tenant, chat),
                id: row.get(0)?,
                subscriptions: subs.clone(),
                line: line.clone(),
            });
            out.push(self.append_event(e)?);
        }
        Ok(out)
    }
}

impl<C: Conn> AdminTx for SqlTx<C> {
    fn insert_tenant(&mut self, slug: &str, name: &str) -> TxResult<Tenant> {
        if self.tenant_by_slug(slug)?.is_some() {
            return Err(CoreError::Conflict(format!("tenant {slug}")));
        }
        let id = self.insert_id(
            "INSERT INTO tenants (slug, name, created_at) VALUES (?1, ?2, ?3)",
            p![slug, name, self.now],
        )?;
        Ok(Tenant {
            id: TenantId(id),
            slug: slug.into(),
            name: name.into(),
        })
    }

    fn tenant(&mut self, id: TenantId) -> TxResult<Option<Tenant>> {
        self.one("SELECT id, slug, name FROM tenants WHERE id = ?1", p![id.0], tenant_row)
    }

    fn tenant_by_slug(&mut self, slug: &str) -> TxResult<Option<Tenant>> {
        self.one(
            "SELECT id, slug, name FROM tenants WHERE slug = ?1",
            p![slug],
            tenant_row,
        )
    }

    fn tenants(&mut self) -> TxResult<Vec<Tenant>> {
        self.many("SELECT id, slug, name FROM tenants ORDER BY id", p![], tenant_row)
    }

    fn insert_app(&mut self, tenant: TenantId, id: Option<AppId>, client_id: &str, name: &str) -> TxResult<App> {
        if self.app_by_client_id(tenant, client_id)?.is_some() {
            return Err(CoreError::Conflict(format!("app {client_id}")));
        }
        let id = match id {
            Some(id) => id,
            None => AppId(self.next_id("apps", tenant)?),
        };
        if self.app(tenant, id)?.is_some() {
            return Err(CoreError::Conflict(format!("app {id}")));
        }
        self.exec(
            "INSERT INTO apps (tenant_id, id, client_id, name) VALUES (?1, ?2, ?3, ?4)",
            p![tenant.0, id.0, client_id, name],
        )?;
        Ok(App {
            tenant_id: tenant,
            id,
            client_id: client_id.into(),
            name: name.into(),
        })
    }

    fn app(&mut self, tenant: TenantId, id: AppId) -> TxResult<Option<App>> {
        self.one(
            "SELECT tenant_id, id, client_id, name FROM apps WHERE tenant_id = ?1 AND id = ?2",
            p![tenant.0, id.0],
            app_row,
        )
    }

    fn app_by_client_id(&mut self, tenant: TenantId, client_id: &str) -> TxResult<Option<App>> {
        self.one(
            "SELECT tenant_id, id, client_id, name FROM apps WHERE tenant_id = ?1 AND client_id = ?2",
            p![tenant.0, client_id],
            app_row,
        )
    }

    fn apps(&mut self, tenant: TenantId) -> TxResult<Vec<App>> {
        self.many(
            "SELECT tenant_id, id, client_id, name FROM apps WHERE tenant_id = ?1 ORDER BY id",
            p![tenant.0],
            app_row,
        )
    }

    fn users(&mut self, tenant: TenantId) -> TxResult<Vec<User>> {
        self.many(
            sql!("SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 ORDER BY id"),
            p![tenant.0],
            user_row,
        )
    }

    fn set_user_active(&mut self, tenant: TenantId, id: UserId, active: bool) -> TxResult<()> {
        self.exec(
            "UPDATE users SET active = ?3 WHERE tenant_id = ?1 AND id = ?2",
            p![tenant.0, id.0, active],
        )?;
        Ok(())
    }

    fn insert_line(&mut self, tenant: TenantId, number: &str, user: UserId) -> TxResult<Line> {
        if self.line_by_number(tenant, number)?.is_some() {
            return Err(CoreError::Conflict(format!("line {number}")));
        }
        let id = LineId(self.next_id("lines", tenant)?);
        self.exec(
            "INSERT INTO lines (tenant_id, id, phone_number, user_id, active) VALUES (?1, ?2, ?3, ?4, TRUE)",
            p![tenant.0, id.0, number, user.0],
        )?;
        Ok(Line {
            tenant_id: tenant,
            id,
            phone_number: number.into(),
            user_id: user,
            active: true,
        })
    }

    fn set_line_active(&mut self, tenant: TenantId, id: LineId, active: bool) -> TxResult<()> {
        self.exec(
            "UPDATE lines SET active = ?3 WHERE tenant_id = ?1 AND id = ?2",
            p![tenant.0, id.0, active],
        )?;
        Ok(())
    }

    fn lines(&mut self, tenant: TenantId) -> TxResult<Vec<Line>> {
        self.many(
            sql!("SELECT {LINE_COLS} FROM lines WHERE tenant_id = ?1 ORDER BY id"),
            p![tenant.0],
            line_row,
        )
    }

    fn chats(&mut self, tenant: TenantId) -> TxResult<Vec<Chat>> {
        self.many(
            sql!("SELECT {CHAT_COLS} FROM chats WHERE tenant_id = ?1 ORDER BY id"),
            p![tenant.0],
            chat_row,
        )
    }

    fn chats_page(&mut self, tenant: TenantId, filter: ChatFilter, offset: usize, limit: usize) -> TxResult<Vec<Chat>> {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let (tenant, network, line) = (tenant.0, filter.network.as_str(), filter.line.map(|l| l.0));
        let (limit, offset) = (count(limit), count(offset));
        let sql = chats_page_sql(filter.member);
        let params = match filter.member {
            MemberFilter::User(u) => p![tenant, network, line, limit, offset, u.0],
            MemberFilter::Any | MemberFilter::WithoutHandle => p![tenant, network, line, limit, offset],
        };
        self.many(sql, params, chat_row)
    }

    fn chats_of_user(&mut self, tenant: TenantId, user: UserId) -> TxResult<Vec<Chat>> {
        let sql = match self.c.dialect() {
            Dialect::Postgres => {
                sql!("SELECT {CHAT_COLS} FROM chats WHERE tenant_id = ?1 AND id IN ({CHATS_OF_USER_PG}) ORDER BY id")
            }
            Dialect::Sqlite => {
                sql!(
                    "SELECT {CHAT_COLS} FROM chats WHERE tenant_id = ?1 AND id IN ({CHATS_OF_USER_SQLITE}) ORDER BY id"
                )
            }
        };
        self.many(sql, p![tenant.0, user.0], chat_row)
    }

    fn membership_history(&mut self, tenant: TenantId, chat: ChatId) -> TxResult<Vec<Membership>> {
        self.many(
            sql!("SELECT {MEMBER_COLS} FROM memberships WHERE tenant_id = ?1 AND chat_id = ?2 ORDER BY seq"),
            p![tenant.0, chat.0],
            member_row,
        )
    }

    fn messages(
        &mut self,
        tenant: TenantId,
        chat: ChatId,
        before: Option<MessageId>,
        limit: usize,
    ) -> TxResult<Vec<Message>> {
        self.many(
            "SELECT chat_id, id, uuid, author_id, text, created_at FROM messages WHERE tenant_id = ?1 AND chat_id = ?2 AND (CAST(?3 AS BIGINT) IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4",
            p![tenant.0, chat.0, before.map(|b| b.0), limit as i64],
            message_row,
        )
    }

    fn message_by_uuid(&mut self, tenant: TenantId, uuid: Uuid) -> TxResult<Option<Message>> {
        self.one(
            "SELECT chat_id, id, uuid, author_id, text, created_at FROM messages WHERE tenant_id = ?1 AND uuid = ?2",
            p![tenant.0, uuid.to_string()],
            message_row,
        )
    }

    fn crm_links(&mut self, tenant: TenantId) -> TxResult<Vec<(CrmEntity, ChatId)>> {
        self.many(
            "SELECT entity_type, entity_id, chat_id FROM crm_links WHERE tenant_id = ?1 ORDER BY seq",
            p![tenant.0],
            |r| {
                let t: String = r.get(0)?;
                let entity_type = CrmEntityType::parse(&t).ok_or_else(|| bad("crm entity type", &t))?;
                Ok((
                    CrmEntity {
                        entity_type,
                        entity_id: r.get(1)?,
                    },
                    ChatId(r.get(2)?),
                ))
            },
        )
    }

    fn events(&mut self, tenant: TenantId, chat: Option<ChatId>) -> TxResult<Vec<Event>> {
        match chat {
            Some(c) => self.many(
                sql!("SELECT {EVENT_COLS} FROM events WHERE tenant_id = ?1 AND chat_id = ?2 ORDER BY id"),
                p![tenant.0, c.0],
                event_row,
            ),
            None => self.many(
                sql!("SELECT {EVENT_COLS} FROM events WHERE tenant_id = ?1 ORDER BY id"),
                p![tenant.0],
                event_row,
            ),
        }
    }

    fn insert_credential(&mut self, c: NewCredential) -> TxResult<Credential> {
        if self.credential_by_hash(c.kind, &c.secret_hash)?.is_some() {
            return Err(CoreError::Conflict(format!(
                "{} credential with this secret",
                c.kind.as_str()
            )));
        }
        let scopes = c.scopes.join(" ");
        let id = self.insert_id(
            "INSERT INTO credentials (tenant_id, kind, secret_hash, secret, user_id, app_id, scopes, expires_at, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            p![c.tenant_id.0, c.kind.as_str(), c.secret_hash, c.secret, c.user_id.map(|u| u.0), c.app_id.map(|a| a.0), scopes, c.expires_at, c.label, self.now],
        )?;
        Ok(Credential {
            id,
            tenant_id: c.tenant_id,
            kind: c.kind,
            user_id: c.user_id,
            app_id: c.app_id,
            scopes: c.scopes,
            expires_at: c.expires_at,
            label: c.label,
            secret: c.secret,
            created_at: self.now,
        })
    }

    fn credential_by_hash(&mut self, kind: CredentialKind, secret_hash: &str) -> TxResult<Option<Credential>> {
        self.one(
            sql!("SELECT {CRED_COLS} FROM credentials WHERE kind = ?1 AND secret_hash = ?2"),
            p![kind.as_str(), secret_hash],
            cred_row,
        )
    }

    /// One statement: on PostgreSQL a request's authentication is then
    /// one round trip with `BEGIN` and one for its end, not three.
    fn credential_and_tenant_by_hash(
        &mut self,
        kind: CredentialKind,
        secret_hash: &str,
    ) -> TxResult<Option<(Credential, Tenant)>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {}, t.id, t.slug, t.name FROM credentials c JOIN tenants t ON t.id = c.tenant_id \
                 WHERE c.kind = ?1 AND c.secret_hash = ?2",
                qualified(CRED_COLS, "c")
            )
        });
        const N: usize = count_cols(CRED_COLS);
        self.one(&SQL, p![kind.as_str(), secret_hash], |r| {
            Ok((cred_row(r)?, tenant_row(&part(r, N, usize::MAX))?))
        })
    }

    fn credentials(&mut self, tenant: TenantId) -> TxResult<Vec<Credential>> {
        self.many(
            sql!("SELECT {CRED_COLS} FROM credentials WHERE tenant_id = ?1 ORDER BY id"),
            p![tenant.0],
            cred_row,
        )
    }

    fn idempotent_response(&mut self, tenant: TenantId, scope: &str, key: &str) -> TxResult<Option<(String, String)>> {
        self.one(
            "SELECT body_hash, response FROM idempotency_keys WHERE tenant_id = ?1 AND scope = ?2 AND key = ?3",
            p![tenant.0, scope, key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn save_idempotent_response(
        &mut self,
        tenant: TenantId,
        scope: &str,
        key: &str,
        body_hash: &str,
        response: &str,
    ) -> TxResult<()> {
        self.exec(
            "INSERT INTO idempotency_keys (tenant_id, scope, key, body_hash, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            p![tenant.0, scope, key, body_hash, response, self.now],
        )?;
        Ok(())
    }

    fn bot_registration(&mut self, tenant: TenantId, bot: UserId) -> TxResult<Option<(String, String)>> {
        self.one(
            "SELECT bot_code, COALESCE(bot_meta, '{}') FROM users WHERE tenant_id = ?1 AND id = ?2 AND bot_code IS NOT NULL",
            p![tenant.0, bot.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn set_bot_registration(
        &mut self,
        tenant: TenantId,
        bot: UserId,
        code: Option<&str>,
        meta: Option<&str>,
    ) -> TxResult<()> {
        self.exec(
            "UPDATE users SET bot_code = ?3, bot_meta = ?4 WHERE tenant_id = ?1 AND id = ?2",
            p![tenant.0, bot.0, code, meta],
        )?;
        Ok(())
    }

    fn bot_by_code(&mut self, tenant: TenantId, code: &str) -> TxResult<Option<UserId>> {
        self.one(
            "SELECT id FROM users WHERE tenant_id = ?1 AND bot_code = ?2",
            p![tenant.0, code],
            |r| Ok(UserId(r.get(0)?)),
        )
    }

    fn bind_chat(&mut self, tenant: TenantId, entity_type: &str, entity_id: &str, chat: ChatId) -> TxResult<()> {
        self.exec(
            "INSERT INTO chat_bindings (tenant_id, entity_type, entity_id, chat_id) VALUES (?1, ?2, ?3, ?4)",
            p![tenant.0, entity_type, entity_id, chat.0],
        )?;
        Ok(())
    }

    fn chat_by_binding(&mut self, tenant: TenantId, entity_type: &str, entity_id: &str) -> TxResult<Option<ChatId>> {
        self.one(
            "SELECT chat_id FROM chat_bindings WHERE tenant_id = ?1 AND entity_type = ?2 AND entity_id = ?3 ORDER BY seq DESC LIMIT 1",
            p![tenant.0, entity_type, entity_id],
            |r| Ok(ChatId(r.get(0)?)),
        )
    }

    fn insert_subscription(&mut self, sub: &Subscription) -> TxResult<()> {
        self.next_event = None;
        let (events, kinds) = sub_columns(sub)?;
        self.exec(
            sql!("INSERT INTO subscriptions ({SUB_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            p![
                sub.id,
                sub.tenant_id.0,
                sub.face,
                sub.target_url,
                events,
                kinds,
                sub.lines.join(" "),
                sub.subject_id.map(|u| u.0),
                sub.secret,
                sub.extra,
                sub.active,
                sub.created_at,
                sub.updated_at
            ],
        )?;
        Ok(())
    }

    fn update_subscription(&mut self, sub: &Subscription) -> TxResult<()> {
        self.next_event = None;
        let (events, kinds) = sub_columns(sub)?;
        self.exec(
            "UPDATE subscriptions SET target_url = ?2, events = ?3, kinds = ?4, lines = ?5, extra = ?6, active = ?7, updated_at = ?8 WHERE id = ?1",
            p![sub.id, sub.target_url, events, kinds, sub.lines.join(" "), sub.extra, sub.active, self.now],
        )?;
        Ok(())
    }

    fn delete_subscription(&mut self, tenant: TenantId, id: &str) -> TxResult<bool> {
        self.next_event = None;
        Ok(self.exec(
            "DELETE FROM subscriptions WHERE tenant_id = ?1 AND id = ?2",
            p![tenant.0, id],
        )? > 0)
    }

    fn subscription(&mut self, id: &str) -> TxResult<Option<Subscription>> {
        self.one(
            sql!("SELECT {SUB_COLS} FROM subscriptions WHERE id = ?1"),
            p![id],
            sub_row,
        )
    }

    fn subscriptions(&mut self, tenant: TenantId, face: &str) -> TxResult<Vec<Subscription>> {
        self.many(
            sql!("SELECT {SUB_COLS} FROM subscriptions WHERE tenant_id = ?1 AND face = ?2 ORDER BY created_at, id"),
            p![tenant.0, face],
            sub_row,
        )
    }

    fn event(&mut self, id: EventId) -> TxResult<Option<Event>> {
        self.one(
            sql!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"),
            p![id.0],
            event_row,
        )
    }

    fn claim_deliveries(&mut self, now_ms: i64, lease_ms: i64, limit: usize) -> TxResult<Vec<Delivery>> {
        // SKIP LOCKED lets several nodes' workers claim side by side on
        // PostgreSQL; SQLite's single writer needs no row locks.
        let mut rows = self.many(
            &format!(
                "UPDATE outbox SET claimed_until = ?2 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' \
                 AND next_attempt_at <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1) \
                 ORDER BY next_attempt_at, id LIMIT ?3{}) RETURNING {DELIVERY_COLS}",
                self.skip_locked()
            ),
            p![now_ms, now_ms + lease_ms, limit as i64],
            delivery_row,
        )?;
        rows.sort_by_key(|d| (d.next_attempt_at, d.id));
        Ok(rows)
    }

    fn record_attempt(&mut self, a: &Attempt, status: DeliveryStatus, next_attempt_at: i64) -> TxResult<()> {
        self.exec(
            "INSERT INTO delivery_attempts (outbox_id, attempt, at, status_code, latency_ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            p![a.delivery_id, a.attempt, a.at, a.status_code, a.latency_ms, a.error],
        )?;
        self.exec(
            "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, claimed_until = NULL, last_status = ?5, last_error = ?6, updated_at = ?7 WHERE id = ?1",
            p![a.delivery_id, status.as_str(), a.attempt, next_attempt_at, a.status_code, a.error, self.now],
        )?;
        Ok(())
    }

    fn deliveries(
        &mut self,
        tenant: Option<TenantId>,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> TxResult<Vec<Delivery>> {
        self.many(
            sql!(
                "SELECT {DELIVERY_COLS} FROM outbox WHERE (CAST(?1 AS BIGINT) IS NULL OR tenant_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3"
            ),
            p![tenant.map(|t| t.0), status.map(|s| s.as_str()), limit as i64],
            delivery_row,
        )
    }

    fn delivery(&mut self, id: i64) -> TxResult<Option<Delivery>> {
        self.one(
            sql!("SELECT {DELIVERY_COLS} FROM outbox WHERE id = ?1"),
            p![id],
            delivery_row,
        )
    }

    fn attempts(&mut self, delivery: i64) -> TxResult<Vec<Attempt>> {
        self.many(
            "SELECT outbox_id, attempt, at, status_code, latency_ms, error FROM delivery_attempts WHERE outbox_id = ?1 ORDER BY id",
            p![delivery],
            |r| {
                Ok(Attempt {
                    delivery_id: r.get(0)?,
                    attempt: r.get(1)?,
                    at: r.get(2)?,
                    status_code: r.get(3)?,
                    latency_ms: r.get(4)?,
                    error: r.get(5)?,
                })
            },
        )
    }

    fn replay_delivery(&mut self, id: i64, now_ms: i64) -> TxResult<bool> {
        let n = self.exec(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?2, claimed_until = NULL, updated_at = ?3 WHERE id = ?1",
            p![id, now_ms, self.now],
        )?;
        self.wakes_worker |= n > 0;
        Ok(n > 0)
    }

    fn queue_depths(&mut self) -> TxResult<(i64, i64)> {
        let d = self
            .one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'", p![], |r| {
                r.get(0)
            })?
            .unwrap_or(0);
        let o = self
            .one("SELECT COUNT(*) FROM operations WHERE status = 'queued'", p![], |r| {
                r.get(0)
            })?
            .unwrap_or(0);
        Ok((d, o))
    }

    fn insert_operation(&mut self, op: &Operation) -> TxResult<()> {
        self.wakes_worker = true;
        self.exec(
            sql!("INSERT INTO operations ({OP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            p![
                op.trace_id,
                op.tenant_id.0,
                op.kind.as_str(),
                op.chat_id.0,
                op.handle,
                op.status.as_str(),
                op.error,
                op.created_at,
                op.finished_at
            ],
        )?;
        Ok(())
    }

    fn operation(&mut self, tenant: TenantId, trace_id: &str) -> TxResult<Option<Operation>> {
        self.one(
            sql!("SELECT {OP_COLS} FROM operations WHERE tenant_id = ?1 AND trace_id = ?2"),
            p![tenant.0, trace_id],
            op_row,
        )
    }

    fn claim_operations(&mut self, now_ms: i64, lease_ms: i64, limit: usize) -> TxResult<Vec<Operation>> {
        let (order, head_only) = match self.c.dialect() {
            // One worker: it runs each chat's claimed operations in order.
            Dialect::Sqlite => ("rowid", ""),
            // Workers on several nodes: only the oldest queued operation of
            // a chat may be claimed, so that a later one (an add queued on
            // node B) never runs while an earlier one (a leave queued on
            // node A and claimed by A's worker) is still under way.
            Dialect::Postgres => (
                "seq",
                " AND NOT EXISTS (SELECT 1 FROM operations e WHERE e.tenant_id = o.tenant_id \
                 AND e.chat_id = o.chat_id AND e.status = 'queued' AND e.seq < o.seq)",
            ),
        };
        let mut rows = self.many(
            &format!(
                "UPDATE operations SET claimed_until = ?2 WHERE trace_id IN (SELECT o.trace_id FROM operations o \
                 WHERE o.status = 'queued' AND (o.claimed_until IS NULL OR o.claimed_until <= ?1){head_only} \
                 ORDER BY o.created_at, o.{order} LIMIT ?3{}) RETURNING {OP_COLS}, {order}",
                self.skip_locked()
            ),
            p![now_ms, now_ms + lease_ms, limit as i64],
            |r| Ok((op_row(r)?, r.get::<i64>(9)?)),
        )?;
        rows.sort_by_key(|(op, seq)| (op.created_at, *seq));
        Ok(rows.into_iter().map(|(op, _)| op).collect())
    }

    fn finish_operation(
        &mut self,
        trace_id: &str,
        status: OperationStatus,
        error: Option<&str>,
        at: Timestamp,
    ) -> TxResult<()> {
        self.exec(
            "UPDATE operations SET status = ?2, error = ?3, finished_at = ?4, claimed_until = NULL WHERE trace_id = ?1",
            p![trace_id, status.as_str(), error, at],
        )?;
        Ok(())
    }

    fn setting(&mut self, key: &str) -> TxResult<Option<String>> {
        self.one("SELECT value FROM settings WHERE key = ?1", p![key], |r| r.get(0))
    }

    fn set_setting(&mut self, key: &str, value: &str) -> TxResult<()> {
        self.exec(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            p![key, value],
        )?;
        Ok(())
    }

    fn lock_key(&mut self, key: &str) -> TxResult<()> {
        if self.c.row_locks() {
            self.one("SELECT pg_advisory_xact_lock(hashtext(?1))::text", p![key], |_| Ok(()))?;
        }
        Ok(())
    }

    fn bucket(&mut self, key: &str) -> TxResult<Option<(f64, i64)>> {
        self.one(
            "SELECT level, updated_ms FROM rate_buckets WHERE key = ?1",
            p![key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn set_bucket(&mut self, key: &str, level: f64, updated_ms: i64) -> TxResult<()> {
        self.exec(
            "INSERT INTO rate_buckets (key, level, updated_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET level = excluded.level, updated_ms = excluded.updated_ms",
            p![key, level, updated_ms],
        )?;
        Ok(())
    }

    fn window_hits(&mut self, key: &str, since_ms: i64) -> TxResult<Vec<i64>> {
        self.exec(
            "DELETE FROM rate_hits WHERE key = ?1 AND at_ms <= ?2",
            p![key, since_ms],
        )?;
        self.many(
            "SELECT at_ms FROM rate_hits WHERE key = ?1 ORDER BY at_ms",
            p![key],
            |r| r.get(0),
        )
    }

    fn add_window_hit(&mut self, key: &str, at_ms: i64) -> TxResult<()> {
        self.exec("INSERT INTO rate_hits (key, at_ms) VALUES (?1, ?2)", p![key, at_ms])?;
        Ok(())
    }

    fn claim_nonce(&mut self, key: &str, now: Timestamp, expires_at: Timestamp) -> TxResult<bool> {
        // Atomic on both databases: a concurrent insert of the same key
        // waits for this one, then finds it unexpired.
        let n = self.exec(
            "INSERT INTO replay_nonces (key, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE replay_nonces.expires_at <= ?3",
            p![key, expires_at, now],
        )?;
        if n > 0 && expires_at % 64 == 0 {
            // Now and then, forget what has expired.
            // A minute late: another node's request whose clock reads a
            // little earlier may still count these as live (its upsert
            // above decides by its own clock).
            self.exec(SWEEP_NONCES, p![now - 60])?;
        }
        Ok(n > 0)
    }
}

impl<C: Conn> StoreTx for SqlTx<C> {
    fn as_tx(&mut self) -> &mut dyn Tx {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A PostgreSQL-shaped connection that records every statement; the
    /// joint `lock_chat_for` statement finds chat 7 with member and user 3,
    /// every other query finds nothing.
    /// Records the SQL it is asked, and answers as [`answer`] does. With a
    /// line number in `.1`, chat 7 is on line 5 (+15550001) and its tenant
    /// has one Linq subscription listening to that number.
    struct Recorder(Rc<RefCell<Vec<String>>>, Option<&'static str>);

    /// What the database would answer: chat 7 locked, with 4 active members;
    /// user 3's membership and row with the leave's event (id 42; no line
    /// and no subscription unless `listens_to` says); an event inserted the
    /// ordinary way (id 43); credential 9 of tenant 1 ("acme") by any hash.
    fn answer(sql: &str, listens_to: Option<&str>) -> Vec<SqlRow> {
        let t = |s: &str| Val::Text(s.into());
        if sql.starts_with("WITH ev AS") {
            let row = std::iter::once(Val::Int(43)).chain(std::iter::repeat_n(Val::Null, 14));
            return vec![SqlRow(row.collect())];
        }
        if sql.contains("FROM credentials") {
            let cred = [
                Val::Int(9),
                Val::Int(1),
                t("vibecode_personal"),
                Val::Int(3),
                Val::Null,
                t("im"),
                Val::Null,
                t("key"),
                Val::Null,
                Val::Int(0),
            ];
            let tenant = [Val::Int(1), t("acme"), t("Acme")];
            return vec![SqlRow(cred.into_iter().chain(tenant).collect())];
        }
        if sql.contains("FOR UPDATE") {
            let on_line = |on: Val, off: Val| if listens_to.is_some() { on } else { off };
            // lock_chat_for: the line's number
            let line = sql.contains("phone_number").then(|| on_line(t("+15550001"), Val::Null));
            return vec![SqlRow(
                vec![
                    Val::Int(1),
                    Val::Int(7),
                    t("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                    t("group"),
                    t("internal"),
                    t("team"),
                    Val::Int(3),
                    on_line(Val::Int(5), Val::Null),
                    Val::Null,
                    Val::Int(100),
                    Val::Int(4), // active_count
                ]
                .into_iter()
                .chain(line)
                .collect(),
            )];
        }
        if !sql.contains("LEFT JOIN LATERAL") {
            return Vec::new();
        }
        let member = [
            Val::Int(7),
            Val::Int(3),
            t("member"),
            Val::Int(100),
            Val::Null,
            Val::Bool(false),
        ];
        let user = [
            Val::Int(1),
            Val::Int(3),
            t("person"),
            t("Ann"),
            Val::Null,
            Val::Bool(true),
            Val::Null,
        ];
        let subscription: Vec<Val> = match listens_to {
            None => std::iter::repeat_n(Val::Null, count_cols(SUB_COLS)).collect(),
            Some(number) => vec![
                t("sub"),
                Val::Int(1),
                t("linq"),
                t("http://127.0.0.1:9/"),
                t("[]"),
                t(""),
                t(number),
                Val::Null,
                t("secret"),
                t("{}"),
                Val::Bool(true),
                Val::Int(0),
                Val::Int(0),
            ],
        };
        let event = std::iter::once(Val::Int(42)).chain(subscription);
        vec![SqlRow(member.into_iter().chain(user).chain(event).collect())]
    }

    impl Conn for Recorder {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }
        fn row_locks(&self) -> bool {
            true
        }
        fn query(&mut self, sql: &str, _: &[Val]) -> TxResult<Vec<SqlRow>> {
            self.0.borrow_mut().push(sql.into());
            Ok(answer(sql, self.1))
        }
        /// Recorded as one entry: one flight.
        fn query_two(&mut self, first: (&str, &[Val]), second: (&str, &[Val])) -> TxResult<(Vec<SqlRow>, Vec<SqlRow>)> {
            self.0.borrow_mut().push(format!("{} ; {}", first.0, second.0));
            Ok((answer(first.0, self.1), answer(second.0, self.1)))
        }
        fn exec(&mut self, sql: &str, _: &[Val]) -> TxResult<u64> {
            self.0.borrow_mut().push(sql.into());
            Ok(1)
        }
    }

    /// The chat's line number comes with its lock: a leave's event is
    /// queued for a subscription of that line, and only of that line,
    /// with no statement besides the lock, the event and the outbox row.
    #[test]
    fn lock_chat_for_brings_the_line_that_subscriptions_listen_to() {
        for (listens_to, queued) in [("+15550001", 1), ("+15550002", 0)] {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let mut tx = SqlTx::new(Recorder(seen.clone(), Some(listens_to)), 0);
            let (t, c, u) = (TenantId(1), ChatId(7), UserId(3));
            let chat = tx.lock_chat_for(t, c, &[u]).unwrap().expect("the chat");
            assert_eq!(chat.line_id, Some(LineId(5)));
            tx.append_event(left(t, c, u)).unwrap();
            let sql = seen.borrow().clone();
            let outbox = sql.iter().filter(|s| s.starts_with("INSERT INTO outbox")).count();
            assert_eq!(outbox, queued, "listening to {listens_to}: {sql:?}");
            assert_eq!(sql.len(), 2 + queued, "{sql:?}");
        }
    }

    /// An authentication's credential and tenant come in one statement.
    #[test]
    fn a_credential_and_its_tenant_are_one_statement() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut tx = SqlTx::new(Recorder(seen.clone(), None), 0);
        let (cred, tenant) = tx
            .credential_and_tenant_by_hash(CredentialKind::VibecodePersonal, "h")
            .unwrap()
            .expect("found");
        assert_eq!(
            (cred.id, cred.user_id, tenant.slug.as_str()),
            (9, Some(UserId(3)), "acme")
        );
        assert_eq!(seen.borrow().len(), 1, "{:?}", seen.borrow());
    }

    /// On PostgreSQL `lock_chat_for` brings the leaver's membership, user
    /// row and the chat's count in its one flight: the lookups that follow
    /// cost no statement, each is served once, and a write forgets what was
    /// fetched.
    #[test]
    fn lock_chat_for_saves_the_lookups_that_follow_it() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut tx = SqlTx::new(Recorder(seen.clone(), None), 0);
        let (t, c, u) = (TenantId(1), ChatId(7), UserId(3));
        let statements = |seen: &Rc<RefCell<Vec<String>>>| seen.borrow().len();

        let chat = tx.lock_chat_for(t, c, &[u]).unwrap().expect("the chat");
        assert_eq!((chat.id, chat.owner_id), (c, Some(u)));
        assert_eq!(statements(&seen), 1);
        let m = tx.membership(t, c, u).unwrap().expect("the membership");
        assert_eq!((m.user_id, m.role, m.left_at), (u, Role::Member, None));
        assert_eq!(tx.user(t, u).unwrap().map(|u| u.name), Some("Ann".to_string()));
        assert_eq!(tx.active_count(t, c).unwrap(), 4);
        assert_eq!(statements(&seen), 1, "{:?}", seen.borrow());

        // Served once: asking again reads the database, in one statement.
        assert_eq!(tx.membership(t, c, u).unwrap(), None);
        assert_eq!(statements(&seen), 2);

        // A write in between forgets the fetched rows.
        tx.lock_chat_for(t, c, &[u]).unwrap();
        tx.exec("UPDATE chats SET title = 'x'", &[]).unwrap();
        assert_eq!(tx.user(t, u).unwrap(), None);
        assert_eq!(statements(&seen), 5);
    }

    fn left(t: TenantId, c: ChatId, u: UserId) -> NewEvent {
        NewEvent {
            tenant_id: t,
            chat_id: c,
            kind: EventKind::Left,
            actor_id: Some(u),
            subject_id: Some(u),
            message_id: None,
            trace_id: None,
            at: 100,
        }
    }

    /// On PostgreSQL the event of a user's leave asks nothing: its id and
    /// the tenant's subscriptions came with the chat's lock, and its insert
    /// is deferred to COMMIT. It is served once, to that chat's event, and a
    /// subscription written in between forgets it.
    #[test]
    fn lock_chat_for_brings_what_the_leave_event_needs() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut tx = SqlTx::new(Recorder(seen.clone(), None), 0);
        let (t, c, u) = (TenantId(1), ChatId(7), UserId(3));
        tx.lock_chat_for(t, c, &[u]).unwrap();
        let event = tx.append_event(left(t, c, u)).unwrap();
        assert_eq!(event.id, EventId(42));
        let sql = seen.borrow().clone();
        assert_eq!(sql.len(), 2, "{sql:?}");
        assert!(
            sql[1].starts_with("INSERT INTO events") && sql[1].contains(", id)"),
            "{sql:?}"
        );

        // Served once: the next event is inserted the ordinary way.
        assert_eq!(tx.append_event(left(t, c, u)).unwrap().id, EventId(43));
        assert!(
            seen.borrow()[2].contains("LEFT JOIN subscriptions"),
            "{:?}",
            seen.borrow()
        );

        // Another chat's event does not take it.
        tx.lock_chat_for(t, c, &[u]).unwrap();
        tx.append_event(left(t, ChatId(8), u)).unwrap();
        assert!(
            seen.borrow()[4].contains("LEFT JOIN subscriptions"),
            "{:?}",
            seen.borrow()
        );

        // A subscription written after the lock forgets it.
        tx.lock_chat_for(t, c, &[u]).unwrap();
        tx.delete_subscription(t, "sub").unwrap();
        tx.append_event(left(t, c, u)).unwrap();
        assert!(
            seen.borrow()[7].contains("LEFT JOIN subscriptions"),
            "{:?}",
            seen.borrow()
        );
    }
}
