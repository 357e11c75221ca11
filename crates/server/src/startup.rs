//! Opening the store, the admin token, and serving until SIGINT/SIGTERM.

use crate::app::{self, HttpLimits};
use crate::config::{parse_database_url, Config, Database, LogFormat};
use anyhow::Context;
use confab_core::CoreError;
use confab_faces::bitrix::operating::OperatingLimiter;
use confab_faces::common::{hash_secret, random_token};
use confab_faces::limits::PortalLimiter;
use confab_faces::{AppState, Shared};
use confab_store::{PgOptions, PgStore, SqliteStore, Store, StoreExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn init_logging(level: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: escape codes cost time on
        // every request span and clutter files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Opens the configured store: SQLite (a file, created on first start) or
/// PostgreSQL (migrated at start under an advisory lock).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match parse_database_url(&config.database_url)? {
        Database::Sqlite(path) => Ok(Arc::new(SqliteStore::open(&path)?)),
        Database::Postgres(url) => {
            let opts = PgOptions {
                pool_size: config.db_pool_size,
                statement_timeout: Duration::from_millis(config.db_statement_timeout_ms),
                ..PgOptions::default()
            };
            let store = PgStore::open(&url, &opts).await?;
            tracing::info!(target = store.target(), pool = opts.pool_size, "PostgreSQL store open");
            Ok(Arc::new(store))
        }
    }
}

/// The directory confab keeps its own files in (the self-signed
/// certificate): the SQLite file's directory, or `confab-data`.
pub fn data_dir(config: &Config) -> PathBuf {
    match parse_database_url(&config.database_url) {
        Ok(Database::Sqlite(path)) => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
        _ => PathBuf::from("confab-data"),
    }
}

const ADMIN_TOKEN_KEY: &str = "admin_token_hash";

/// The admin token's hash, and the token itself when it was generated now
/// (so the caller prints it, once).
pub async fn admin_token(
    store: &Arc<dyn Store>,
    configured: Option<&str>,
) -> Result<(String, Option<String>), CoreError> {
    if let Some(t) = configured {
        return Ok((hash_secret(t), None));
    }
    store
        .write(|tx| match tx.setting(ADMIN_TOKEN_KEY)? {
            Some(hash) => Ok((hash, None)),
            None => {
                let token = format!("confab_admin_{}", random_token(32));
                let hash = hash_secret(&token);
                tx.set_setting(ADMIN_TOKEN_KEY, &hash)?;
                Ok((hash, Some(token)))
            }
        })
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Hands freed heap back to the operating system every few seconds.
/// glibc's allocator keeps what a burst of connections used (each holds
/// its own buffers) long after they close; trimming lets the server's
/// memory return to its baseline once a load is over.
pub fn spawn_memory_trim() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only releases free memory; it has no
            // preconditions and is safe to call from any thread.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    })
}

/// Starts the delivery worker (webhooks and queued operations).
pub fn spawn_worker(state: &AppState, config: confab_delivery::DeliveryConfig) -> tokio::task::JoinHandle<()> {
    confab_delivery::Worker::new(state.store.clone(), confab_faces::webhook_formats(), config).spawn()
}

/// Starts the delivery worker, which stops when `stop` turns true after
/// finishing the round under way.
pub fn spawn_worker_until(
    state: &AppState,
    config: confab_delivery::DeliveryConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    confab_delivery::Worker::new(state.store.clone(), confab_faces::webhook_formats(), config).spawn_until(stop)
}

/// How long a shutdown waits for the worker's round under way (an HTTP
/// attempt times out after 10 s by default).
pub const WORKER_DRAIN: Duration = Duration::from_secs(15);

pub struct Prepared {
    pub state: AppState,
    pub limits: HttpLimits,
    pub generated_admin_token: Option<String>,
}

pub async fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    let store = open_store(config).await?;
    let (hash, generated) = admin_token(&store, config.admin_token.as_deref())
        .await
        .context("cannot set up the admin token")?;
    Ok(Prepared {
        state: Shared {
            portal_limiter: Arc::new(PortalLimiter::for_store(config.bitrix_rate_limit, &store)),
            operating: Arc::new(OperatingLimiter::new(config.bitrix_operating_limit)),
            ..Shared::new(store, hash)
        }
        .into(),
        limits: HttpLimits {
            request_timeout: Duration::from_secs(config.request_timeout),
            body_limit: config.body_limit,
            header_read_timeout: Duration::from_secs(config.header_read_timeout),
        },
        generated_admin_token: generated,
    })
}

/// Where HTTPS gets its certificate.
#[derive(Debug, Clone)]
pub enum Tls {
    Off,
    Files { cert: PathBuf, key: PathBuf },
}

/// A self-signed certificate for 127.0.0.1, ::1 and localhost under
/// `dir/tls/`, made once and reused (so a client that trusts it keeps
/// trusting it across restarts).
pub fn self_signed(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let tls = dir.join("tls");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&tls).with_context(|| format!("cannot create {}", tls.display()))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).context("cannot generate a self-signed certificate")?;
    std::fs::write(&cert, generated.cert.pem()).with_context(|| format!("cannot write {}", cert.display()))?;
    std::fs::write(&key, generated.key_pair.serialize_pem())
        .with_context(|| format!("cannot write {}", key.display()))?;
    Ok((cert, key))
}

pub async fn serve(config: &Config, prepared: Prepared, tls: Tls) -> anyhow::Result<()> {
    if let Tls::Files { cert, key } = tls {
        return serve_tls(config, prepared, &cert, &key).await;
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = prepared.state.store.backend(), "confab listening");
    eprintln!("confab listening on http://{addr}");
    let header_read_timeout = prepared.limits.header_read_timeout;
    let router = app::build(prepared.state, &prepared.limits);
    serve_http(listener, router, header_read_timeout, shutdown_signal()).await;
    Ok(())
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes, then lets
/// every connection finish the request it is serving. What `axum::serve`
/// does, plus a deadline for the request head: axum's server sets no timer,
/// so hyper's header read timeout never fires there and a client sending
/// its headers a byte at a time could hold a connection forever.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
        while connections.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn serve_tls(config: &Config, prepared: Prepared, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "cannot load the TLS certificate {} / key {}",
                cert.display(),
                key.display()
            )
        })?;
    let listener =
        std::net::TcpListener::bind(&config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = prepared.state.store.backend(), "confab listening (TLS)");
    eprintln!("confab listening on https://{addr} (certificate {})", cert.display());
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        h.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    let header_read_timeout = prepared.limits.header_read_timeout;
    let router = app::build(prepared.state, &prepared.limits);
    let mut server = axum_server::from_tcp_rustls(listener, tls).handle(handle);
    // As in `serve_http`: without a timer hyper's header timeout never fires.
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    server.serve(router.into_make_service()).await.context("server error")?;
    Ok(())
}
