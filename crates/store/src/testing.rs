//! Test support: a fresh, empty store of the kind the test run asks for.
//!
//! `CONFAB_TEST_STORE=sqlite` (the default) gives a SQLite file in a
//! temporary directory; `CONFAB_TEST_STORE=postgres` creates a new database
//! on the server at `CONFAB_TEST_DATABASE_URL` for every store. `scripts/test`
//! runs the whole suite once with each.

use crate::{PgOptions, PgStore, SqliteStore, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const STORE_VAR: &str = "CONFAB_TEST_STORE";
pub const URL_VAR: &str = "CONFAB_TEST_DATABASE_URL";

/// A store for one test, and what keeps it alive.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The PostgreSQL URL of this test's own database (None on SQLite).
    pub url: Option<String>,
    /// The SQLite file's directory (None on PostgreSQL).
    pub dir: Option<tempfile::TempDir>,
}

/// "sqlite" or "postgres", as the run asks.
pub fn backend() -> &'static str {
    match std::env::var(STORE_VAR).as_deref() {
        Ok("postgres") => "postgres",
        Ok("sqlite") | Err(_) => "sqlite",
        Ok(other) => panic!("{STORE_VAR}={other}: expected sqlite or postgres"),
    }
}

/// The admin URL of the test PostgreSQL server. Panics, saying how to get
/// one, when it is not set: PostgreSQL tests never skip.
pub fn admin_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "this test needs PostgreSQL: set {URL_VAR}=postgres://USER@HOST:PORT/postgres?sslmode=disable \
             (a role allowed to CREATE DATABASE). scripts/test installs PostgreSQL (apt-get install -y postgresql) \
             and starts a throwaway cluster with scripts/pg-cluster"
        )
    })
}

/// `url` with its database name replaced.
pub fn with_dbname(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Creates an empty database on the test server; returns its URL.
pub async fn create_database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let admin = admin_url();
    let name = format!(
        "confab_t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap_or("x")
    );
    let (config, tls) = crate::postgres::parse_url(&admin).unwrap_or_else(|e| panic!("{URL_VAR}: {e}"));
    let (client, conn) = config
        .connect(tls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {URL_VAR}: {e}"));
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    drop(client);
    let _ = task.await;
    with_dbname(&admin, &name)
}

/// A PostgreSQL store on an existing database (a second "node").
pub async fn open_pg(url: &str, opts: &PgOptions) -> Arc<PgStore> {
    Arc::new(
        PgStore::open(url, opts)
            .await
            .unwrap_or_else(|e| panic!("open PostgreSQL store: {e}")),
    )
}

/// A fresh store of the kind the run asks for.
pub async fn fresh_store() -> TestDb {
    match backend() {
        "postgres" => {
            let url = create_database().await;
            let opts = PgOptions {
                pool_size: 8,
                ..PgOptions::default()
            };
            TestDb {
                store: open_pg(&url, &opts).await,
                url: Some(url),
                dir: None,
            }
        }
        _ => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SqliteStore::open(dir.path().join("confab.db")).expect("open SQLite store");
            TestDb {
                store: Arc::new(store),
                url: None,
                dir: Some(dir),
            }
        }
    }
}

/// An active person `u{id}` of `tenant`, with that id.
pub fn person(tenant: confab_core::TenantId, id: i64) -> confab_core::tx::NewUser {
    confab_core::tx::NewUser {
        tenant_id: tenant,
        id: Some(confab_core::UserId(id)),
        kind: confab_core::UserKind::Person,
        name: format!("u{id}"),
        handle: None,
        active: true,
        app_id: None,
    }
}

/// A new group of `network`, made by `creator` with `members`, its id and
/// uuid chosen by the store; an iMessage group gets a chat key.
pub fn group(
    tenant: confab_core::TenantId,
    network: confab_core::Network,
    creator: confab_core::commands::Creator,
    members: Vec<confab_core::commands::MemberRef>,
) -> confab_core::commands::CreateChat {
    confab_core::commands::CreateChat {
        tenant,
        id: None,
        uuid: None,
        kind: confab_core::ChatKind::Group,
        network,
        title: "g".into(),
        creator: Some(creator),
        members,
        chat_key: (network == confab_core::Network::Imessage).then(|| "k".into()),
        crm: None,
        trace_id: None,
    }
}

/// Memberships as a database made before they were keyed by chat holds them
/// (SQLite schema 7, PostgreSQL schema 1): `seq` is global, so the two
/// chats' rows interleave; in chat 1 user 2 was removed and came back, user
/// 3 left. How is told by the events, the only record of it before SQLite
/// schema 10 and PostgreSQL schema 7: in chat 2 user 4's ending has no
/// event (counted as removed), and users 5 and 6 each have a `left` and a
/// `removed` event at the time they went, the latest of which counts.
pub const MEMBERSHIPS_BEFORE_THE_MOVE: &str = "
    INSERT INTO tenants (id, slug, name, created_at) VALUES (1, 't', 'T', 0);
    INSERT INTO chats (tenant_id, id, uuid, kind, network, title, owner_id, created_at, active_count)
        VALUES (1, 1, '00000000-0000-0000-0000-000000000001', 'group', 'internal', 'one', 1, 0, 2),
               (1, 2, '00000000-0000-0000-0000-000000000002', 'group', 'internal', 'two', 1, 0, 1);
    INSERT INTO memberships (seq, tenant_id, chat_id, user_id, role, joined_at, left_at) VALUES
        (1, 1, 1, 1, 'owner', 10, NULL),
        (2, 1, 2, 1, 'owner', 11, NULL),
        (3, 1, 1, 2, 'member', 12, 13),
        (4, 1, 1, 3, 'member', 14, 15),
        (5, 1, 1, 2, 'member', 16, NULL),
        (6, 1, 2, 4, 'member', 20, 21),
        (7, 1, 2, 5, 'member', 22, 23),
        (8, 1, 2, 6, 'member', 24, 25);
    INSERT INTO events (uuid, tenant_id, chat_id, kind, actor_id, subject_id, at) VALUES
        ('e1', 1, 1, 'removed', 1, 2, 13),
        ('e2', 1, 1, 'message_sent', 3, NULL, 15),
        ('e3', 1, 1, 'left', 3, 3, 15),
        ('e4', 1, 2, 'removed', 1, 5, 23),
        ('e5', 1, 2, 'left', 5, 5, 23),
        ('e6', 1, 2, 'left', 6, 6, 25),
        ('e7', 1, 2, 'removed', 1, 6, 25),
        ('e8', 1, 1, 'left', 4, 4, 21);";

/// After the migration that keys memberships by (tenant, chat, user,
/// ended), a store opened on [`MEMBERSHIPS_BEFORE_THE_MOVE`] shows the same
/// history in the same order, and memberships opened afterwards come after
/// the copied ones; the key still refuses a second active membership.
pub async fn assert_memberships_survived_the_move(store: Arc<dyn Store>) {
    use crate::StoreExt;
    use confab_core::{ChatId, CoreError, Membership, Role, TenantId, UserId};
    let (t, one, two) = (TenantId(1), ChatId(1), ChatId(2));
    let rows = |v: Vec<Membership>| -> Vec<(i64, Option<i64>)> { v.iter().map(|m| (m.user_id.0, m.left_at)).collect() };
    let history = store.read(move |tx| tx.membership_history(t, one)).await.map(rows);
    assert_eq!(history, Ok(vec![(1, None), (2, Some(13)), (3, Some(15)), (2, None)]));
    // How each ended, from the events (SQLite migration 10, PostgreSQL 7).
    let removed = store
        .read(move |tx| tx.membership_history(t, one))
        .await
        .map(|v| v.iter().map(|m| m.removed).collect::<Vec<_>>());
    assert_eq!(removed, Ok(vec![false, true, false, false]));
    let removed = store
        .read(move |tx| tx.membership_history(t, two))
        .await
        .map(|v| v.iter().map(|m| (m.user_id.0, m.removed)).collect::<Vec<_>>());
    assert_eq!(removed, Ok(vec![(1, false), (4, true), (5, false), (6, true)]));
    let active = store.read(move |tx| tx.active_members(t, one)).await.map(rows);
    assert_eq!(active, Ok(vec![(1, None), (2, None)]));
    let latest = store.read(move |tx| tx.membership(t, one, UserId(3))).await;
    assert_eq!(latest.map(|m| m.map(|m| m.left_at)), Ok(Some(Some(15))));
    assert_eq!(store.read(move |tx| tx.active_count(t, one)).await, Ok(2));
    // Found by person from the rows copied by the migrations (SQLite 9).
    assert_eq!(
        store.read(move |tx| tx.chat_ids_of_user(t, UserId(1))).await,
        Ok(vec![one, two])
    );
    assert_eq!(
        store.read(move |tx| tx.chat_ids_of_user(t, UserId(2))).await,
        Ok(vec![one])
    );
    // Former members too, in a chat list filtered by member, from the rows
    // copied by the migrations (SQLite 9, PostgreSQL 6): user 3 has left.
    let chats_with = |user: i64| {
        let filter = confab_core::tx::ChatFilter {
            network: confab_core::Network::Internal,
            line: None,
            member: confab_core::tx::MemberFilter::User(UserId(user)),
        };
        let store = store.clone();
        async move {
            let page = store.read(move |tx| tx.chats_page(t, filter, 0, 10)).await;
            page.map(|chats| chats.iter().map(|c| c.id).collect::<Vec<_>>())
        }
    };
    assert_eq!(chats_with(3).await, Ok(vec![one]));
    assert_eq!(chats_with(1).await, Ok(vec![two, one]));

    let changed = store
        .write(move |tx| {
            tx.close_membership(t, one, UserId(2), 20, false)?;
            tx.open_membership(t, one, UserId(3), Role::Member, 21)?;
            tx.open_membership(t, one, UserId(4), Role::Member, 22)
        })
        .await;
    assert_eq!(changed, Ok(()));
    let history = store.read(move |tx| tx.membership_history(t, one)).await.map(rows);
    let expected = vec![
        (1, None),
        (2, Some(13)),
        (3, Some(15)),
        (2, Some(20)),
        (3, None),
        (4, None),
    ];
    assert_eq!(history, Ok(expected));
    assert_eq!(store.read(move |tx| tx.active_count(t, one)).await, Ok(3));
    assert_eq!(
        store.read(move |tx| tx.membership_history(t, two)).await.map(rows),
        Ok(vec![(1, None), (4, Some(21)), (5, Some(23)), (6, Some(25))])
    );
    assert_eq!(
        store.read(move |tx| tx.chat_ids_of_user(t, UserId(3))).await,
        Ok(vec![one])
    );
    // A first join since the migrations, and a leave.
    assert_eq!(
        store.read(move |tx| tx.chat_ids_of_user(t, UserId(4))).await,
        Ok(vec![one])
    );
    assert_eq!(chats_with(4).await, Ok(vec![two, one]));
    assert_eq!(chats_with(2).await, Ok(vec![one]));
    assert_eq!(
        store.read(move |tx| tx.chat_ids_of_user(t, UserId(2))).await,
        Ok(vec![])
    );
    let twice = store
        .write(move |tx| tx.open_membership(t, one, UserId(4), Role::Member, 23))
        .await;
    assert!(matches!(twice, Err(CoreError::Conflict(_))), "{twice:?}");
    assert_eq!(store.read(move |tx| tx.active_count(t, one)).await, Ok(3));
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_dbname("postgres://u@h:5/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5/t1?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://u@h:5", "t1"), "postgres://u@h:5/t1");
    }
}
