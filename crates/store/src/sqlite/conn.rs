//! [`Conn`] over one SQLite transaction, and the transaction itself.

use super::db_err;
use crate::sql::{Conn, Dialect, SqlRow, SqlTx, Val};
use confab_core::tx::TxResult;
use confab_core::Timestamp;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

/// A transaction on `conn`, begun and ended with statements prepared once
/// per connection: rusqlite's `Transaction` runs `execute_batch`, which
/// parses `BEGIN`, `COMMIT` or `ROLLBACK` anew every time (the parsing
/// was 4,500 instructions per concentrated leave; BENCHMARKS.md, session 8). Rolled
/// back when dropped unless committed, as a failed `COMMIT` is.
pub struct Txn<'c> {
    conn: &'c Connection,
}

impl<'c> Txn<'c> {
    /// `begin` is the statement that opens it (`BEGIN`, `BEGIN IMMEDIATE`).
    pub fn begin(conn: &'c Connection, begin: &str) -> rusqlite::Result<Txn<'c>> {
        run_cached(conn, begin)?;
        Ok(Txn { conn })
    }

    pub fn commit(self) -> rusqlite::Result<()> {
        run_cached(self.conn, "COMMIT")
        // Dropped here: if COMMIT failed and left the transaction open, it
        // is rolled back.
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = run_cached(self.conn, "ROLLBACK");
        }
    }
}

impl std::ops::Deref for Txn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// Runs a statement without parameters or rows, prepared once per connection.
pub fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql).and_then(|mut st| st.execute([])).map(|_| ())
}

pub struct SqliteConn<'a> {
    t: &'a Connection,
}

/// The store's transaction port over SQLite.
pub type SqliteTx<'a> = SqlTx<SqliteConn<'a>>;

/// `t` is inside a transaction ([`Txn`]).
pub fn sqlite_tx(t: &Connection, now: Timestamp) -> SqliteTx<'_> {
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
        let mut st = self.t.prepare_cached(sql).map_err(db_err)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params)).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(column(r.get_ref(i).map_err(db_err)?));
            }
            out.push(SqlRow(vals));
        }
        Ok(out)
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> TxResult<u64> {
        let mut st = self.t.prepare_cached(sql).map_err(db_err)?;
        Ok(st.execute(rusqlite::params_from_iter(params)).map_err(db_err)? as u64)
    }

    /// The rowid SQLite assigned: `RETURNING` would cost a temporary table
    /// per insert (the event insert of every command was its dearest
    /// statement).
    fn insert(&mut self, sql: &str, params: &[Val]) -> TxResult<i64> {
        let mut st = self.t.prepare_cached(sql).map_err(db_err)?;
        st.insert(rusqlite::params_from_iter(params)).map_err(db_err)
    }
}
