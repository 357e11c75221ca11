//! Group commit with the WAL's fsync off the writer's path.
//!
//! `synchronous=FULL` makes SQLite fsync the WAL inside every COMMIT, and
//! the single writer waits for the disk before it can start the next group:
//! under scattered leaves that wait was more than half of the writer's time
//! (BENCHMARKS.md, session 4). Here the writer commits with
//! `synchronous=NORMAL` (the commit's frames are written to the WAL, not yet
//! fsynced) and hands the group's answers to a syncer thread, which fsyncs
//! the WAL and only then answers. The writer meanwhile runs the next group;
//! one fsync covers every group committed before it began.
//!
//! What stays true:
//! - **An acknowledged change is durable**: no command is answered before
//!   an fsync of the WAL that began after its commit returned. That is the
//!   guarantee `synchronous=FULL` gives, reached one fsync later.
//! - **No reader sees a change before it is durable**: a read job takes
//!   its snapshot first, notes the last group that had begun committing by
//!   then (`Durability::visible_bound`), and its answer is held until that
//!   group is synced (`Durability::wait_synced`). Without that, a client
//!   could read a change that a power loss would then take back.
//! - **Order**: groups are answered in commit order, and a later group's
//!   sync covers the earlier ones (one file, fsync flushes all of it).
//! - Checkpoints and the start-over of the WAL are synced by SQLite itself
//!   (`NORMAL` syncs the WAL before a checkpoint and the database after).
//! - **A failed fsync stops the store**: the data may be in the page cache
//!   but not on disk, and retrying the fsync cannot tell (Linux clears the
//!   error). Every command waiting is answered "unavailable", and so is
//!   every later command, read and health check. Like a timeout, that
//!   answer leaves the outcome unknown: the change may have reached the
//!   disk, and the database after a restart has whatever did.

use crate::AnyBox;
use confab_core::CoreError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Reply = tokio::sync::oneshot::Sender<Result<AnyBox, CoreError>>;

/// A committed group waiting for its sync: its number and its answers.
pub(super) struct Committed {
    pub seq: u64,
    pub answers: Vec<(Reply, Result<AnyBox, CoreError>)>,
}

/// Shared by the writer, the syncer and the readers.
#[derive(Default)]
pub(super) struct Durability {
    /// The last group whose COMMIT has begun (set before COMMIT).
    issued: AtomicU64,
    /// The last group known to be on disk.
    synced: Mutex<u64>,
    synced_cv: Condvar,
    failed: AtomicBool,
}

/// Longest a read waits for a sync before it gives up as unavailable.
const READ_WAIT: Duration = Duration::from_secs(10);

impl Durability {
    /// The writer is about to COMMIT group `seq`.
    pub fn issue(&self, seq: u64) {
        self.issued.store(seq, Ordering::SeqCst);
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The last group that may be visible to a read snapshot taken
    /// before this call: anything visible to it began committing earlier.
    pub fn visible_bound(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    /// Waits until group `want` (and so every group before it) is synced.
    pub fn wait_synced(&self, want: u64) -> Result<(), CoreError> {
        let mut synced = self.synced.lock().map_err(|_| poisoned())?;
        let deadline = std::time::Instant::now() + READ_WAIT;
        while *synced < want {
            if self.failed() {
                return Err(stopped());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(CoreError::Unavailable("the SQLite WAL sync is not keeping up".into()));
            }
            synced = self.synced_cv.wait_timeout(synced, left).map_err(|_| poisoned())?.0;
        }
        if self.failed() {
            return Err(stopped());
        }
        Ok(())
    }

    fn mark_synced(&self, seq: u64) {
        if let Ok(mut s) = self.synced.lock() {
            *s = (*s).max(seq);
        }
        self.synced_cv.notify_all();
    }
}

fn poisoned() -> CoreError {
    CoreError::Internal("the durability lock is poisoned".into())
}

pub(super) fn stopped() -> CoreError {
    CoreError::Unavailable("the SQLite store stopped after a failed fsync of its WAL".into())
}

/// Starts the syncer for the database whose file SQLite resolved to
/// `db_file` (symbolic links followed, as SQLite does: its WAL is
/// `<db_file>-wal`). The WAL must exist already (it does once a connection
/// has read the database in WAL mode); it is opened here, and its
/// directory synced once, so a store that cannot sync fails at open rather
/// than at its first write. Groups sent on the returned channel are
/// answered once the WAL is synced.
pub(super) fn start(
    db_file: &std::path::Path,
    durability: Arc<Durability>,
) -> std::io::Result<(Sender<Committed>, std::thread::JoinHandle<()>)> {
    let mut wal = db_file.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    // SQLite keeps no locks on the WAL file itself, so this second
    // descriptor cannot disturb its locking; fdatasync through it flushes
    // what any descriptor wrote.
    let file = std::fs::File::open(&wal)?;
    if let Some(dir) = wal.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("confab-sqlite-sync".into())
        .spawn(move || syncer_loop(wal, file, rx, durability))?;
    Ok((tx, thread))
}

fn syncer_loop(wal: std::path::PathBuf, file: std::fs::File, groups: Receiver<Committed>, durability: Arc<Durability>) {
    while let Ok(first) = groups.recv() {
        let mut batch = vec![first];
        batch.extend(groups.try_iter());
        let last = batch.iter().map(|g| g.seq).max().unwrap_or(0);
        let outcome = if durability.failed() {
            Err(stopped())
        } else {
            let started = std::time::Instant::now();
            let synced = fail_point(&wal).and_then(|()| file.sync_data());
            crate::stats::WAL_SYNC.observe(started.elapsed().as_secs_f64());
            synced.map_err(|e| {
                tracing::error!(error = %e, wal = %wal.display(), "fsync of the SQLite WAL failed; the store stops");
                durability.failed.store(true, Ordering::SeqCst);
                stopped()
            })
        };
        durability.mark_synced(last);
        for group in batch {
            for (reply, answer) in group.answers {
                let _ = reply.send(match &outcome {
                    Ok(()) => answer,
                    Err(e) => Err(e.clone()),
                });
            }
        }
    }
}

/// Unit tests make the next sync fail by creating a file `fail-sync` next
/// to the WAL; outside this crate's unit tests it does nothing.
#[cfg(test)]
fn fail_point(wal: &std::path::Path) -> std::io::Result<()> {
    match wal.parent().map(|d| d.join("fail-sync").exists()) {
        Some(true) => Err(std::io::Error::other("injected fsync failure")),
        _ => Ok(()),
    }
}

#[cfg(not(test))]
fn fail_point(_: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(seq: u64) -> (Committed, tokio::sync::oneshot::Receiver<Result<AnyBox, CoreError>>) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let answers = vec![(reply, Ok(Box::new(seq) as AnyBox))];
        (Committed { seq, answers }, answer)
    }

    #[test]
    fn a_read_waits_for_the_sync_of_what_it_may_have_seen() {
        let d = Arc::new(Durability::default());
        d.issue(1);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let reader = {
            let d = d.clone();
            std::thread::spawn(move || done_tx.send(d.wait_synced(d.visible_bound())).unwrap())
        };
        // Group 1 began committing and is not synced: the read is held.
        assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
        d.mark_synced(1);
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(()));
        reader.join().unwrap();
        // Nothing pending: a read goes straight through.
        assert_eq!(d.wait_synced(d.visible_bound()), Ok(()));
    }

    #[test]
    fn answers_come_after_the_sync_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").unwrap();
        let d = Arc::new(Durability::default());
        let (tx, thread) = start(&db, d.clone()).unwrap();
        let mut answers = Vec::new();
        for seq in 1..=3 {
            d.issue(seq);
            let (g, a) = group(seq);
            tx.send(g).unwrap();
            answers.push(a);
        }
        for (seq, a) in (1..=3u64).zip(answers) {
            let v = a.blocking_recv().unwrap().unwrap();
            assert_eq!(*v.downcast::<u64>().unwrap(), seq);
        }
        assert_eq!(d.wait_synced(d.visible_bound()), Ok(()));
        drop(tx);
        thread.join().unwrap();
    }

    #[test]
    fn a_missing_wal_fails_at_start_not_at_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let err = start(&dir.path().join("x.db"), Arc::new(Durability::default())).err();
        assert_eq!(err.map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
    }

    #[test]
    fn a_failed_sync_answers_unavailable_and_stops_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").unwrap();
        // The next fsync fails, as on a failing disk.
        std::fs::write(dir.path().join("fail-sync"), b"").unwrap();
        let d = Arc::new(Durability::default());
        let (tx, thread) = start(&db, d.clone()).unwrap();
        d.issue(1);
        let (g, a) = group(1);
        tx.send(g).unwrap();
        let err = a.blocking_recv().unwrap().unwrap_err();
        assert_eq!(err, stopped());
        assert!(err.to_string().contains("failed fsync"), "{err}");
        assert!(d.failed());
        // Later groups and reads are refused too, not answered from memory.
        d.issue(2);
        let (g, a) = group(2);
        tx.send(g).unwrap();
        assert_eq!(a.blocking_recv().unwrap().unwrap_err(), stopped());
        assert_eq!(d.wait_synced(d.visible_bound()), Err(stopped()));
        drop(tx);
        thread.join().unwrap();
    }
}
