//! [`Conn`] over one SQLite transaction, the transaction itself, and the
//! connection's prepared statements.

use super::db_err;
use crate::sql::{Conn, Dialect, SqlRow, SqlTx, Val};
use confab_core::tx::TxResult;
use confab_core::Timestamp;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, PrepFlags, Statement};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ptr::NonNull;

/// Statements one connection keeps prepared at most; past it they are all
/// finalized and prepared again as they come (only SQL built from run-time
/// values could get there: confab's own is a few dozen statements).
const MOST_STATEMENTS: usize = 256;

/// A connection with its prepared statements.
///
/// rusqlite's own statement cache (`prepare_cached`) hashes the SQL text
/// with SipHash twice per use, copies it into a new `Arc<str>` and moves an
/// LRU node: about 1,500 instructions per statement, some 15,000 per leave
/// (callgrind, BENCHMARKS.md, session 9). Here a statement is found by its
/// text with a cheap hash and stays where it is.
pub struct Prepared {
    statements: RefCell<HashMap<Box<str>, Statement<'static>, rustc_hash::FxBuildHasher>>,
    // Owned: made by `Box::leak` in `new`, freed in `drop` after the
    // statements. A pointer rather than a `Box`, because the statements
    // hold shared references to the connection, and a `Box` would claim
    // unique access to it whenever the `Prepared` moves.
    conn: NonNull<Connection>,
}

// SAFETY: the statements belong to `conn` and move with it, as rusqlite's
// own statement cache inside `Connection` does (it is `Send` for the same
// reason); `Prepared` is never shared between threads without a lock
// (`!Sync` through the `RefCell`).
unsafe impl Send for Prepared {}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Finalized while the connection is still open.
        self.statements.get_mut().clear();
        // SAFETY: from `Box::leak` in `new`, freed only here, and no
        // statement refers to it any more.
        drop(unsafe { Box::from_raw(self.conn.as_ptr()) });
    }
}

impl Prepared {
    pub fn new(conn: Connection) -> Self {
        Prepared {
            statements: RefCell::new(HashMap::default()),
            conn: NonNull::from(Box::leak(Box::new(conn))),
        }
    }

    /// The connection, for what runs once (pragmas, migrations).
    pub fn conn(&self) -> &Connection {
        // SAFETY: valid until `drop`; only ever shared.
        unsafe { self.conn.as_ref() }
    }

    /// Runs `f` on the statement for `sql`, prepared on first use. Each
    /// rusqlite call `f` makes resets the statement when it is done with it
    /// (`execute`, `insert`, and `Rows` when dropped), so the statement is
    /// ready for its next use however `f` ends. `f` must not come back to
    /// this connection's statements (it would find them borrowed).
    fn with<R>(&self, sql: &str, f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<R>) -> rusqlite::Result<R> {
        // SAFETY (both uses): shortens the statement's lifetime to the
        // borrow of `self`, so `f` cannot keep it.
        fn shorten<'a>(st: &'a mut Statement<'static>) -> &'a mut Statement<'a> {
            unsafe { std::mem::transmute::<&mut Statement<'static>, &mut Statement<'a>>(st) }
        }
        let mut statements = self.statements.borrow_mut();
        // One lookup when the statement is there, as it nearly always is.
        if let Some(st) = statements.get_mut(sql) {
            return f(shorten(st));
        }
        if statements.len() >= MOST_STATEMENTS {
            statements.clear();
        }
        let st = self
            .conn()
            .prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT)?;
        // SAFETY: the statement refers to the connection, which stays at
        // its address and outlives every statement (see `drop`).
        let st: Statement<'static> = unsafe { std::mem::transmute::<Statement<'_>, Statement<'static>>(st) };
        f(shorten(statements.entry(sql.into()).or_insert(st)))
    }

    /// Runs a statement without parameters or rows.
    pub fn run(&self, sql: &str) -> rusqlite::Result<()> {
        self.with(sql, |st| st.execute([])).map(|_| ())
    }

    /// The first column of the first row of a statement without parameters.
    pub fn query_one<T: rusqlite::types::FromSql>(&self, sql: &str) -> rusqlite::Result<T> {
        self.with(sql, |st| st.query_row([], |r| r.get(0)))
    }
}

/// A transaction on `conn`, begun and ended with statements prepared once
/// per connection: rusqlite's `Transaction` runs `execute_batch`, which
/// parses `BEGIN`, `COMMIT` or `ROLLBACK` anew every time (the parsing
/// was 4,500 instructions per concentrated leave; BENCHMARKS.md, session 8). Rolled
/// back when dropped unless committed, as a failed `COMMIT` is.
pub struct Txn<'c> {
    conn: &'c Prepared,
}

impl<'c> Txn<'c> {
    /// `begin` is the statement that opens it (`BEGIN`, `BEGIN IMMEDIATE`).
    pub fn begin(conn: &'c Prepared, begin: &str) -> rusqlite::Result<Txn<'c>> {
        conn.run(begin)?;
        Ok(Txn { conn })
    }

    pub fn commit(self) -> rusqlite::Result<()> {
        self.conn.run("COMMIT")
        // Dropped here: if COMMIT failed and left the transaction open, it
        // is rolled back.
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.conn.conn().is_autocommit() {
            let _ = self.conn.run("ROLLBACK");
        }
    }
}

impl std::ops::Deref for Txn<'_> {
    type Target = Prepared;

    fn deref(&self) -> &Prepared {
        self.conn
    }
}

pub struct SqliteConn<'a> {
    t: &'a Prepared,
}

/// The store's transaction port over SQLite.
pub type SqliteTx<'a> = SqlTx<SqliteConn<'a>>;

/// `t` is inside a transaction ([`Txn`]).
pub fn sqlite_tx(t: &Prepared, now: Timestamp) -> SqliteTx<'_> {
    SqlTx::new(SqliteConn { t }, now)
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(*b as i64)),
        })
    }
}

/// A SQLite value as a [`Val`].
pub fn column(v: ValueRef<'_>) -> Val {
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(f) => Val::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn row_locks(&self) -> bool {
        false
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> TxResult<Vec<SqlRow>> {
        self.t
            .with(sql, |st| {
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(column(r.get_ref(i)?));
                    }
                    out.push(SqlRow(vals));
                }
                Ok(out)
            })
            .map_err(db_err)
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> TxResult<u64> {
        self.t
            .with(sql, |st| st.execute(rusqlite::params_from_iter(params)))
            .map(|n| n as u64)
            .map_err(db_err)
    }

    /// The rowid SQLite assigned: `RETURNING` would cost a temporary table
    /// per insert (the event insert of every command was its dearest
    /// statement).
    fn insert(&mut self, sql: &str, params: &[Val]) -> TxResult<i64> {
        self.t
            .with(sql, |st| st.insert(rusqlite::params_from_iter(params)))
            .map_err(db_err)
    }
}
