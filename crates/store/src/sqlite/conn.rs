//! [`Conn`] over one rusqlite transaction.

use super::db_err;
use crate::sql::{Conn, Dialect, SqlRow, SqlTx, Val};
use confab_core::tx::TxResult;
use confab_core::Timestamp;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Transaction;

pub struct SqliteConn<'a> {
    t: &'a Transaction<'a>,
}

/// The store's transaction port over SQLite.
pub type SqliteTx<'a> = SqlTx<SqliteConn<'a>>;

pub fn sqlite_tx<'a>(t: &'a Transaction<'a>, now: Timestamp) -> SqliteTx<'a> {
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
