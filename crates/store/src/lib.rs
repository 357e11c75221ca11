//! Storage: the [`Store`] trait (one transaction per job) and its
//! implementations. A job is a closure over [`StoreTx`], the core's
//! transaction port, so every rule runs inside the transaction that applies
//! it, and the chat lock is held for the whole of it.

pub mod faulty;
pub mod migrate_data;
pub mod postgres;
pub mod sql;
pub mod sqlite;
pub mod stats;
pub mod testing;

use async_trait::async_trait;
use confab_core::tx::StoreTx;
use confab_core::CoreError;
use std::any::Any;
use std::future::Future;
use std::sync::Arc;

pub use faulty::FaultyStore;
pub use postgres::{PgOptions, PgStore};
pub use sqlite::SqliteStore;

pub type AnyBox = Box<dyn Any + Send>;
/// A unit of work run inside one transaction.
pub type Job = Box<dyn FnOnce(&mut dyn StoreTx) -> Result<AnyBox, CoreError> + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Takes the write lock (SQLite `BEGIN IMMEDIATE`); commits on Ok,
    /// rolls back on Err.
    Write,
    /// A consistent snapshot; never writes.
    Read,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs `job` in one transaction. Object-safe core of [`StoreExt`].
    async fn run(&self, mode: Mode, job: Job) -> Result<AnyBox, CoreError>;
    /// Checks the database answers (readiness).
    async fn ping(&self) -> Result<(), CoreError>;
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    /// Notified after a write that queued work for the delivery worker (an
    /// outbox row, an operation, a replay) has committed, so that a worker
    /// on this node starts at once instead of at its next poll. Work queued
    /// by another node is found by polling.
    fn worker_wakeup(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// Typed wrappers over [`Store::run`].
pub trait StoreExt: Store {
    fn write<R, F>(&self, f: F) -> impl Future<Output = Result<R, CoreError>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
    {
        let fut = self.run(Mode::Write, erase(f));
        async move { unerase(fut.await?) }
    }

    fn read<R, F>(&self, f: F) -> impl Future<Output = Result<R, CoreError>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
    {
        let fut = self.run(Mode::Read, erase(f));
        async move { unerase(fut.await?) }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

fn erase<R, F>(f: F) -> Job
where
    R: Send + 'static,
    F: FnOnce(&mut dyn StoreTx) -> Result<R, CoreError> + Send + 'static,
{
    Box::new(move |tx| f(tx).map(|r| Box::new(r) as AnyBox))
}

fn unerase<R: 'static>(b: AnyBox) -> Result<R, CoreError> {
    b.downcast::<R>()
        .map(|b| *b)
        .map_err(|_| CoreError::Internal("store returned an unexpected type".into()))
}
