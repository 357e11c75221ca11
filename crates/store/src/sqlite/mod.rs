//! SQLite store: one writer connection (so write transactions are
//! serialized — the "chat lock" on SQLite is the writer itself, taken with
//! `BEGIN IMMEDIATE`) and a few reader connections (WAL lets them read a
//! consistent snapshot while the writer works). Durable by default, in
//! `journal_mode=WAL`: nothing is answered or shown to a reader before the
//! WAL holding it is fsynced — SQLite's `synchronous=FULL` guarantee, with
//! the fsync taken off the writer's path (`durable`) and checkpoints run by
//! a thread of their own (`checkpoint`).

mod checkpoint;
mod conn;
mod durable;
mod pcache;

use crate::{AnyBox, Job, Mode, Store};
use async_trait::async_trait;
use confab_core::CoreError;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use checkpoint::RESTART_BYTES as WAL_RESTART_BYTES;
pub use conn::{column, SqliteTx};
use conn::{sqlite_tx, Prepared, Txn};

/// Versioned migrations, applied in order; `PRAGMA user_version` records
/// the last one applied.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_idempotency.sql")),
    (3, include_str!("../../migrations/sqlite/0003_bitrix.sql")),
    (4, include_str!("../../migrations/sqlite/0004_outbox.sql")),
    (5, include_str!("../../migrations/sqlite/0005_shared_limits.sql")),
    (6, include_str!("../../migrations/sqlite/0006_member_index.sql")),
    (7, include_str!("../../migrations/sqlite/0007_active_count.sql")),
    (
        8,
        include_str!("../../migrations/sqlite/0008_clustered_memberships.sql"),
    ),
    (9, include_str!("../../migrations/sqlite/0009_user_chats.sql")),
    (10, include_str!("../../migrations/sqlite/0010_membership_removed.sql")),
];

pub const SCHEMA_VERSION: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the SQLite database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "the database {path} has schema version {found}, newer than this confab understands ({known}); \
         run a newer confab or point --database-url at another database"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("cannot open the WAL of {path} to sync it: {source}")]
    Wal { path: PathBuf, source: std::io::Error },
    #[error("cannot start the SQLite {what} thread: {source}")]
    Thread { what: &'static str, source: std::io::Error },
    #[error("migrating {path} to schema version {version} failed: {source}")]
    Migrate {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
}

const READERS: usize = 4;

pub struct SqliteStore {
    path: PathBuf,
    /// Write jobs go to the single writer thread (group commit). Taken on
    /// drop, which ends the thread.
    writer: Option<std::sync::mpsc::Sender<WriteJob>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    syncer_thread: Option<std::thread::JoinHandle<()>>,
    readers: Arc<Vec<Mutex<Prepared>>>,
    /// See [`Store::worker_wakeup`]: notified by the writer.
    wakeup: Arc<tokio::sync::Notify>,
    next_reader: AtomicUsize,
    durability: Arc<durable::Durability>,
}

type WriteJob = (Job, tokio::sync::oneshot::Sender<Result<AnyBox, CoreError>>);

/// Records a read transaction's time when dropped (on every way out).
struct Timer(std::time::Instant);

impl Drop for Timer {
    fn drop(&mut self) {
        crate::stats::READ_TXN.observe(self.0.elapsed().as_secs_f64());
    }
}

/// Page size of a new database, bytes. A leave spread over many chats
/// dirties a few pages all over the file (the membership row, its entry in
/// the active-membership index, the chat's count, the per-chat event
/// index); every dirty page is written whole, once into the WAL and again
/// by the checkpoint. With 1 KiB pages instead of SQLite's 4 KiB those
/// writes are a quarter of the bytes, and on this disk bytes written are
/// what limits scattered leaves (BENCHMARKS.md, session 5: +14 % alone,
/// +35 % with the checkpoint thresholds scaled to the same bytes). Rows
/// are small; a long message text spills into overflow pages.
const PAGE_SIZE: i64 = 1024;

/// The writer's page cache, KiB (negative: a size, not a page count).
const WRITER_CACHE_KIB: i64 = -16384;

/// Most commands one commit carries.
const GROUP_COMMIT_MAX: usize = 128;

/// The writer thread: takes every job waiting, runs each inside its own
/// savepoint of ONE transaction (a failing job rolls back alone), commits
/// once, and hands the answers to the syncer (`durable`), which answers
/// after the WAL is fsynced. An acknowledged command is therefore durable;
/// a commit failure fails every job of the group, none is half-applied.
/// While the syncer waits for the disk, the writer runs the next group.
fn writer_loop(
    conn: Prepared,
    jobs: std::sync::mpsc::Receiver<WriteJob>,
    mut checkpoints: checkpoint::Checkpoints,
    durability: Arc<durable::Durability>,
    syncer: std::sync::mpsc::Sender<durable::Committed>,
    wakeup: Arc<tokio::sync::Notify>,
) {
    let mut seq = 0u64;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        if durability.failed() {
            for (_, reply) in group {
                let _ = reply.send(Err(durable::stopped()));
            }
            continue;
        }
        let started = std::time::Instant::now();
        crate::stats::GROUP_COMMIT.observe(group.len() as f64);
        let t = match Txn::begin(&conn, "BEGIN IMMEDIATE") {
            Ok(t) => t,
            Err(e) => {
                let err = db_err(e);
                for (_, reply) in group {
                    let _ = reply.send(Err(err.clone()));
                }
                continue;
            }
        };
        let now = now();
        let mut answers = Vec::with_capacity(group.len());
        let mut wakes_worker = false;
        for (job, reply) in group {
            // Prepared once per connection: parsing these two statements
            // for every command cost more than some of the commands.
            let savepoint = |sql: &str| t.run(sql);
            let outcome = match savepoint("SAVEPOINT cmd") {
                Err(e) => Err(db_err(e)),
                Ok(()) => {
                    let mut tx = sqlite_tx(&t, now);
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut tx)))
                        .unwrap_or_else(|_| Err(CoreError::Internal("a store job panicked".into())));
                    wakes_worker |= out.is_ok() && tx.wakes_worker();
                    let ended = if out.is_ok() {
                        savepoint("RELEASE cmd")
                    } else {
                        savepoint("ROLLBACK TO cmd").and_then(|()| savepoint("RELEASE cmd"))
                    };
                    match ended {
                        Ok(()) => out,
                        Err(e) => Err(db_err(e)),
                    }
                }
            };
            answers.push((reply, outcome));
        }
        seq += 1;
        durability.issue(seq);
        let committed = t.commit();
        crate::stats::WRITE_TXN.observe(started.elapsed().as_secs_f64());
        match committed {
            Err(e) => {
                let err = db_err(e);
                for (_, answer) in answers.iter_mut() {
                    *answer = Err(err.clone());
                }
            }
            // The worker's own claim is a write queued behind this group,
            // answered once the group's fsync is done: it hands out nothing
            // that is not durable.
            Ok(()) if wakes_worker => wakeup.notify_one(),
            Ok(()) => {}
        }
        if let Err(std::sync::mpsc::SendError(group)) = syncer.send(durable::Committed { seq, answers }) {
            for (reply, _) in group.answers {
                let _ = reply.send(Err(CoreError::Unavailable("the SQLite syncer has stopped".into())));
            }
        }
        checkpoints.after_commit(conn.conn());
    }
    // The syncer answers what it holds, then ends.
    drop(syncer);
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Takes effect only on a new, empty database (before WAL mode writes
    // its first page); an existing file keeps the page size it has.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies the
    /// migrations. Refuses a database from a newer schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        // Before SQLite initialises, at the first connection of the process.
        pcache::install();
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open = |flags| {
            let c = Connection::open_with_flags(&path, flags).map_err(|source| OpenError::Open {
                path: path.clone(),
                source,
            })?;
            configure(&c).map_err(|source| OpenError::Open {
                path: path.clone(),
                source,
            })?;
            Ok::<_, OpenError>(c)
        };
        let mut writer =
            open(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        migrate(&mut writer, &path)?;
        // Leaves scattered over many chats touch pages all over the file:
        // the writer keeps more of them than SQLite's default 2 MB.
        // The writer does not checkpoint as it commits: a checkpointer thread
        // with its own connection does (see `checkpoint`).
        // Its commits write the WAL without an fsync; the syncer fsyncs
        // before anything is answered (see `durable`).
        let tune = |c: &Connection| {
            c.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
            c.pragma_update(None, "wal_autocheckpoint", 0)?;
            c.pragma_update(None, "synchronous", "NORMAL")
        };
        tune(&writer).map_err(|source| OpenError::Open {
            path: path.clone(),
            source,
        })?;
        let checkpoints = checkpoint::Checkpoints::start(open(
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?)
        .map_err(|source| OpenError::Thread {
            what: "checkpointer",
            source,
        })?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(Prepared::new(open(
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?)));
        }
        let durability = Arc::new(durable::Durability::default());
        // The file SQLite resolved (symbolic links followed): its WAL sits
        // next to it, not necessarily next to `path`.
        let db_file = writer.path().map(PathBuf::from).unwrap_or_else(|| path.clone());
        let (syncer, syncer_thread) =
            durable::start(&db_file, durability.clone()).map_err(|source| OpenError::Wal {
                path: db_file.clone(),
                source,
            })?;
        let (tx, rx) = std::sync::mpsc::channel::<WriteJob>();
        let d = durability.clone();
        let wakeup = Arc::new(tokio::sync::Notify::new());
        let w = wakeup.clone();
        let thread = std::thread::Builder::new()
            .name("confab-sqlite-writer".into())
            .spawn(move || writer_loop(Prepared::new(writer), rx, checkpoints, d, syncer, w))
            .map_err(|source| OpenError::Thread { what: "writer", source })?;
        Ok(SqliteStore {
            path,
            writer: Some(tx),
            writer_thread: Some(thread),
            syncer_thread: Some(syncer_thread),
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            durability,
            wakeup,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Closing the store ends the writer thread and waits for it, so its
/// connection closes: the last connection to close checkpoints the WAL
/// into the database file (a CLI command leaves a complete file behind).
impl Drop for SqliteStore {
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.syncer_thread.take() {
            let _ = t.join();
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| OpenError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::TooNew {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        let err = |source| OpenError::Migrate {
            path: path.to_path_buf(),
            version: *version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version).map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

/// Maps a driver error to the core's words: busy/locked/I-O trouble is
/// "unavailable" (retryable), a constraint is a conflict, the rest a bug.
pub(crate) fn db_err(e: rusqlite::Error) -> CoreError {
    use rusqlite::ErrorCode::*;
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => match f.code {
            DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen | ReadOnly => {
                CoreError::Unavailable(e.to_string())
            }
            ConstraintViolation => CoreError::Conflict(msg.clone().unwrap_or_else(|| "row".into())),
            _ => CoreError::Internal(e.to_string()),
        },
        _ => CoreError::Internal(e.to_string()),
    }
}

fn join_err(e: tokio::task::JoinError) -> CoreError {
    CoreError::Internal(format!("store task failed: {e}"))
}

#[async_trait]
impl Store for SqliteStore {
    async fn run(&self, mode: Mode, job: Job) -> Result<AnyBox, CoreError> {
        match mode {
            Mode::Write => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                self.writer
                    .as_ref()
                    .ok_or_else(|| CoreError::Unavailable("the SQLite writer has stopped".into()))?
                    .send((job, reply))
                    .map_err(|_| CoreError::Unavailable("the SQLite writer has stopped".into()))?;
                answer
                    .await
                    .map_err(|_| CoreError::Unavailable("the SQLite writer has stopped".into()))?
            }
            Mode::Read => {
                let readers = self.readers.clone();
                let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
                let durability = self.durability.clone();
                tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let _timer = Timer(started);
                    let (out, visible) = {
                        let conn = readers[i]
                            .lock()
                            .map_err(|_| CoreError::Internal("reader lock poisoned".into()))?;
                        let t = Txn::begin(&conn, "BEGIN").map_err(db_err)?;
                        // Take the snapshot now (any read of the file does), so
                        // the groups it can see are known: nothing is shown
                        // before it is on disk.
                        t.query_one::<i64>("PRAGMA schema_version").map_err(db_err)?;
                        let visible = durability.visible_bound();
                        let mut tx = sqlite_tx(&t, now());
                        let out = job(&mut tx);
                        // A read job never writes; rollback keeps it honest.
                        drop(t);
                        (out, visible)
                    };
                    // Waits with the connection free for the next read.
                    durability.wait_synced(visible)?;
                    out
                })
                .await
                .map_err(join_err)?
            }
        }
    }

    async fn ping(&self) -> Result<(), CoreError> {
        if self.durability.failed() {
            return Err(durable::stopped());
        }
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers[0]
                .lock()
                .map_err(|_| CoreError::Internal("reader lock poisoned".into()))?;
            conn.query_one::<i64>("SELECT 1").map_err(db_err)?;
            Ok(())
        })
        .await
        .map_err(join_err)?
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn worker_wakeup(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.wakeup.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreExt;

    /// The store wires the syncer in: once an fsync of the WAL fails, the
    /// write waiting for it, later writes, reads and the health check are
    /// all refused ("unavailable"), not answered from memory.
    #[tokio::test]
    async fn a_failed_wal_sync_stops_writes_reads_and_ping() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        store.write(|tx| Ok(tx.insert_tenant("a", "A")?.id)).await.unwrap();
        assert_eq!(store.read(|tx| Ok(tx.tenants()?.len())).await, Ok(1));
        // `durable::fail_point`: the next fsync fails, as on a failing disk.
        std::fs::write(dir.path().join("fail-sync"), b"").unwrap();
        let write = store.write(|tx| Ok(tx.insert_tenant("b", "B")?.id)).await;
        assert_eq!(write.unwrap_err(), durable::stopped());
        assert_eq!(store.write(|tx| Ok(tx.tenants()?.len())).await, Err(durable::stopped()));
        assert_eq!(store.read(|tx| Ok(tx.tenants()?.len())).await, Err(durable::stopped()));
        assert_eq!(store.ping().await, Err(durable::stopped()));
    }

    /// A new database is made with 1 KiB pages; a database made before,
    /// with SQLite's 4 KiB, keeps its pages and works as before.
    #[tokio::test]
    async fn a_new_database_has_small_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |p: &Path| -> i64 {
            Connection::open(p)
                .unwrap()
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap()
        };
        let new = dir.path().join("new.db");
        drop(SqliteStore::open(&new).unwrap());
        assert_eq!(page_size(&new), PAGE_SIZE);

        let old = dir.path().join("old.db");
        let c = Connection::open(&old).unwrap();
        c.pragma_update(None, "page_size", 4096).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE before_confab (x)").unwrap();
        drop(c);
        let store = SqliteStore::open(&old).unwrap();
        store.write(|tx| Ok(tx.insert_tenant("a", "A")?.id)).await.unwrap();
        assert_eq!(store.read(|tx| Ok(tx.tenants()?.len())).await, Ok(1));
        drop(store);
        assert_eq!(page_size(&old), 4096);
    }

    /// A database from before schema 8 keeps its memberships, their order
    /// and their history when they move to the chat-clustered table.
    #[tokio::test]
    async fn memberships_keep_their_order_and_history_through_the_move_to_the_clustered_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v7.db");
        let mut c = Connection::open(&path).unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 7) {
            let tx = c.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", version).unwrap();
            tx.commit().unwrap();
        }
        c.execute_batch(crate::testing::MEMBERSHIPS_BEFORE_THE_MOVE).unwrap();
        drop(c);
        let store = SqliteStore::open(&path).unwrap();
        crate::testing::assert_memberships_survived_the_move(Arc::new(store)).await;
        let version: i64 = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// The membership lookups of every leave walk the key in its own order:
    /// SQLite opens no temporary b-tree or sorter for them (an `ORDER BY
    /// seq` did, once per leave, and cost 4 % of the server's CPU).
    #[test]
    fn the_membership_lookups_of_a_leave_need_no_sort() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        for sql in [&*crate::sql::MEMBERSHIP_ACTIVE, &*crate::sql::MEMBERSHIP_LAST_CLOSED] {
            let mut st = c.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let ops: Vec<String> = st
                .query_map([1, 2, 3], |r| r.get::<_, String>(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(ops.iter().any(|o| o == "SeekGE" || o == "SeekLE"), "{sql}: {ops:?}");
            let sorts: Vec<&String> = ops
                .iter()
                .filter(|o| o.contains("Ephemeral") || o.starts_with("Sorter"))
                .collect();
            assert!(sorts.is_empty(), "{sql} sorts: {sorts:?}");
        }
    }
}
