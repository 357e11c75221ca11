//! SQLite's own page cache, with one of its page numbers moved.
//!
//! When SQLite balances a b-tree it renumbers the new pages into ascending
//! order, and to swap two of them it parks one for a moment under the
//! number of the lock-byte page (`PENDING_BYTE / page_size + 1`: 1,048,577
//! with confab's 1 KiB pages), a page no database ever stores. The default
//! page cache (`pcache1`) remembers the highest number it has held, and the
//! truncate that ends every transaction (`sqlite3PcacheTruncate(dbSize)`)
//! walks every bucket of its hash table whenever that highest number lies
//! more than a table's length past the end of the file — which after such
//! a swap it always does. Concentrated leaves split pages at most commits,
//! so the writer walked its whole 16 MB cache at most commits, finding
//! nothing to drop: 15–17 % of the writer thread, 4.5–5.4 % of the
//! server's CPU (`perf`, BENCHMARKS.md, sessions 7 and 13).
//!
//! This module installs, process-wide and before SQLite initialises, a page
//! cache that forwards every call to the default one but keeps the parked
//! page under key 0 instead. No page has number 0 (pages count from 1), so
//! the key is free, and the cache's highest number stays near the end of
//! the file. The page is parked and moved on within one call of
//! `balance_nonroot`, with no fetch, truncate or other rekey in between
//! that could see the difference; every call that names the parked number
//! is mapped the same way, so the default cache sees a consistent key.
//!
//! If SQLite was initialised before (another library in the process opened
//! a database first), the configuration cannot change any more; confab
//! then runs on the default cache, which is correct, only slower.
//!
//! The mapping assumes SQLite's `PENDING_BYTE` (1 GiB), which only
//! SQLite's test control changes; confab never does.

use rusqlite::ffi;
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// SQLite's `PENDING_BYTE`: the lock-byte page starts at this offset.
const PENDING_BYTE: u32 = 0x4000_0000;

type Pcache = ffi::sqlite3_pcache;
type Page = ffi::sqlite3_pcache_page;

/// The default page cache's methods, kept for the forwarding calls.
struct Pcache1 {
    init: unsafe extern "C" fn(*mut c_void) -> c_int,
    shutdown: unsafe extern "C" fn(*mut c_void),
    create: unsafe extern "C" fn(c_int, c_int, c_int) -> *mut Pcache,
    cachesize: unsafe extern "C" fn(*mut Pcache, c_int),
    pagecount: unsafe extern "C" fn(*mut Pcache) -> c_int,
    fetch: unsafe extern "C" fn(*mut Pcache, c_uint, c_int) -> *mut Page,
    unpin: unsafe extern "C" fn(*mut Pcache, *mut Page, c_int),
    rekey: unsafe extern "C" fn(*mut Pcache, *mut Page, c_uint, c_uint),
    truncate: unsafe extern "C" fn(*mut Pcache, c_uint),
    destroy: unsafe extern "C" fn(*mut Pcache),
    shrink: unsafe extern "C" fn(*mut Pcache),
}

impl Pcache1 {
    /// `None` unless the cache has every method (`pcache1` has).
    fn of(m: &ffi::sqlite3_pcache_methods2) -> Option<Self> {
        Some(Pcache1 {
            init: m.xInit?,
            shutdown: m.xShutdown?,
            create: m.xCreate?,
            cachesize: m.xCachesize?,
            pagecount: m.xPagecount?,
            fetch: m.xFetch?,
            unpin: m.xUnpin?,
            rekey: m.xRekey?,
            truncate: m.xTruncate?,
            destroy: m.xDestroy?,
            shrink: m.xShrink?,
        })
    }
}

static DEFAULT: OnceLock<Pcache1> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// Pages parked under the lock-byte number and kept under key 0 instead.
static PARKED: AtomicU64 = AtomicU64::new(0);

/// One page cache: the default's, and the number its pages are parked at.
struct Cache {
    inner: *mut Pcache,
    parking: c_uint,
}

impl Cache {
    fn key(&self, key: c_uint) -> c_uint {
        if key == self.parking {
            0
        } else {
            key
        }
    }
}

/// Installs the cache unless SQLite is already initialised; returns whether
/// it is in place. Called before the store opens its first connection.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        // SAFETY: `sqlite3_config` before `sqlite3_initialize` is allowed
        // and returns SQLITE_MISUSE afterwards (nothing changed then). The
        // struct SQLite copies out holds function pointers of `pcache1`.
        let installed = unsafe {
            let mut methods: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
            let recorded = ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut methods as *mut _) == ffi::SQLITE_OK
                && Pcache1::of(&methods).is_some_and(|d| DEFAULT.set(d).is_ok());
            if !recorded {
                false
            } else {
                let ours = ffi::sqlite3_pcache_methods2 {
                    xInit: Some(x_init),
                    xShutdown: Some(x_shutdown),
                    xCreate: Some(x_create),
                    xCachesize: Some(x_cachesize),
                    xPagecount: Some(x_pagecount),
                    xFetch: Some(x_fetch),
                    xUnpin: Some(x_unpin),
                    xRekey: Some(x_rekey),
                    xTruncate: Some(x_truncate),
                    xDestroy: Some(x_destroy),
                    xShrink: Some(x_shrink),
                    ..methods
                };
                // SQLite copies the struct.
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &ours as *const _) == ffi::SQLITE_OK
            }
        };
        if installed {
            tracing::debug!("SQLite page cache: the lock-byte page number is kept out of the cache's range");
        } else {
            tracing::warn!(
                "SQLite was initialised before confab could install its page cache; \
                 commits after page splits will walk the whole cache (slower, still correct)"
            );
        }
        installed
    })
}

/// Whether [`install`] succeeded in this process.
#[cfg(test)]
pub(crate) fn installed() -> bool {
    INSTALLED.get().copied().unwrap_or(false)
}

/// Pages parked so far (every `balance_nonroot` swap parks one).
#[cfg(test)]
pub(crate) fn parked() -> u64 {
    PARKED.load(Ordering::Relaxed)
}

fn default() -> &'static Pcache1 {
    match DEFAULT.get() {
        Some(d) => d,
        // Set before these methods are handed to SQLite, never unset.
        None => std::process::abort(),
    }
}

/// The number `balance_nonroot` parks a page at: the lock-byte page's
/// (SQLite's page sizes are powers of two from 512 to 65,536).
fn parking(page_size: c_int) -> c_uint {
    PENDING_BYTE / (page_size.max(512) as u32) + 1
}

/// # Safety
/// `p` is a pointer `x_create` returned and `x_destroy` has not freed.
unsafe fn cache<'a>(p: *mut Pcache) -> &'a Cache {
    &*(p as *const Cache)
}

unsafe extern "C" fn x_init(arg: *mut c_void) -> c_int {
    (default().init)(arg)
}

unsafe extern "C" fn x_shutdown(arg: *mut c_void) {
    (default().shutdown)(arg)
}

unsafe extern "C" fn x_create(sz_page: c_int, sz_extra: c_int, purgeable: c_int) -> *mut Pcache {
    let inner = (default().create)(sz_page, sz_extra, purgeable);
    if inner.is_null() {
        return inner;
    }
    Box::into_raw(Box::new(Cache {
        inner,
        parking: parking(sz_page),
    })) as *mut Pcache
}

unsafe extern "C" fn x_cachesize(p: *mut Pcache, n: c_int) {
    (default().cachesize)(cache(p).inner, n)
}

unsafe extern "C" fn x_pagecount(p: *mut Pcache) -> c_int {
    (default().pagecount)(cache(p).inner)
}

unsafe extern "C" fn x_fetch(p: *mut Pcache, key: c_uint, create: c_int) -> *mut Page {
    let c = cache(p);
    (default().fetch)(c.inner, c.key(key), create)
}

unsafe extern "C" fn x_unpin(p: *mut Pcache, page: *mut Page, discard: c_int) {
    (default().unpin)(cache(p).inner, page, discard)
}

unsafe extern "C" fn x_rekey(p: *mut Pcache, page: *mut Page, old: c_uint, new: c_uint) {
    let c = cache(p);
    if new == c.parking {
        PARKED.fetch_add(1, Ordering::Relaxed);
    }
    (default().rekey)(c.inner, page, c.key(old), c.key(new))
}

unsafe extern "C" fn x_truncate(p: *mut Pcache, limit: c_uint) {
    (default().truncate)(cache(p).inner, limit)
}

unsafe extern "C" fn x_destroy(p: *mut Pcache) {
    let c = Box::from_raw(p as *mut Cache);
    (default().destroy)(c.inner)
}

unsafe extern "C" fn x_shrink(p: *mut Pcache) {
    (default().shrink)(cache(p).inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether to run the test `name` here: in a process of its own, where
    /// nothing initialised SQLite before the cache is installed. Under
    /// plain `cargo test` the test binary's other tests open SQLite in the
    /// same process, so the test runs itself again as a child of this
    /// binary and passes or fails with it; in the child, it runs here.
    fn in_own_process(name: &str) -> bool {
        const CHILD: &str = "CONFAB_PCACHE_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return true;
        }
        let path = format!("{}::{name}", module_path!().split_once("::").map_or("", |(_, m)| m));
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([path.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "{path} failed in its own process:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed"),
            "{path} did not run in its own process:\n{stdout}\n{stderr}"
        );
        false
    }

    /// Inserting keys in random order into an indexed table splits pages
    /// in the middle of the b-tree, where SQLite swaps page numbers through
    /// the parking number; the data must come out whole and in order.
    #[test]
    fn pages_parked_during_a_balance_keep_the_database_whole() {
        if !in_own_process("pages_parked_during_a_balance_keep_the_database_whole") {
            return;
        }
        assert!(
            install(),
            "SQLite was initialised before the page cache could be installed"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let parked_before = parked();
        {
            let mut c = rusqlite::Connection::open(&path).unwrap();
            c.pragma_update(None, "page_size", 1024).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v);")
                .unwrap();
            // A fixed permutation of 0..N (multiplier coprime to N).
            const N: i64 = 20_000;
            for chunk in 0..20 {
                let tx = c.transaction().unwrap();
                for i in chunk * (N / 20)..(chunk + 1) * (N / 20) {
                    let k = (i * 7_919) % N;
                    tx.execute(
                        "INSERT INTO t(k, v) VALUES (?1, ?2)",
                        (k, format!("{:08}-{}", k * 31 % N, "x".repeat(40))),
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
            }
            // Delete a third, again scattered, to balance the other way.
            c.execute("DELETE FROM t WHERE k % 3 = 0", []).unwrap();
        }
        assert!(
            parked() > parked_before,
            "no page was parked at the lock-byte number: the workload no longer swaps pages, \
             or the parking number is computed wrongly"
        );
        let c = rusqlite::Connection::open(&path).unwrap();
        let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let (n, sum): (i64, i64) = c
            .query_row("SELECT count(*), sum(k) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        let expected: Vec<i64> = (0..20_000).filter(|k| k % 3 != 0).collect();
        assert_eq!(n, expected.len() as i64);
        assert_eq!(sum, expected.iter().sum::<i64>());
        // Through the index, in its order.
        let mut s = c.prepare("SELECT v FROM t INDEXED BY t_v ORDER BY v").unwrap();
        let vs: Vec<String> = s.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(vs.len(), expected.len());
        assert!(vs.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_store_opens_on_this_cache() {
        if !in_own_process("a_store_opens_on_this_cache") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let _store = crate::sqlite::SqliteStore::open(dir.path().join("s.db")).unwrap();
        assert!(installed(), "the store opened on SQLite's default page cache");
    }

    #[test]
    fn the_parking_number_is_the_lock_byte_page() {
        let c = Cache {
            inner: std::ptr::null_mut(),
            parking: parking(1024),
        };
        assert_eq!(c.parking, 1_048_577);
        assert_eq!(parking(4096), 262_145);
        assert_eq!(c.key(1_048_577), 0);
        assert_eq!(c.key(1_048_576), 1_048_576);
        assert_eq!(c.key(1), 1);
    }
}
