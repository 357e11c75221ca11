//! Checkpoints off the writer's path.
//!
//! With SQLite's automatic checkpoint the writer itself copies the WAL back
//! into the database file every 1,000 pages and fsyncs it, and every
//! command waiting in the channel waits with it. Under scattered leaves that
//! was about a third of the writer's time (BENCHMARKS.md, session 4).
//!
//! Here the writer's automatic checkpoint is off. A checkpointer thread with
//! its own connection runs `PRAGMA wal_checkpoint(PASSIVE)` after commits:
//! it copies committed frames into the database file and fsyncs it while the
//! writer goes on appending to the WAL (WAL allows one checkpointer beside
//! one writer). A passive checkpoint alone would never let the WAL start
//! over under steady load (the writer keeps adding frames behind it), so the
//! writer finishes the job itself once the WAL is long and the checkpointer
//! has caught up with most of it: its own passive checkpoint then copies
//! only the last few frames, and its next transaction restarts the WAL from
//! the beginning. Past a hard limit the writer checkpoints whatever the
//! checkpointer's progress, so the WAL stays bounded if the checkpointer
//! falls behind or fails.
//!
//! Durability is SQLite's own: with `synchronous=FULL` (the checkpointer)
//! or `NORMAL` (the writer) a checkpoint fsyncs the WAL before copying and
//! the database after.

use rusqlite::Connection;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// WAL length, in bytes of pages, from which the writer restarts the WAL
/// once the checkpointer has copied most of it: 32,768 frames with the
/// 1 KiB pages of a new database, 8,192 with 4 KiB. Longer spans between
/// restarts let the checkpoint copy a page changed by many leaves once; the
/// restart itself costs a pause of the writer. 32 MiB instead of 8 MiB
/// wrote 10 % fewer bytes per scattered leave and brought 1,000,000 chats
/// from −27 % to about −20 % of 10,000 chats' leave rate, for a few
/// per cent of the concentrated rate (BENCHMARKS.md, session 9).
pub const RESTART_BYTES: i64 = 32 << 20;
/// Frames the writer is willing to copy itself when it restarts the WAL.
const WRITER_COPIES_AT_MOST: i64 = 500;
/// Least time between two checkpoints of the checkpointer while the WAL is
/// shorter than the restart length: each ends with an fsync of the database
/// file, and one after every commit at a low rate only made the WAL's own
/// fsyncs wait behind them. Past that length it runs back to back, so the
/// writer finds it caught up and its own share of the copy stays small.
/// 100 ms rather than 25: a page changed several times within the interval
/// is copied once, so a scattered leave wrote a quarter fewer bytes, and
/// ran 16 % faster with its p99 down by 40 % (BENCHMARKS.md, session 9).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL length past which the writer checkpoints regardless: two and a
/// half restart lengths.
fn hard_frames(restart_frames: i64) -> i64 {
    restart_frames * 5 / 2
}
/// Commits without a fresh report after which the writer checkpoints
/// itself (the checkpointer is stuck or failing).
const STALE_COMMITS: i64 = 200;

/// What the checkpointer last saw, shared with the writer.
#[derive(Default)]
struct Progress {
    /// Bumped by the writer each time it restarts the WAL; a report from
    /// a checkpoint that began in an earlier epoch is stale.
    epoch: AtomicU64,
    reported_epoch: AtomicU64,
    /// Frames in the WAL and frames copied, at the checkpointer's last run.
    log: AtomicI64,
    copied: AtomicI64,
    /// Checkpoints the checkpointer has run.
    runs: AtomicU64,
}

/// The writer's side: pokes the checkpointer after each commit and decides
/// when to restart the WAL.
pub(super) struct Checkpoints {
    progress: Arc<Progress>,
    poke: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Commits since the writer last restarted the WAL.
    commits: i64,
    /// `runs` when the writer last tried to restart the WAL: it tries
    /// again only after news from the checkpointer (which holds the
    /// checkpoint lock while it runs).
    tried_at_run: u64,
    /// [`RESTART_BYTES`] and the hard limit in frames of this database.
    restart_frames: i64,
    hard_frames: i64,
}

impl Checkpoints {
    /// Starts the checkpointer on `conn` (its own connection to the same
    /// database). The writer's connection must have `wal_autocheckpoint=0`.
    pub(super) fn start(conn: Connection) -> std::io::Result<Self> {
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(std::io::Error::other)?;
        let restart_frames = RESTART_BYTES / page_size.max(512);
        let progress = Arc::new(Progress::default());
        let (poke, pokes) = std::sync::mpsc::sync_channel(1);
        let p = progress.clone();
        let thread = std::thread::Builder::new()
            .name("confab-sqlite-ckpt".into())
            .spawn(move || checkpointer_loop(conn, pokes, p, restart_frames))?;
        Ok(Checkpoints {
            progress,
            poke: Some(poke),
            thread: Some(thread),
            commits: 0,
            tried_at_run: u64::MAX,
            restart_frames,
            hard_frames: hard_frames(restart_frames),
        })
    }

    /// Called by the writer after each commit.
    pub(super) fn after_commit(&mut self, writer: &Connection) {
        self.commits += 1;
        if let Some(p) = &self.poke {
            match p.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => self.poke = None,
            }
        }
        let pr = &self.progress;
        let runs = pr.runs.load(Ordering::Acquire);
        let current = pr.reported_epoch.load(Ordering::Acquire) == pr.epoch.load(Ordering::Acquire);
        let (log, copied) = (pr.log.load(Ordering::Acquire), pr.copied.load(Ordering::Acquire));
        let caught_up =
            current && runs != self.tried_at_run && log >= self.restart_frames && log - copied <= WRITER_COPIES_AT_MOST;
        let overdue = if current {
            log >= self.hard_frames
        } else {
            self.commits >= STALE_COMMITS
        };
        if !(caught_up || overdue) {
            return;
        }
        self.tried_at_run = runs;
        let started = std::time::Instant::now();
        let outcome = passive(writer);
        crate::stats::CHECKPOINT_WRITER.observe(started.elapsed().as_secs_f64());
        match outcome {
            // Everything is copied: the next write transaction starts the
            // WAL over (SQLite does that itself when no reader still reads
            // an old part of it).
            Ok((0, log, copied)) if log == copied => {
                self.commits = 0;
                self.tried_at_run = u64::MAX;
                pr.epoch.fetch_add(1, Ordering::AcqRel);
            }
            // The checkpointer holds the checkpoint lock, or a reader still
            // needs old frames: try again after the next commit.
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the writer's WAL checkpoint failed"),
        }
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        drop(self.poke.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (busy, frames in the WAL, frames copied).
fn passive(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

fn checkpointer_loop(conn: Connection, pokes: Receiver<()>, progress: Arc<Progress>, restart_frames: i64) {
    loop {
        // Idle until a commit pokes it; ends when the writer's side drops.
        if pokes.recv().is_err() {
            return;
        }
        let epoch = progress.epoch.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        let mut next = started + CHECKPOINT_EVERY;
        let outcome = passive(&conn);
        crate::stats::CHECKPOINT_BACKGROUND.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok((_, log, copied)) => {
                progress.log.store(log, Ordering::Release);
                progress.copied.store(copied, Ordering::Release);
                progress.reported_epoch.store(epoch, Ordering::Release);
                progress.runs.fetch_add(1, Ordering::AcqRel);
                if log >= restart_frames {
                    next = started;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "background WAL checkpoint failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
}
