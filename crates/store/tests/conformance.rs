#![allow(clippy::unwrap_used)]
//! Store conformance, on the store the run asks for (SQLite or PostgreSQL,
//! see `confab_store::testing`): commands are atomic, history is kept, and
//! commands on one chat are serialized so size rules cannot race.

use confab_core::commands::{self, *};
use confab_core::policy::RemovePolicy;
use confab_core::tx::{ChatFilter, MemberFilter, NewUser, StoreTx};
use confab_core::*;
use confab_store::{testing, SqliteStore, Store, StoreExt};
use std::sync::Arc;

struct World {
    store: Arc<dyn Store>,
    tenant: TenantId,
    chat: ChatId,
    _db: confab_store::testing::TestDb,
}

/// A tenant with a line and a 4-member iMessage group (line + 3 contacts).
async fn imessage_world() -> World {
    let db = confab_store::testing::fresh_store().await;
    let store = db.store.clone();
    let (tenant, chat) = store
        .write(|tx| {
            let t = tx.insert_tenant("acme", "Acme")?;
            let lu = tx.insert_user(NewUser {
                tenant_id: t.id,
                id: None,
                kind: UserKind::Line,
                name: "line".into(),
                handle: Some("+15550000000".into()),
                active: true,
                app_id: None,
            })?;
            tx.insert_line(t.id, "+15550000000", lu.id)?;
            let members = ["+15550000001", "+15550000002", "+15550000003"]
                .iter()
                .map(|h| MemberRef::Handle(h.to_string()))
                .collect();
            let chat = testing::group(t.id, Network::Imessage, Creator::Line("+15550000000".into()), members);
            let (chat, _) = commands::create_chat(tx.as_tx(), &chat)?;
            Ok((t.id, chat.id))
        })
        .await
        .unwrap();
    World {
        store,
        tenant,
        chat,
        _db: db,
    }
}

async fn active_count(w: &World) -> usize {
    let (t, c) = (w.tenant, w.chat);
    w.store
        .read(move |tx| Ok(tx.active_members(t, c)?.len()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_leaves_exactly_one_succeeds_20_times() {
    for round in 0..20 {
        let w = imessage_world().await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let store = w.store.clone();
            let cmd = Leave {
                tenant: w.tenant,
                chat: w.chat,
                leaver: Leaver::Line,
                trace_id: None,
            };
            tasks.push(tokio::spawn(async move {
                store.write(move |tx| commands::leave(tx.as_tx(), &cmd)).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(CoreError::LeftChat) => {}
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!(ok, 1, "round {round}");
        assert_eq!(active_count(&w).await, 3, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_removals_never_go_below_three() {
    let w = imessage_world().await;
    let mut tasks = Vec::new();
    for h in ["+15550000001", "+15550000002", "+15550000003"] {
        let store = w.store.clone();
        let cmd = Remove {
            tenant: w.tenant,
            chat: ChatSelector::Id(w.chat),
            actor: None,
            member: MemberRef::Handle(h.into()),
            policy: RemovePolicy::IMessage,
            trace_id: None,
        };
        tasks.push(tokio::spawn(async move {
            store.write(move |tx| commands::remove(tx.as_tx(), &cmd)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CoreError::GroupTooSmall { min_remaining: 3 }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(active_count(&w).await, 3);
}

#[tokio::test]
async fn failed_command_leaves_nothing_behind() {
    let w = imessage_world().await;
    let (t, c) = (w.tenant, w.chat);
    let before = w
        .store
        .read(move |tx| Ok((tx.events(t, None)?.len(), tx.users(t)?.len())))
        .await
        .unwrap();
    // Adding a 33rd member fails after the contact row would have been made.
    let res = w
        .store
        .write(move |tx| {
            for i in 10..40 {
                commands::add(
                    tx.as_tx(),
                    &Add {
                        tenant: t,
                        chat: c,
                        actor: None,
                        member: MemberRef::Handle(format!("+1555000{i:04}")),
                        trace_id: None,
                    },
                )?;
            }
            Ok(())
        })
        .await;
    assert_eq!(res, Err(CoreError::TooManyParticipants { max: 31 }));
    let after = w
        .store
        .read(move |tx| Ok((tx.events(t, None)?.len(), tx.users(t)?.len())))
        .await
        .unwrap();
    assert_eq!(before, after, "the whole transaction rolled back");
    assert_eq!(active_count(&w).await, 4);
}

/// A membership needs its chat's row (the row counts members and hands out
/// their order): opening one in a chat that does not exist is refused as a
/// bug, and nothing is written. (SQLite refuses it at once; PostgreSQL,
/// where the write goes out with the next statement, when it commits.)
#[tokio::test]
async fn a_membership_of_a_missing_chat_is_refused_and_writes_nothing() {
    let w = imessage_world().await;
    let (t, c) = (w.tenant, w.chat);
    let missing = ChatId(c.0 + 1000);
    let res = w
        .store
        .write(move |tx| tx.open_membership(t, missing, UserId(1), Role::Member, 0))
        .await;
    match res {
        Err(CoreError::Internal(m)) => assert!(
            m == format!("a membership of chat {} that has no row", missing.0) || m.contains("\"seq\""),
            "{m}"
        ),
        other => panic!("refused as a bug, not {other:?}"),
    }
    let history = w.store.read(move |tx| tx.membership_history(t, missing)).await;
    assert_eq!(history, Ok(vec![]));
    assert_eq!(active_count(&w).await, 4);
}

#[tokio::test]
async fn leave_keeps_history_and_records_event() {
    let w = imessage_world().await;
    let (t, c) = (w.tenant, w.chat);
    let out = w
        .store
        .write(move |tx| {
            commands::leave(
                tx.as_tx(),
                &Leave {
                    tenant: t,
                    chat: c,
                    leaver: Leaver::Line,
                    trace_id: Some("tr".into()),
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(out.event.event.kind, EventKind::Left);
    let (history, events) = w
        .store
        .read(move |tx| Ok((tx.membership_history(t, c)?, tx.events(t, Some(c))?)))
        .await
        .unwrap();
    assert_eq!(history.len(), 4, "rows are never deleted");
    assert_eq!(history.iter().filter(|m| m.left_at.is_some()).count(), 1);
    let last = events.last().unwrap();
    assert_eq!(
        (last.event.kind, last.event.trace_id.as_deref()),
        (EventKind::Left, Some("tr"))
    );
}

#[tokio::test]
async fn tenants_do_not_see_each_other() {
    let w = imessage_world().await;
    let c = w.chat;
    let other = w
        .store
        .write(|tx| Ok(tx.insert_tenant("other", "Other")?.id))
        .await
        .unwrap();
    let seen = w.store.read(move |tx| tx.chat(other, c)).await.unwrap();
    assert_eq!(seen, None);
    let res = w
        .store
        .write(move |tx| {
            commands::leave(
                tx.as_tx(),
                &Leave {
                    tenant: other,
                    chat: c,
                    leaver: Leaver::Line,
                    trace_id: None,
                },
            )
        })
        .await;
    assert_eq!(res.unwrap_err(), CoreError::ChatNotFound);
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).err().expect("must refuse");
    assert!(err.to_string().contains("newer than this confab"), "{err}");
}

#[test]
fn unwritable_directory_is_a_clear_error() {
    let err = SqliteStore::open("/proc/confab-cannot-write-here/x.db")
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("cannot create the data directory"), "{err}");
}

/// `lock_chat_for` (on PostgreSQL one statement bringing each user's latest
/// membership and user row along with the locked chat) answers exactly as
/// the separate lookups do: a member, a former member, someone never in
/// the chat, no such user, no such chat; for one user and for two.
#[tokio::test]
async fn lock_chat_for_answers_as_separate_lookups_do() {
    let w = imessage_world().await;
    let (t, c) = (w.tenant, w.chat);
    let members = w.store.read(move |tx| tx.active_members(t, c)).await.unwrap();
    let gone = members[1].user_id;
    w.store
        .write(move |tx| tx.close_membership(t, c, gone, 5, false))
        .await
        .unwrap();
    let outsider = w
        .store
        .write(move |tx| {
            Ok(tx
                .insert_user(NewUser {
                    tenant_id: t,
                    id: None,
                    kind: UserKind::Person,
                    name: "outsider".into(),
                    handle: None,
                    active: true,
                    app_id: None,
                })?
                .id)
        })
        .await
        .unwrap();
    let mut cases: Vec<(ChatId, UserId)> = members.iter().map(|m| (c, m.user_id)).collect();
    cases.extend([
        (c, outsider),
        (c, UserId(999_999)),
        (ChatId(999_999), members[0].user_id),
    ]);
    for (chat, user) in cases {
        let (joint, apart) = w
            .store
            .write(move |tx| {
                let joint = (
                    tx.lock_chat_for(t, chat, &[user])?,
                    tx.membership(t, chat, user)?,
                    tx.user(t, user)?,
                    tx.active_count(t, chat)?,
                    // Served once: asking again reads the database.
                    tx.membership(t, chat, user)?,
                );
                let apart = (
                    tx.lock_chat(t, chat)?,
                    tx.membership(t, chat, user)?,
                    tx.user(t, user)?,
                    tx.active_count(t, chat)?,
                    tx.membership(t, chat, user)?,
                );
                Ok((format!("{joint:?}"), format!("{apart:?}")))
            })
            .await
            .unwrap();
        assert_eq!(joint, apart, "chat {chat:?}, user {user:?}");
        // And for two users at once (an actor and the member it adds or
        // removes), asked for in either order.
        let actor = members[0].user_id;
        let (joint, apart) = w
            .store
            .write(move |tx| {
                let joint = (
                    tx.lock_chat_for(t, chat, &[actor, user])?,
                    tx.user(t, actor)?,
                    tx.membership(t, chat, user)?,
                    tx.user(t, user)?,
                    tx.membership(t, chat, actor)?,
                    tx.active_count(t, chat)?,
                );
                let apart = (
                    tx.lock_chat(t, chat)?,
                    tx.user(t, actor)?,
                    tx.membership(t, chat, user)?,
                    tx.user(t, user)?,
                    tx.membership(t, chat, actor)?,
                    tx.active_count(t, chat)?,
                );
                Ok((format!("{joint:?}"), format!("{apart:?}")))
            })
            .await
            .unwrap();
        assert_eq!(joint, apart, "chat {chat:?}, users {actor:?} and {user:?}");
    }
}

/// SQLite: the writer does not checkpoint as it commits; a checkpointer
/// thread copies the WAL into the database and the writer starts the WAL
/// over once it has caught up. Under a steady stream of commits the WAL
/// must still start over (not grow for ever), and every row must be there
/// after the store is reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_wal_starts_over_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let wal = dir.path().join("c.db-wal");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let t = store
        .write(|tx| Ok(tx.insert_tenant("acme", "Acme")?.id))
        .await
        .unwrap();
    let row = 3_600u64;
    let mut biggest = 0;
    let mut written = 0u64;
    let (mut first_seq, mut last_seq) = (None, 0u32);
    // 8 writers, 96 commands of a 3,600-byte row each per round, for more
    // than six times the WAL length at which it starts over (32 MiB).
    let restart = confab_store::sqlite::WAL_RESTART_BYTES as u64;
    let rounds = (6 * restart / (96 * row) + 10) as i64;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..12 {
                    let id = 10_000 + round * 1_000 + w * 100 + i;
                    store
                        .write(move |tx| {
                            tx.insert_user(NewUser {
                                tenant_id: t,
                                id: Some(UserId(id)),
                                kind: UserKind::Person,
                                name: format!("{id:06}").repeat(600),
                                handle: None,
                                active: true,
                                app_id: None,
                            })?;
                            Ok(())
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        written += 96 * row;
        biggest = biggest.max(std::fs::metadata(&wal).unwrap().len());
        let seq = wal_checkpoint_sequence(&wal);
        first_seq.get_or_insert(seq);
        last_seq = seq;
    }
    assert!(written > 6 * restart, "the test writes past the restart length");
    // Each start-over writes a new WAL header with the next checkpoint
    // sequence number. How far the file grows in between depends on how
    // quickly the checkpointer copies, so its size is only checked loosely.
    let restarts = last_seq.wrapping_sub(first_seq.unwrap());
    assert!(
        restarts >= 3,
        "the WAL started over {restarts} times for {written} bytes of rows written"
    );
    assert!(
        biggest < written * 3 / 4,
        "the WAL grew to {biggest} bytes for {written} bytes of rows written"
    );
    drop(store);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let n = store.read(move |tx| Ok(tx.users(t)?.len())).await.unwrap();
    assert_eq!(n as i64, rounds * 8 * 12);
}

/// The checkpoint sequence number in a WAL file's header (bytes 12..16,
/// big-endian), which SQLite increments each time it starts the WAL over.
fn wal_checkpoint_sequence(wal: &std::path::Path) -> u32 {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(wal).unwrap().read_exact(&mut header).unwrap();
    u32::from_be_bytes([header[12], header[13], header[14], header[15]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_keeps_each_command_alone() {
    let w = imessage_world().await;
    let t = w.tenant;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = w.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(move |tx| {
                    tx.insert_user(NewUser {
                        tenant_id: t,
                        id: Some(UserId(1000 + i)),
                        kind: UserKind::Person,
                        name: format!("u{i}"),
                        handle: None,
                        active: true,
                        app_id: None,
                    })?;
                    if i % 2 == 1 {
                        return Err(CoreError::Invalid("odd commands fail after writing".into()));
                    }
                    Ok(())
                })
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 20);
    let ids: Vec<i64> = w
        .store
        .read(move |tx| {
            Ok(tx
                .users(t)?
                .into_iter()
                .map(|u| u.id.0)
                .filter(|id| *id >= 1000)
                .collect())
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 20, "only the successful commands' rows exist");
    assert!(ids.iter().all(|id| id % 2 == 0));
}

/// A new, empty database on the test server, and a connection to it
/// outside any store.
async fn database_with_client() -> (String, tokio_postgres::Client) {
    let url = confab_store::testing::create_database().await;
    let (config, tls) = confab_store::postgres::parse_url(&url).unwrap();
    let (client, conn) = config.connect(tls).await.unwrap();
    tokio::spawn(conn);
    (url, client)
}

/// The PostgreSQL half of the schema guard: a database migrated by a newer
/// confab is refused with the same words. PostgreSQL runs only.
#[tokio::test]
async fn pg_only_refuses_a_newer_schema() {
    let (url, client) = database_with_client().await;
    let opts = confab_store::PgOptions::default();
    drop(confab_store::testing::open_pg(&url, &opts).await);
    client
        .batch_execute("INSERT INTO confab_schema (version) VALUES (999)")
        .await
        .unwrap();
    let err = confab_store::PgStore::open(&url, &opts)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("newer than this confab"), "{err}");
}

/// Two stores starting at once on an empty database (two nodes) both come
/// up: the advisory lock makes one migrate while the other waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_only_two_nodes_migrate_at_once() {
    let url = confab_store::testing::create_database().await;
    let opts = confab_store::PgOptions::default();
    let (a, b) = tokio::join!(
        confab_store::PgStore::open(&url, &opts),
        confab_store::PgStore::open(&url, &opts)
    );
    a.expect("first node");
    b.expect("second node");
}

/// A PostgreSQL database at schema 1 keeps its memberships, their order
/// and their history through migration 2 (memberships keyed by chat, user
/// and `ended`).
#[tokio::test]
async fn pg_only_memberships_keep_their_order_and_history_through_migration_2() {
    let (url, client) = database_with_client().await;
    let old = format!(
        "{}\nCREATE TABLE confab_schema (version INTEGER NOT NULL); INSERT INTO confab_schema (version) VALUES (1);\n{}",
        include_str!("../migrations/postgres/0001_init.sql"),
        confab_store::testing::MEMBERSHIPS_BEFORE_THE_MOVE
    );
    client.batch_execute(&old).await.unwrap();
    let store = confab_store::testing::open_pg(&url, &confab_store::PgOptions::default()).await;
    confab_store::testing::assert_memberships_survived_the_move(store).await;
}

/// A store whose URL puts it in a schema of its own
/// (`options=-c search_path=…`) keeps its tables there, and a leave works
/// in it (its event id comes from the schema's own `events_id_seq`).
#[tokio::test]
async fn pg_only_a_store_keeps_to_the_schema_its_url_names() {
    let (url, client) = database_with_client().await;
    client.batch_execute("CREATE SCHEMA chat").await.unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let in_schema = format!("{url}{sep}options=-c%20search_path%3Dchat");
    let store = confab_store::testing::open_pg(&in_schema, &confab_store::PgOptions::default()).await;
    let (t, c) = six_person_group(&*store).await;
    user_leaves(&*store, t, c, UserId(3)).await.unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM chat.events WHERE kind = 'left'), to_regclass('public.events') IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "the leave's event, in schema chat");
    assert!(row.get::<_, bool>(1), "nothing in schema public");
}

/// A store opens over the server's Unix-domain socket (a host that is a
/// directory) and a leave works there. The driver asks for a TLS
/// connector even for a socket, with an empty host name, which rustls
/// refused: every connection over a socket failed.
#[tokio::test]
async fn pg_only_a_store_opens_over_a_unix_socket() {
    let (url, client) = database_with_client().await;
    let dir: String = client
        .query_one(
            "SELECT trim(split_part(current_setting('unix_socket_directories'), ',', 1))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        dir.starts_with('/'),
        "the test server listens on no Unix socket directory (unix_socket_directories = {dir:?}); \
         scripts/pg-cluster starts one that does"
    );
    let (config, _) = confab_store::postgres::parse_url(&url).unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap();
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap();
    // sslmode=require too: it does not apply to a socket, as in libpq.
    let socket = format!("postgres://{user}{password}@/{db}?host={dir}&port={port}&sslmode=require");
    let store = confab_store::testing::open_pg(&socket, &confab_store::PgOptions::default()).await;
    let (t, c) = six_person_group(&*store).await;
    user_leaves(&*store, t, c, UserId(3)).await.unwrap();
    let over_sockets: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'confab' AND client_port = -1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert!(over_sockets >= 1, "the store's connections go over the socket");
}

/// A credential and its tenant in one lookup answer as the two separate
/// lookups do, in the right tenant among two, and nothing for a hash no
/// credential has.
#[tokio::test]
async fn a_credential_comes_with_its_tenant() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (both, separate, unknown) = store
        .write(|tx| {
            let other = tx.insert_tenant("other", "Other")?;
            let t = tx.insert_tenant("acme", "Acme")?;
            for (tenant, hash) in [(other.id, "h-other"), (t.id, "h-acme")] {
                tx.insert_credential(NewCredential {
                    tenant_id: tenant,
                    kind: CredentialKind::VibecodePersonal,
                    secret_hash: hash.into(),
                    secret: None,
                    user_id: Some(UserId(7)),
                    app_id: None,
                    scopes: vec!["im".into()],
                    expires_at: Some(99),
                    label: "key".into(),
                })?;
            }
            let kind = CredentialKind::VibecodePersonal;
            let both = tx.credential_and_tenant_by_hash(kind, "h-acme")?;
            let cred = tx.credential_by_hash(kind, "h-acme")?.expect("the credential");
            let tenant = tx.tenant(cred.tenant_id)?.expect("its tenant");
            let unknown = tx.credential_and_tenant_by_hash(kind, "h-none")?;
            Ok((both, (cred, tenant), unknown))
        })
        .await
        .unwrap();
    let (cred, tenant) = both.expect("found");
    assert_eq!((cred.clone(), tenant.clone()), separate);
    assert_eq!(
        (tenant.slug.as_str(), cred.user_id, cred.expires_at),
        ("acme", Some(UserId(7)), Some(99))
    );
    assert_eq!(unknown, None);
}

/// A tenant with persons 1–6 and a group owned by 1 with 2–6 in it.
async fn six_person_group(store: &dyn Store) -> (TenantId, ChatId) {
    six_person_group_of(store, "acme").await
}

/// [`six_person_group`] in a tenant called `slug`.
async fn six_person_group_of(store: &dyn Store, slug: &'static str) -> (TenantId, ChatId) {
    store
        .write(move |tx| {
            let t = tx.insert_tenant(slug, slug)?;
            for i in 1..=6 {
                tx.insert_user(testing::person(t.id, i))?;
            }
            let members = (2..=6).map(|i| MemberRef::Id(UserId(i))).collect();
            let chat = testing::group(t.id, Network::Internal, Creator::User(UserId(1)), members);
            let (chat, _) = commands::create_chat(tx.as_tx(), &chat)?;
            Ok((t.id, chat.id))
        })
        .await
        .unwrap()
}

/// A new group of tenant `t`: `owner` and `member`.
async fn group_of_two(store: &dyn Store, t: TenantId, owner: UserId, member: UserId) -> ChatId {
    store
        .write(move |tx| {
            let chat = testing::group(t, Network::Internal, Creator::User(owner), vec![MemberRef::Id(member)]);
            Ok(commands::create_chat(tx.as_tx(), &chat)?.0.id)
        })
        .await
        .unwrap()
}

/// User 1, the owner, removes `user` from chat `c` (`im.chat.user.delete`).
fn owner_removes(t: TenantId, c: ChatId, user: UserId) -> Remove {
    Remove {
        tenant: t,
        chat: ChatSelector::Id(c),
        actor: Some(UserId(1)),
        member: MemberRef::Id(user),
        policy: RemovePolicy::Bitrix,
        trace_id: None,
    }
}

/// User 1, the owner, adds `user` to chat `c` (`im.chat.user.add`).
fn owner_adds(t: TenantId, c: ChatId, user: UserId) -> Add {
    Add {
        tenant: t,
        chat: c,
        actor: Some(UserId(1)),
        member: MemberRef::Id(user),
        trace_id: None,
    }
}

/// User 1's message "hello" to chat `c`.
fn hello_from_user_1(t: TenantId, c: ChatId) -> SendMessage {
    SendMessage {
        tenant: t,
        chat: c,
        author: Author::User(UserId(1)),
        text: "hello".into(),
        trace_id: None,
    }
}

/// `user` leaves chat `c` (`im.chat.leave`'s command).
async fn user_leaves(store: &dyn Store, t: TenantId, c: ChatId, user: UserId) -> Result<(), CoreError> {
    store
        .write(move |tx| {
            let cmd = Leave {
                tenant: t,
                chat: c,
                leaver: Leaver::User(user),
                trace_id: None,
            };
            commands::leave(tx.as_tx(), &cmd).map(|_| ())
        })
        .await
}

/// An active webhook subscription of tenant `t` for every event kind, to
/// a port nobody listens on, limited to `lines` when there are any.
fn webhook(t: TenantId, id: &str, lines: Vec<String>) -> Subscription {
    face_webhook(t, id, "linq", lines)
}

fn face_webhook(t: TenantId, id: &str, face: &str, lines: Vec<String>) -> Subscription {
    Subscription {
        id: id.into(),
        tenant_id: t,
        face: face.into(),
        target_url: "http://127.0.0.1:9/hook".into(),
        events: vec![],
        kinds: vec![],
        lines,
        subject_id: None,
        secret: "s".into(),
        extra: String::new(),
        active: true,
        created_at: 0,
        updated_at: 0,
    }
}

/// A PostgreSQL store on a new database, with [`six_person_group`].
async fn pg_six_person_group() -> (Arc<confab_store::PgStore>, TenantId, ChatId) {
    let store = confab_store::testing::open_pg(
        &confab_store::testing::create_database().await,
        &confab_store::PgOptions::default(),
    )
    .await;
    let (t, c) = six_person_group(store.as_ref()).await;
    (store, t, c)
}

/// A group made by user 1 with the users of `members` (by id).
fn group_by_user_1(t: TenantId, members: Vec<i64>) -> CreateChat {
    let members = members.into_iter().map(|i| MemberRef::Id(UserId(i))).collect();
    testing::group(t, Network::Internal, Creator::User(UserId(1)), members)
}

/// The round trips `work` makes on `store`.
async fn round_trips_of(store: Arc<confab_store::PgStore>, work: impl std::future::Future<Output = ()>) -> u64 {
    let before = store.round_trips();
    work.await;
    store.round_trips() - before
}

/// On PostgreSQL a new chat's round trips do not grow with its members:
/// the members named by id are read together, and its events take one
/// round trip together (their ids and the tenant's subscriptions; the
/// inserts and outbox rows go out with `COMMIT`), where each member's
/// lookup and each event were a round trip of their own. With a webhook
/// subscription, a chat of six makes as many as a chat of three. Its
/// events are the creation and each joining in order, with ascending ids,
/// each with its outbox row.
#[tokio::test]
async fn pg_only_a_new_chats_round_trips_do_not_grow_with_its_members() {
    let (store, t, _) = pg_six_person_group().await;
    store
        .write(move |tx| tx.insert_subscription(&face_webhook(t, "sub-1", "bitrix", vec![])))
        .await
        .unwrap();
    let create = |members: Vec<i64>| {
        let store = store.clone();
        let cmd = group_by_user_1(t, members);
        async move {
            let mut chat = None;
            let trips = round_trips_of(store.clone(), async {
                let made = store.write(move |tx| commands::create_chat(tx.as_tx(), &cmd)).await;
                chat = Some(made.unwrap().0.id);
            })
            .await;
            (chat.unwrap(), trips)
        }
    };
    create(vec![2, 3]).await; // prepares the statements on the connection
    let (small, three) = create(vec![2, 3]).await;
    let (c, six) = create(vec![2, 3, 4, 5, 6]).await;
    assert_eq!(six, three, "a chat of six against one of three");
    // The owner, the members, the chat's id (its lock, then its number),
    // whether it exists, its insert, the events' ids, the roster for the
    // answer, and COMMIT with the memberships, events and outbox rows.
    assert_eq!(three, 9, "a chat of three");
    let events = store.read(move |tx| tx.events(t, Some(c))).await.unwrap();
    let kinds: Vec<(EventKind, Option<i64>)> = events
        .iter()
        .map(|e| (e.event.kind, e.event.subject_id.map(|u| u.0)))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::ChatCreated, None),
            (EventKind::Joined, Some(1)),
            (EventKind::Joined, Some(2)),
            (EventKind::Joined, Some(3)),
            (EventKind::Joined, Some(4)),
            (EventKind::Joined, Some(5)),
            (EventKind::Joined, Some(6))
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "{events:?}");
    let queued = store.read(move |tx| tx.deliveries(Some(t), None, 100)).await.unwrap();
    let of_c: Vec<_> = queued
        .iter()
        .filter(|d| events.iter().any(|e| e.id == d.event_id))
        .collect();
    assert_eq!(of_c.len(), 7, "one outbox row per event of the chat");
    let of_small = store.read(move |tx| tx.events(t, Some(small))).await.unwrap();
    assert!(of_small.last().unwrap().id < events[0].id);
}

/// On PostgreSQL a user's leave is two round trips: `BEGIN` with the
/// chat's lock, the leaver's rows, the event's id and the tenant's
/// subscriptions; then the closed membership, the event and its outbox rows
/// with `COMMIT`. With a webhook subscription it is still two, and the
/// outbox rows are there afterwards.
#[tokio::test]
async fn pg_only_a_leave_is_two_round_trips_with_or_without_a_webhook() {
    let (store, t, c) = pg_six_person_group().await;
    let leave = |user: i64| {
        let store = store.clone();
        round_trips_of(store.clone(), async move {
            user_leaves(store.as_ref(), t, c, UserId(user)).await.unwrap()
        })
    };
    leave(2).await; // prepares the statements on the connection
    assert_eq!(leave(3).await, 2);

    store
        .write(move |tx| tx.insert_subscription(&face_webhook(t, "sub-1", "bitrix", vec![])))
        .await
        .unwrap();
    leave(4).await;
    assert_eq!(leave(5).await, 2);
    let queued = store
        .read(move |tx| Ok(tx.deliveries(Some(t), None, 100)?.len()))
        .await
        .unwrap();
    assert_eq!(queued, 2, "one outbox row per leave since the subscription");
}

/// An add and a removal by the owner are two round trips on PostgreSQL, as
/// a leave is: `BEGIN` with the chat's lock, both users' rows and the
/// event's id and subscriptions; then the membership's change, the event
/// and `COMMIT`. In particular neither reads the chat's whole roster (they
/// once did, for an answer only the admin API gives, and an add to a group
/// of 2,000 ran 29 times slower than one to a group of 20), nor looks up
/// a user or a membership on its own (they were 9 and 7 round trips;
/// BENCHMARKS.md, session 13). A message is three.
#[tokio::test]
async fn pg_only_an_add_and_a_removal_are_two_round_trips_and_a_message_three() {
    let (store, t, c) = pg_six_person_group().await;
    store
        .write(move |tx| {
            for i in 7..=10 {
                tx.insert_user(testing::person(t, i))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let add = |user: i64| {
        let store = store.clone();
        let cmd = owner_adds(t, c, UserId(user));
        round_trips_of(store.clone(), async move {
            let out = store.write(move |tx| commands::add(tx.as_tx(), &cmd)).await.unwrap();
            assert!(out.added);
        })
    };
    let remove = |user: i64| {
        let store = store.clone();
        let cmd = owner_removes(t, c, UserId(user));
        round_trips_of(store.clone(), async move {
            store.write(move |tx| commands::remove(tx.as_tx(), &cmd)).await.unwrap();
        })
    };
    add(7).await; // prepares the statements on the connection
    remove(2).await;
    assert_eq!(add(8).await, 2, "an add's round trips");
    assert_eq!(remove(3).await, 2, "a removal's round trips");
    // A message: the lock with the author's rows, the message's insert
    // (its id is the answer), then the event with COMMIT.
    let send = || {
        let store = store.clone();
        let cmd = hello_from_user_1(t, c);
        round_trips_of(store.clone(), async move {
            store
                .write(move |tx| commands::send_message(tx.as_tx(), &cmd))
                .await
                .unwrap();
        })
    };
    send().await;
    assert_eq!(send().await, 3, "a message's round trips");
}

/// Messages of two chats of one tenant do not wait for each other: the
/// second is stored while the first's transaction is still open. (Message
/// ids came from `MAX(id) + 1` under a lock per tenant held until COMMIT,
/// which made every message of a tenant wait for the one before it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_only_messages_of_one_tenant_do_not_wait_for_each_other() {
    let (store, t, first_chat) = pg_six_person_group().await;
    let second_chat = group_of_two(store.as_ref(), t, UserId(1), UserId(2)).await;
    let send = move |tx: &mut dyn StoreTx, chat: ChatId| {
        let cmd = hello_from_user_1(t, chat);
        commands::send_message(tx.as_tx(), &cmd).map(|(_, m)| m.id)
    };
    let (sent, sent_rx) = tokio::sync::oneshot::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let first = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write(move |tx| {
                    let id = send(tx, first_chat)?;
                    let _ = sent.send(());
                    // Held open until the second message is in, or for 3 s.
                    let released = release_rx.recv_timeout(std::time::Duration::from_secs(3)).is_ok();
                    Ok((id, released))
                })
                .await
        }
    });
    sent_rx.await.unwrap();
    let second = store.write(move |tx| send(tx, second_chat)).await;
    let _ = release.send(());
    let (first_id, released) = first.await.unwrap().unwrap();
    let second_id = second.expect("the second message is stored while the first is open");
    assert!(
        released,
        "the first transaction was still open when the second message was stored"
    );
    assert_ne!(first_id, second_id);
}

/// A new chat's members named by id are read together, and still checked
/// in the order given: the first unknown or inactive one fails the chat,
/// which is not made; a member named twice, or the creator named again,
/// counts once.
#[tokio::test]
async fn a_new_chats_members_are_checked_in_order() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, _) = six_person_group(store.as_ref()).await;
    store
        .write(move |tx| {
            let mut gone = testing::person(t, 7);
            gone.active = false;
            tx.insert_user(gone).map(|_| ())
        })
        .await
        .unwrap();
    let create = |members: Vec<i64>| {
        let store = store.clone();
        let cmd = group_by_user_1(t, members);
        async move {
            store
                .write(move |tx| commands::create_chat(tx.as_tx(), &cmd))
                .await
                .map(|(chat, members)| (chat.id, members.iter().map(|m| m.user_id.0).collect::<Vec<_>>()))
        }
    };
    let chats_before = store.read(move |tx| tx.chat_ids_of_user(t, UserId(1))).await.unwrap();
    assert_eq!(create(vec![2, 7, 99]).await, Err(CoreError::UserInactive));
    assert_eq!(create(vec![2, 99, 7]).await, Err(CoreError::UserNotFound));
    assert_eq!(
        store.read(move |tx| tx.chat_ids_of_user(t, UserId(1))).await.unwrap(),
        chats_before
    );
    let (_, members) = create(vec![3, 2, 3, 1, 4]).await.unwrap();
    assert_eq!(members, [1, 3, 2, 4]);
}

/// Several memberships opened at once (a new chat's) are what opening them
/// one by one gives: in the given order after the members already there
/// (whose ids are higher, so a `seq` that repeated one would sort the new
/// member before them), with roles and the chat's count, each person's
/// chats, and the next membership after them. A person twice in one batch
/// fails it whole.
#[tokio::test]
async fn memberships_opened_together_are_as_opened_one_by_one() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, c) = six_person_group(store.as_ref()).await;
    let batch = group_of_two(store.as_ref(), t, UserId(1), UserId(6)).await;
    let single = group_of_two(store.as_ref(), t, UserId(1), UserId(6)).await;
    let people = [
        (UserId(2), Role::Member),
        (UserId(3), Role::Member),
        (UserId(4), Role::Owner),
    ];
    let opened = store
        .write(move |tx| {
            tx.open_memberships(t, batch, &people, 50)?;
            for (user, role) in people {
                tx.open_membership(t, single, user, role, 50)?;
            }
            // The next one comes after the batch.
            tx.open_membership(t, batch, UserId(5), Role::Member, 60)?;
            tx.open_membership(t, single, UserId(5), Role::Member, 60)
        })
        .await;
    assert_eq!(opened, Ok(()));
    let members = |chat| {
        let store = store.clone();
        async move {
            let (history, count) = store
                .read(move |tx| Ok((tx.membership_history(t, chat)?, tx.active_count(t, chat)?)))
                .await
                .unwrap();
            let rows: Vec<_> = history
                .iter()
                .map(|m| (m.user_id.0, m.role, m.joined_at, m.left_at))
                .collect();
            (rows, count)
        }
    };
    let (rows, count) = members(batch).await;
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 6, 2, 3, 4, 5]);
    assert_eq!(rows[4], (4, Role::Owner, 50, None));
    assert_eq!(count, 6);
    // (The chats' first two members joined when each chat was made, which
    // may be a second apart.)
    let (single_rows, single_count) = members(single).await;
    assert_eq!((&rows[2..], count), (&single_rows[2..], single_count));
    let threes = store.read(move |tx| tx.chat_ids_of_user(t, UserId(3))).await;
    assert_eq!(threes, Ok(vec![c, batch, single]));
    assert_eq!(
        store.read(move |tx| tx.active_members(t, batch)).await.map(|m| m.len()),
        Ok(6)
    );

    let refused = store
        .write(move |tx| {
            tx.close_membership(t, c, UserId(4), 70, false)?;
            tx.open_memberships(t, c, &[(UserId(4), Role::Member), (UserId(4), Role::Member)], 71)
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.read(move |tx| tx.active_count(t, c)).await, Ok(6));
}

/// A membership records how it ended: a leave is not a removal, a removal
/// is, and a member who came back is active again; another chat's leave
/// is its own. (Linq shows former members as `left` or `removed`.)
#[tokio::test]
async fn a_membership_records_whether_it_ended_by_a_removal() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, c) = six_person_group(store.as_ref()).await;
    let other = group_of_two(store.as_ref(), t, UserId(1), UserId(4)).await;
    user_leaves(store.as_ref(), t, c, UserId(2)).await.unwrap();
    user_leaves(store.as_ref(), t, other, UserId(4)).await.unwrap();
    store
        .write(move |tx| {
            commands::remove(tx.as_tx(), &owner_removes(t, c, UserId(3)))?;
            commands::remove(tx.as_tx(), &owner_removes(t, c, UserId(4)))?;
            commands::add(tx.as_tx(), &owner_adds(t, c, UserId(4))).map(|_| ())
        })
        .await
        .unwrap();
    let ended = |chat| {
        let store = store.clone();
        async move {
            let history = store.read(move |tx| tx.membership_history(t, chat)).await.unwrap();
            history
                .iter()
                .filter(|m| m.user_id != UserId(1))
                .map(|m| (m.user_id.0, m.left_at.is_some(), m.removed))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ended(c).await,
        vec![
            (2, true, false),
            (3, true, true),
            (4, true, true),
            (5, false, false),
            (6, false, false),
            (4, false, false)
        ]
    );
    assert_eq!(ended(other).await, vec![(4, true, false)]);
}

/// `bots` answers with the tenant's bots of every app, in id order, and
/// with no person and no other tenant's bot.
#[tokio::test]
async fn bots_are_every_bot_of_the_tenant() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, _) = six_person_group(store.as_ref()).await;
    let (other, _) = six_person_group_of(store.as_ref(), "other").await;
    let (expected, got) = store
        .write(move |tx| {
            for (tenant, apps) in [(t, ["a.one", "a.two"]), (other, ["b.one", "b.two"])] {
                for (n, client_id) in apps.into_iter().enumerate() {
                    let app = tx.insert_app(tenant, None, client_id, client_id)?;
                    for k in 0..2 {
                        let cmd = RegisterBot {
                            tenant,
                            app: app.id,
                            code: format!("{client_id}.{k}"),
                            name: format!("bot {n}.{k}"),
                            meta: "{}".into(),
                        };
                        commands::register_bot(tx.as_tx(), &cmd)?;
                    }
                }
            }
            let expected: Vec<User> = tx.users(t)?.into_iter().filter(|u| u.kind == UserKind::Bot).collect();
            Ok((expected, tx.bots(t)?))
        })
        .await
        .unwrap();
    assert_eq!(expected.len(), 4);
    assert_eq!(got, expected);
}

/// `active_member_users` answers as `active_members` with a `user` lookup
/// each: active members only, in the chat's order, each with its row; and
/// page by page, the same.
#[tokio::test]
async fn active_member_users_are_the_members_with_their_rows() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, c) = six_person_group(store.as_ref()).await;
    user_leaves(store.as_ref(), t, c, UserId(3)).await.unwrap();
    // User 2 leaves and comes back: last in the chat's order, not second.
    user_leaves(store.as_ref(), t, c, UserId(2)).await.unwrap();
    store
        .write(move |tx| {
            let cmd = owner_adds(t, c, UserId(2));
            commands::add(tx.as_tx(), &cmd).map(|_| ())
        })
        .await
        .unwrap();
    let (joined, apart) = store
        .read(move |tx| {
            assert!(
                tx.active_member_users(t, c, Some((10, 2)))?.is_empty(),
                "a page past the end"
            );
            let mut apart = Vec::new();
            for m in tx.active_members(t, c)? {
                let u = tx.user(t, m.user_id)?.expect("a member's user");
                apart.push((m, u));
            }
            let pages = (0..3)
                .map(|n| tx.active_member_users(t, c, Some((n * 2, 2))))
                .collect::<Result<Vec<_>, _>>()?
                .concat();
            assert_eq!(pages, apart, "three pages of two");
            Ok((tx.active_member_users(t, c, None)?, apart))
        })
        .await
        .unwrap();
    assert_eq!(joined.len(), 5);
    assert!(joined.iter().all(|(m, u)| m.user_id == u.id && m.user_id != UserId(3)));
    let order: Vec<i64> = joined.iter().map(|(m, _)| m.user_id.0).collect();
    assert_eq!(order, vec![1, 4, 5, 6, 2], "the chat's order, not the users' ids");
    assert_eq!(joined, apart);
}

/// Twenty leaves of one user from one chat at once: exactly one applies,
/// with one `left` event and the count down by one; the others find the
/// membership already closed. (On PostgreSQL a waiter for the chat's lock
/// must read the membership after the lock, not from a snapshot taken
/// before it waited.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_leaves_of_one_user_apply_once() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, c) = six_person_group(store.as_ref()).await;
    for round in 0..5 {
        let user = UserId(2 + round);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { user_leaves(store.as_ref(), t, c, user).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one leave applies");
        let (count, left) = store
            .read(move |tx| {
                let events = tx.events(t, Some(c))?;
                let left = events
                    .iter()
                    .filter(|e| e.event.kind == EventKind::Left && e.event.subject_id == Some(user))
                    .count();
                Ok((tx.active_count(t, c)?, left))
            })
            .await
            .unwrap();
        assert_eq!((count, left), (5 - round as usize, 1), "round {round}");
    }
}

/// A leave from a chat that is not pinned to a line is queued for a Bitrix
/// subscription, not for Linq's or Chert's: they announce only iMessage
/// chats, and a row queued for them would only be skipped by the worker.
#[tokio::test]
async fn an_internal_chat_is_not_queued_for_imessage_subscriptions() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, c) = six_person_group(store.as_ref()).await;
    for face in ["linq", "chert", "bitrix"] {
        store
            .write(move |tx| tx.insert_subscription(&face_webhook(t, face, face, vec![])))
            .await
            .unwrap();
    }
    user_leaves(store.as_ref(), t, c, UserId(2)).await.unwrap();
    assert_eq!(queued_for(store.as_ref(), t).await, ["bitrix"]);
}

/// The subscriptions that tenant `t`'s outbox rows are for, sorted.
async fn queued_for(store: &dyn Store, t: TenantId) -> Vec<String> {
    let mut queued: Vec<String> = store
        .read(move |tx| tx.deliveries(Some(t), None, 100))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.subscription_id)
        .collect();
    queued.sort();
    queued
}

/// A contact's leave from an iMessage group queues the `left` event for the
/// subscriptions of the group's line and for those without a line filter,
/// not for another line's. (On PostgreSQL the line number and the
/// subscriptions come with the chat's lock: this checks that path's filter.)
#[tokio::test]
async fn a_leave_is_queued_only_for_subscriptions_of_its_line() {
    let w = imessage_world().await;
    let t = w.tenant;
    for (id, lines) in [
        ("this-line", vec!["+15550000000".to_string()]),
        ("other-line", vec!["+15559999999".to_string()]),
        ("any-line", vec![]),
    ] {
        w.store
            .write(move |tx| tx.insert_subscription(&webhook(t, id, lines)))
            .await
            .unwrap();
    }
    let c = w.chat;
    let contact = w
        .store
        .read(move |tx| {
            let members = tx.active_members(t, c)?;
            let mut contacts = Vec::new();
            for m in members {
                let u = tx.user(t, m.user_id)?.ok_or(CoreError::UserNotFound)?;
                if u.kind != UserKind::Line {
                    contacts.push(u.id);
                }
            }
            Ok(contacts[0])
        })
        .await
        .unwrap();
    user_leaves(w.store.as_ref(), t, c, contact).await.unwrap();
    assert_eq!(queued_for(w.store.as_ref(), t).await, ["any-line", "this-line"]);
}

/// A person's chats are the chats they are active in: a leave takes the
/// chat out, a rejoin puts it back once, and another tenant's chats and
/// ids never show (SQLite finds them in `user_chats`, PostgreSQL in
/// `memberships_user`).
#[tokio::test]
async fn a_persons_chats_follow_joins_leaves_and_rejoins() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, first) = six_person_group(store.as_ref()).await;
    let (other_tenant, _) = six_person_group_of(store.as_ref(), "other").await;
    let second = group_of_two(store.as_ref(), t, UserId(2), UserId(3)).await;
    let chats_of = |user: i64| {
        let store = store.clone();
        async move {
            let ids = store
                .read(move |tx| tx.chat_ids_of_user(t, UserId(user)))
                .await
                .unwrap();
            let chats = store.read(move |tx| tx.chats_of_user(t, UserId(user))).await.unwrap();
            assert_eq!(chats.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
            ids
        }
    };
    assert_eq!(chats_of(2).await, [first, second]);
    assert_eq!(chats_of(1).await, [first]);
    user_leaves(store.as_ref(), t, first, UserId(2)).await.unwrap();
    assert_eq!(chats_of(2).await, [second]);
    store
        .write(move |tx| tx.open_membership(t, first, UserId(2), Role::Member, 50))
        .await
        .unwrap();
    assert_eq!(chats_of(2).await, [first, second]);
    user_leaves(store.as_ref(), t, first, UserId(2)).await.unwrap();
    user_leaves(store.as_ref(), t, second, UserId(3)).await.unwrap();
    assert_eq!(chats_of(3).await, [first]);
    assert_eq!(chats_of(2).await, [second]);
    assert_eq!(chats_of(7).await, Vec::<ChatId>::new());
    let elsewhere = store
        .read(move |tx| tx.chat_ids_of_user(other_tenant, UserId(2)))
        .await
        .unwrap();
    assert_eq!(
        elsewhere,
        [ChatId(1)],
        "the other tenant's user 2 is in its one chat only"
    );
}

/// Six iMessage groups of tenant `slug` on two lines (even ones on the
/// first), handle `H` the first member of those in `with_h`, then one
/// internal chat (never listed): (tenant, lines, chats).
fn paged_world(
    tx: &mut dyn StoreTx,
    slug: &str,
    with_h: &[usize],
) -> Result<(TenantId, Vec<LineId>, Vec<ChatId>), CoreError> {
    let t = tx.insert_tenant(slug, "T")?;
    let mut lines = Vec::new();
    for phone in ["+15550000000", "+15550000009"] {
        let lu = tx.insert_user(NewUser {
            tenant_id: t.id,
            id: None,
            kind: UserKind::Line,
            name: "line".into(),
            handle: Some(phone.into()),
            active: true,
            app_id: None,
        })?;
        lines.push(tx.insert_line(t.id, phone, lu.id)?.id);
    }
    let mut chats = Vec::new();
    for i in 0..6 {
        let phone = if i % 2 == 0 { "+15550000000" } else { "+15550000009" };
        let first = if with_h.contains(&i) {
            H.to_string()
        } else {
            format!("+1555000010{i}")
        };
        let members = [first, format!("+1555000020{i}"), format!("+1555000030{i}")]
            .into_iter()
            .map(MemberRef::Handle)
            .collect();
        let chat = testing::group(t.id, Network::Imessage, Creator::Line(phone.into()), members);
        chats.push(commands::create_chat(tx.as_tx(), &chat)?.0.id);
    }
    let h = tx.user_by_handle(t.id, H)?.expect("H").id;
    let internal = testing::group(t.id, Network::Internal, Creator::User(h), vec![MemberRef::Id(h)]);
    commands::create_chat(tx.as_tx(), &internal)?;
    Ok((t.id, lines, chats))
}

const H: &str = "+15550000001";

/// A page of a tenant's chats (Linq `GET /v3/chats`): by network, line and
/// member (former members included, or members without a handle), newest
/// first, paged in the store, one tenant's memberships never counting for
/// another's chats.
#[tokio::test]
async fn chat_pages_filter_by_network_line_and_member() {
    let db = testing::fresh_store().await;
    let store = db.store.clone();
    let (t, lines, chats) = store.write(|tx| paged_world(tx, "acme", &[0, 2, 3, 5])).await.unwrap();
    // Another tenant whose H has the same user id and is in every chat,
    // so in the chats with acme's ids 2 and 5, where acme's H is not.
    let (other, _, _) = store
        .write(|tx| paged_world(tx, "other", &[0, 1, 2, 3, 4, 5]))
        .await
        .unwrap();
    let h = store
        .read(move |tx| tx.user_by_handle(t, H))
        .await
        .unwrap()
        .expect("H")
        .id;
    let other_h = store.read(move |tx| tx.user_by_handle(other, H)).await.unwrap();
    assert_eq!(other_h.map(|u| u.id), Some(h), "the same user id in both tenants");
    let (third, second) = (chats[2], chats[1]);
    store
        .write(move |tx| {
            // H leaves the third chat: a former member still counts.
            tx.close_membership(t, third, h, 99, false)?;
            // Someone without a handle joins the second one, and leaves.
            let nobody = tx.insert_user(NewUser {
                tenant_id: t,
                id: None,
                kind: UserKind::Person,
                name: "no handle".into(),
                handle: None,
                active: true,
                app_id: None,
            })?;
            tx.open_membership(t, second, nobody.id, Role::Member, 98)?;
            tx.close_membership(t, second, nobody.id, 99, false)
        })
        .await
        .unwrap();
    let page = |line: Option<LineId>, member: MemberFilter, offset: usize, limit: usize| {
        let store = store.clone();
        async move {
            let filter = ChatFilter {
                network: Network::Imessage,
                line,
                member,
            };
            let found = store
                .read(move |tx| tx.chats_page(t, filter, offset, limit))
                .await
                .unwrap();
            found.iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    let c = |i: usize| chats[i];
    let any = MemberFilter::Any;
    let with_h = MemberFilter::User(h);
    assert_eq!(page(None, any, 0, 100).await, [c(5), c(4), c(3), c(2), c(1), c(0)]);
    assert_eq!(page(None, any, 2, 3).await, [c(3), c(2), c(1)]);
    assert_eq!(page(None, any, 6, 3).await, Vec::<ChatId>::new());
    assert_eq!(page(None, any, usize::MAX, usize::MAX).await, Vec::<ChatId>::new());
    assert_eq!(page(Some(lines[0]), any, 0, 100).await, [c(4), c(2), c(0)]);
    assert_eq!(page(None, with_h, 0, 100).await, [c(5), c(3), c(2), c(0)]);
    assert_eq!(page(None, with_h, 1, 2).await, [c(3), c(2)]);
    assert_eq!(page(Some(lines[1]), with_h, 0, 100).await, [c(5), c(3)]);
    assert_eq!(page(Some(lines[0]), with_h, 0, usize::MAX).await, [c(2), c(0)]);
    let without = MemberFilter::WithoutHandle;
    assert_eq!(page(None, without, 0, 100).await, [c(1)]);
    assert_eq!(page(Some(lines[0]), without, 0, 100).await, Vec::<ChatId>::new());
}
