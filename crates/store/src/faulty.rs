//! A store wrapper whose failure can be switched on: how tests (and
//! operators rehearsing an outage) make "the store is unreachable" happen
//! on purpose, to see each face's unavailable error.

use crate::{AnyBox, Job, Mode, Store};
use async_trait::async_trait;
use confab_core::CoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    failing: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            failing: AtomicBool::new(false),
        }
    }
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
    fn check(&self) -> Result<(), CoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(CoreError::Unavailable(
                "database is unreachable (fault injected)".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn run(&self, mode: Mode, job: Job) -> Result<AnyBox, CoreError> {
        self.check()?;
        self.inner.run(mode, job).await
    }
    async fn ping(&self) -> Result<(), CoreError> {
        self.check()?;
        self.inner.ping().await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn worker_wakeup(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.inner.worker_wakeup()
    }
}
