//! `confab migrate-data`: copies a whole SQLite deployment into an empty
//! PostgreSQL database — every table, history included (tenants, users,
//! chats, memberships with their `left_at`, messages, events, credentials,
//! subscriptions, the outbox with its pending rows and attempts, queued
//! operations, idempotency keys, settings) — in ONE PostgreSQL transaction,
//! then reads both back and compares them row by row before committing.
//! Short-lived state (rate-limit buckets, seen signatures) is not copied.

use crate::postgres::{parse_url, ConnectError, Connector, PgOptions, PgStore};
use crate::sql::{dollar_placeholders, SqlRow, Val};
use rusqlite::OpenFlags;

/// (table, key columns for a stable order). Parents before children.
const TABLES: &[(&str, &str)] = &[
    ("tenants", "id"),
    ("apps", "tenant_id, id"),
    ("users", "tenant_id, id"),
    ("lines", "tenant_id, id"),
    ("chats", "tenant_id, id"),
    ("memberships", "tenant_id, chat_id, user_id, ended"),
    ("user_chats", "tenant_id, user_id, chat_id"),
    ("crm_links", "seq"),
    ("messages", "tenant_id, id"),
    ("events", "id"),
    ("credentials", "id"),
    ("settings", "key"),
    ("idempotency_keys", "tenant_id, scope, key"),
    ("chat_bindings", "seq"),
    ("subscriptions", "id"),
    ("outbox", "id"),
    ("delivery_attempts", "id"),
    ("operations", "seq"),
];

/// Identity columns whose sequences must continue after the copied ids
/// (and `messages.id`, whose sequence the column owns).
const IDENTITIES: &[(&str, &str)] = &[
    ("tenants", "id"),
    ("messages", "id"),
    ("crm_links", "seq"),
    ("events", "id"),
    ("credentials", "id"),
    ("chat_bindings", "seq"),
    ("outbox", "id"),
    ("delivery_attempts", "id"),
    ("operations", "seq"),
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot open the SQLite database {path}: {message}")]
    Source { path: String, message: String },
    #[error("{0}")]
    Target(String),
    #[error("the PostgreSQL database already holds {0} tenant(s); migrate-data only fills an empty database")]
    NotEmpty(i64),
    #[error("after copying, table {table} differs: {detail}")]
    Mismatch { table: String, detail: String },
}

fn target(e: tokio_postgres::Error) -> MigrateError {
    MigrateError::Target(format!("PostgreSQL: {}", crate::postgres::chain(&e)))
}

/// Columns of a SQLite table, as the copy reads them (`operations` has no
/// `seq` column on SQLite: its rowid keeps the queue order).
fn columns(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let cols = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cols)
}

fn read_sqlite(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<Vec<SqlRow>> {
    let mut st = conn.prepare(sql)?;
    let n = st.column_count();
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(crate::sqlite::column(r.get_ref(i)?));
        }
        out.push(SqlRow(vals));
    }
    Ok(out)
}

/// Booleans are integers on SQLite and booleans on PostgreSQL.
fn normalize(v: &Val) -> Val {
    match v {
        Val::Bool(b) => Val::Int(*b as i64),
        other => other.clone(),
    }
}

/// Copies and verifies; returns (table, rows) in copy order.
pub async fn sqlite_to_postgres(sqlite_path: &str, pg_url: &str) -> Result<Vec<(String, usize)>, MigrateError> {
    let source = |message: String| MigrateError::Source {
        path: sqlite_path.to_owned(),
        message,
    };
    if !std::path::Path::new(sqlite_path).exists() {
        return Err(source("no such file".into()));
    }
    // Brings the SQLite file to the current schema first (as a start would).
    drop(crate::SqliteStore::open(sqlite_path).map_err(|e| source(e.to_string()))?);
    let conn = rusqlite::Connection::open_with_flags(sqlite_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| source(e.to_string()))?;
    // Creates the PostgreSQL schema (migrations under the advisory lock).
    drop(
        PgStore::open(pg_url, &PgOptions::default())
            .await
            .map_err(|e| MigrateError::Target(e.to_string()))?,
    );
    let (config, tls) = parse_url(pg_url).map_err(MigrateError::Target)?;
    let connector = Connector {
        config,
        tls,
        timeout: PgOptions::default().connect_timeout,
    };
    let (mut client, connection) = connector.open().await.map_err(|e| match e {
        ConnectError::Driver(e) => target(e),
        timed_out => MigrateError::Target(timed_out.describe()),
    })?;
    let driver = tokio::spawn(connection);
    let t = client.transaction().await.map_err(target)?;
    let tenants: i64 = t
        .query_one("SELECT COUNT(*) FROM tenants", &[])
        .await
        .map_err(target)?
        .get(0);
    if tenants > 0 {
        return Err(MigrateError::NotEmpty(tenants));
    }
    let mut report = Vec::new();
    for (table, order) in TABLES {
        let mut cols = columns(&conn, table).map_err(|e| source(e.to_string()))?;
        let mut select = cols.join(", ");
        if *table == "operations" {
            select.push_str(", rowid");
            cols.push("seq".into());
        }
        let order_sqlite = if *table == "operations" { "rowid" } else { order };
        let rows = read_sqlite(&conn, &format!("SELECT {select} FROM {table} ORDER BY {order_sqlite}"))
            .map_err(|e| source(e.to_string()))?;
        let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let insert = dollar_placeholders(&format!(
            "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
            cols.join(", "),
            placeholders.join(", ")
        ));
        let st = t.prepare(&insert).await.map_err(target)?;
        for (i, row) in rows.iter().enumerate() {
            t.execute(&st, &crate::postgres::refs(&row.0)).await.map_err(|e| {
                // The row's place, not its values (message text, secrets).
                MigrateError::Target(format!("copying {table}, row {i}: {}", crate::postgres::chain(&e)))
            })?;
        }
        // Verify: read the copy back in the same order and compare.
        let back = t
            .query(
                &format!("SELECT {} FROM {table} ORDER BY {order}", cols.join(", ")),
                &[],
            )
            .await
            .map_err(target)?;
        if back.len() != rows.len() {
            return Err(MigrateError::Mismatch {
                table: table.to_string(),
                detail: format!("{} rows in SQLite, {} in PostgreSQL", rows.len(), back.len()),
            });
        }
        for (i, (a, b)) in rows.iter().zip(&back).enumerate() {
            let b = crate::postgres::read_row(b).map_err(target)?;
            let (a, b): (Vec<Val>, Vec<Val>) =
                (a.0.iter().map(normalize).collect(), b.0.iter().map(normalize).collect());
            if a != b {
                return Err(MigrateError::Mismatch {
                    table: table.to_string(),
                    detail: format!("row {i}: {a:?} became {b:?}"),
                });
            }
        }
        report.push((table.to_string(), rows.len()));
    }
    for (table, col) in IDENTITIES {
        t.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), COALESCE((SELECT MAX({col}) FROM {table}), 0) + 1, false)"
            ),
            &[],
        )
        .await
        .map_err(target)?;
    }
    t.commit().await.map_err(target)?;
    drop(client);
    let _ = driver.await;
    Ok(report)
}
