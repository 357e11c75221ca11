//! The PostgreSQL connection pool: each connection lives on a thread of
//! its own (a *lane*) with a single-threaded tokio runtime that drives both
//! the connection's socket and the jobs run on it.
//!
//! Core rules are synchronous, so a job cannot run on the server's async
//! workers. Before lanes, a job ran on a blocking thread and drove its
//! statements with `Handle::block_on`, while the connection's socket was
//! driven by the server's runtime: every round trip handed the request to a
//! runtime worker and the answer back, waking two threads. On a lane the
//! job's thread writes the request and waits on the socket itself, so a
//! round trip wakes nobody but the lane. (Measured in BENCHMARKS.md,
//! session 11.)
//!
//! A job goes to the lane that went idle last (its connection is the
//! likeliest to be warm), to a new lane if none is idle and the pool is not
//! full, or else waits in a queue that lanes take from as they finish. A
//! lane opens its connection at its first job and opens a new one when the
//! old one has closed or may be unusable.

use super::pg_err;
use crate::sql::dollar_placeholders;
use confab_core::CoreError;
use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_postgres::{Client, Statement};

/// One open connection of a lane, with its prepared statements.
pub(crate) struct Session {
    pub(crate) client: Client,
    /// By the SQL text as the store writes it (`?` placeholders).
    statements: HashMap<Box<str>, Statement, FxBuildHasher>,
    /// Set when the connection may be left in an unknown state (a rollback
    /// that failed): the lane closes it after the job.
    pub(crate) broken: bool,
}

impl Session {
    /// `sql` prepared on this connection: from the cache, or prepared now
    /// (one round trip, the first time on each connection).
    pub(crate) fn statement(&mut self, rt: &Runtime, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = rt.block_on(self.client.prepare(&dollar_placeholders(sql)))?;
        self.statements.insert(sql.into(), st.clone());
        Ok(st)
    }
}

/// How lanes open their connections.
pub(crate) struct Connector {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: super::tls::Tls,
    /// How long opening a connection may take in all: the driver's own
    /// `connect_timeout` bounds only the TCP connect, not TLS or the
    /// startup and authentication exchange behind it.
    pub(crate) timeout: Duration,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Driver(tokio_postgres::Error),
    TimedOut(Duration),
}

impl ConnectError {
    /// With its causes: "error connecting to server: Connection refused".
    pub(crate) fn describe(&self) -> String {
        match self {
            ConnectError::Driver(e) => super::chain(e),
            ConnectError::TimedOut(d) => format!("no connection within {d:?}"),
        }
    }

    fn into_core(self) -> CoreError {
        match self {
            ConnectError::Driver(e) => pg_err(e),
            ConnectError::TimedOut(d) => {
                CoreError::Unavailable(format!("PostgreSQL: opening a connection took longer than {d:?}"))
            }
        }
    }
}

impl Connector {
    /// A connection, opened within the timeout, and the future that drives
    /// its socket (which the caller spawns).
    pub(crate) async fn open(
        &self,
    ) -> Result<
        (
            Client,
            impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
        ),
        ConnectError,
    > {
        tokio::time::timeout(self.timeout, self.config.connect(self.tls.clone()))
            .await
            .map_err(|_| ConnectError::TimedOut(self.timeout))?
            .map_err(ConnectError::Driver)
    }

    /// A connection whose socket is driven by the current runtime.
    pub(crate) async fn connect(&self) -> Result<Client, ConnectError> {
        let (client, connection) = self.open().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// What a lane hands a job: its runtime and its connection, or why it has
/// none. The job gives back the sending of its answer, which the lane does
/// once it is ready for the next job: a requester that sends another job
/// as soon as it has the answer finds the lane idle, rather than opening
/// another connection.
type Work = Box<dyn FnOnce(Result<(&Runtime, &mut Session), CoreError>) -> Reply + Send>;
type Reply = Box<dyn FnOnce() + Send>;

struct Task {
    work: Work,
    /// When it was pushed (for the pool-wait histogram).
    queued: std::time::Instant,
    /// Set by whichever comes first: a lane taking the task, or its
    /// requester giving up waiting for one.
    claimed: Arc<AtomicBool>,
}

struct State {
    /// Tasks no lane was free for, oldest first. Empty while a lane is idle.
    queue: VecDeque<Task>,
    /// Idle lanes, the one that went idle last at the end.
    idle: Vec<usize>,
    /// A task handed to an idle lane, by lane.
    slots: Vec<Option<Task>>,
    /// Lanes started so far (they run until the pool is dropped and its
    /// queue is drained).
    lanes: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Each lane waits on its own, so that a job wakes exactly the lane it
    /// was handed to.
    wake: Box<[Condvar]>,
    connector: Connector,
    /// Set by a test to make this pool's next idle check panic.
    #[cfg(test)]
    panic_in_idle_check: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing runs under the lock that could panic half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next task of lane `id`, waiting for one, and whether the lane
    /// had to wait; `None` once the pool is dropped and nothing is left to
    /// do.
    fn next(&self, id: usize) -> Option<(Task, bool)> {
        let mut st = self.lock();
        let mut waited = false;
        loop {
            if let Some(t) = st.slots[id].take() {
                return Some((t, waited));
            }
            if let Some(t) = st.queue.pop_front() {
                return Some((t, waited));
            }
            if st.closed {
                return None;
            }
            if !st.idle.contains(&id) {
                st.idle.push(id);
            }
            waited = true;
            st = self.wake[id].wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lane `id` is about to be free: it takes the next job pushed, if none
    /// is waiting for it already.
    fn ready(&self, id: usize) {
        let mut st = self.lock();
        if st.queue.is_empty() && st.slots[id].is_none() && !st.idle.contains(&id) {
            st.idle.push(id);
        }
    }
}

/// The pool: at most `size` lanes.
pub(crate) struct Lanes {
    shared: Arc<Shared>,
}

impl Lanes {
    pub(crate) fn new(size: usize, connector: Connector) -> Lanes {
        let size = size.max(1);
        Lanes {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    idle: Vec::with_capacity(size),
                    slots: (0..size).map(|_| None).collect(),
                    lanes: 0,
                    closed: false,
                }),
                wake: (0..size).map(|_| Condvar::new()).collect(),
                connector,
                #[cfg(test)]
                panic_in_idle_check: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `f` on a lane with its connection, and gives its answer. Fails
    /// as "unavailable" if no lane takes it within `wait`, or if the lane
    /// cannot connect; once a lane has taken it, it runs to the end. A job
    /// whose requester stops waiting (timed out, or dropped before a lane
    /// took it: a client that went away) is never run.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        wait: Duration,
        f: impl FnOnce(&Runtime, &mut Session) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, CoreError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let claimed = Arc::new(AtomicBool::new(false));
        let _given_up_when_dropped = GiveUp(claimed.clone());
        let task = Task {
            queued: std::time::Instant::now(),
            claimed: claimed.clone(),
            work: Box::new(move |lane| {
                let out = lane.and_then(|(rt, session)| f(rt, session));
                Box::new(move || {
                    let _ = tx.send(out);
                })
            }),
        };
        self.push(task)?;
        let ended = |_| CoreError::Unavailable("PostgreSQL connection pool: the job ended without an answer".into());
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(out) => out.map_err(ended)?,
            Err(_) if !claimed.swap(true, Ordering::AcqRel) => {
                crate::stats::PG_POOL_WAIT.observe(wait.as_secs_f64());
                Err(CoreError::Unavailable(format!(
                    "PostgreSQL connection pool: no connection free within {wait:?}"
                )))
            }
            // A lane took it just now: it runs to the end.
            Err(_) => rx.await.map_err(ended)?,
        }
    }

    /// Makes the next idle check of this pool's lanes panic (a test's way
    /// to reach a panic outside a job).
    #[cfg(test)]
    pub(crate) fn panic_in_next_idle_check(&self) {
        self.shared.panic_in_idle_check.store(true, Ordering::Release);
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.shared.connector
    }

    fn push(&self, task: Task) -> Result<(), CoreError> {
        let mut st = self.shared.lock();
        if st.closed {
            return Err(CoreError::Unavailable("PostgreSQL connection pool: closed".into()));
        }
        // Tasks given up while queued are dropped here rather than kept
        // until a lane comes to them (they are the oldest, at the front).
        while st.queue.front().is_some_and(|t| t.claimed.load(Ordering::Acquire)) {
            st.queue.pop_front();
        }
        if let Some(id) = st.idle.pop() {
            st.slots[id] = Some(task);
            drop(st);
            self.shared.wake[id].notify_one();
            return Ok(());
        }
        if st.lanes < st.slots.len() {
            // The lane's number is taken under the lock, the thread started
            // outside it: starting a thread takes long enough to hold up
            // every other job's push.
            let id = st.lanes;
            st.lanes += 1;
            drop(st);
            let shared = self.shared.clone();
            let started = std::thread::Builder::new()
                .name(format!("confab-pg-{id}"))
                .spawn(move || lane(&shared, id, task));
            if let Err(e) = started {
                // The task went with the closure: its requester hears that
                // the thread ended. A later push may start this lane again,
                // unless another lane started meanwhile: then its number
                // stays unused and the pool is one lane smaller.
                tracing::error!(error = %e, "cannot start a PostgreSQL connection thread");
                let mut st = self.shared.lock();
                if st.lanes == id + 1 {
                    st.lanes = id;
                }
            }
            return Ok(());
        }
        st.queue.push_back(task);
        Ok(())
    }
}

/// Claims a task for its requester when the requester stops waiting, so
/// that no lane runs it afterwards (harmless once a lane has claimed it).
struct GiveUp(Arc<AtomicBool>);

impl Drop for GiveUp {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        for cv in self.shared.wake.iter() {
            cv.notify_all();
        }
    }
}

/// A lane: runs tasks until the pool is dropped. A job's own panic is
/// caught around it; one anywhere else in the lane (opening a connection,
/// say) fails the task at hand ("no answer") and the lane starts over with
/// a new runtime and connection, so the pool does not shrink for good.
fn lane(shared: &Shared, id: usize, first: Task) {
    let mut first = Some(first);
    while std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(shared, id, first.take()))).is_err() {
        tracing::error!(lane = id, "a PostgreSQL connection thread panicked; it starts over");
    }
}

fn serve(shared: &Shared, id: usize, first: Option<Task>) {
    let mut rt: Option<Runtime> = None;
    let mut session: Option<Session> = None;
    let mut task = first.map(|t| (t, false));
    // Whether the lane waited for work since it last ran a job (a task
    // skipped below does not count as work).
    let mut idle = false;
    loop {
        let Some((t, waited)) = task.take().or_else(|| shared.next(id)) else {
            return;
        };
        idle |= waited;
        if t.claimed.swap(true, Ordering::AcqRel) {
            continue; // its requester stopped waiting
        }
        crate::stats::PG_POOL_WAIT.observe(t.queued.elapsed().as_secs_f64());
        let reply = work_on(shared, &mut rt, &mut session, std::mem::take(&mut idle), t.work);
        shared.ready(id);
        if let Some(reply) = reply {
            reply();
        }
    }
}

/// Runs `work` with this lane's runtime and connection, opening them if
/// need be (or with why they cannot be); its reply, unless it panicked.
fn work_on(
    shared: &Shared,
    rt: &mut Option<Runtime>,
    session: &mut Option<Session>,
    waited: bool,
    work: Work,
) -> Option<Reply> {
    let runtime = match rt {
        Some(r) => r,
        None => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => rt.insert(r),
            Err(e) => {
                return Some(work(Err(CoreError::Unavailable(format!(
                    "PostgreSQL connection thread: cannot start its runtime: {e}"
                )))))
            }
        },
    };
    if let Some(s) = session.as_ref().filter(|_| waited) {
        #[cfg(test)]
        if shared.panic_in_idle_check.swap(false, Ordering::AcqRel) {
            panic!("a panic injected by a test");
        }
        // The connection was not driven while the lane waited: let it read
        // what the server sent meanwhile (a server that closed it on
        // shutdown, say), so a closed one is replaced before use. The first
        // yield lets the runtime poll the socket, the second lets the
        // connection's task run.
        runtime.block_on(async {
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        });
        if s.client.is_closed() {
            *session = None;
        }
    }
    let s = match session {
        Some(s) => s,
        None => match runtime.block_on(shared.connector.connect()) {
            Ok(client) => session.insert(Session {
                client,
                statements: HashMap::default(),
                broken: false,
            }),
            Err(e) => return Some(work(Err(e.into_core()))),
        },
    };
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(Ok((runtime, &mut *s)))));
    if ran.is_err() || s.broken || s.client.is_closed() {
        *session = None;
        // The connection's task, which holds its socket, runs only inside
        // this runtime: dropped with it, the socket closes now (with any
        // transaction left open on it) instead of at this lane's next job.
        *rt = None;
    }
    ran.ok()
}
