//! Configuration: flags, then `CONFAB_*` environment, then a TOML file
//! (`--config`), then defaults. One struct, every field documented; `confab config example`
//! prints the file form generated from the same defaults.

use anyhow::{bail, Context};
use clap::Args;
use confab_faces::limits::BucketConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://confab-data/confab.db";

/// Options every subcommand that touches the database understands.
#[derive(Debug, Clone, Default, Args)]
pub struct DbArgs {
    /// Database: `sqlite://PATH` (default `sqlite://confab-data/confab.db`,
    /// created on first start) or `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (`?sslmode=disable|prefer|require|verify-full&sslrootcert=PATH`).
    #[arg(long, env = "CONFAB_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// PostgreSQL: most connections this node opens (default 16).
    #[arg(long, env = "CONFAB_DB_POOL_SIZE", global = true)]
    pub db_pool_size: Option<usize>,
    /// PostgreSQL: `statement_timeout` in milliseconds (default 5000); a
    /// statement running longer fails the request as "unavailable".
    #[arg(long, env = "CONFAB_DB_STATEMENT_TIMEOUT_MS", global = true)]
    pub db_statement_timeout_ms: Option<u64>,
    /// Optional TOML configuration file (keys as in `confab config example`).
    #[arg(long, env = "CONFAB_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// `confab serve` options.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONFAB_LISTEN")]
    pub listen: Option<String>,
    /// Bearer token for the admin API. When none is configured, one is
    /// generated on first start, stored (hashed) and printed once.
    #[arg(long, env = "CONFAB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Log level or filter (`info`, `debug`, `confab=debug,tower_http=info`).
    #[arg(long, env = "CONFAB_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "CONFAB_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Seconds before a request is answered with a timeout error.
    #[arg(long, env = "CONFAB_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CONFAB_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Seconds a client has to send its request line and headers before
    /// the connection is closed (slow clients hold nothing longer).
    #[arg(long, env = "CONFAB_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// The Bitrix portal rate limit, shared with Vibecode: `DRAIN/BURST`
    /// (requests per second drained / bucket size; Bitrix default `2/50`)
    /// or `off`.
    #[arg(long, env = "CONFAB_BITRIX_RATE_LIMIT")]
    pub bitrix_rate_limit: Option<String>,
    /// Bitrix `operating` limit: execution seconds per method and
    /// credential over 10 minutes (default 420), or `off`.
    #[arg(long, env = "CONFAB_BITRIX_OPERATING_LIMIT")]
    pub bitrix_operating_limit: Option<String>,
    /// Webhook deliveries: attempts before dead-lettering (Linq: 10).
    #[arg(long, env = "CONFAB_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<i64>,
    /// Webhook deliveries: first retry delay in milliseconds, doubling
    /// each time (default 1500: ten attempts over about 25 minutes).
    #[arg(long, env = "CONFAB_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Linq messages per sender–recipient pair per minute (default 30), or `off`.
    #[arg(long, env = "CONFAB_LINQ_RATE_LIMIT")]
    pub linq_rate_limit: Option<String>,
    /// Serve HTTPS with this PEM certificate (chain) ...
    #[arg(long, env = "CONFAB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// ... and this PEM private key.
    #[arg(long, env = "CONFAB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate for 127.0.0.1, ::1 and
    /// localhost, kept under the data directory (`tls/cert.pem`) and
    /// printed at start so clients can trust it (NODE_EXTRA_CA_CERTS,
    /// REQUESTS_CA_BUNDLE, SSL_CERT_FILE).
    #[arg(long, env = "CONFAB_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Apply this world file (idempotently) before serving.
    #[arg(long, env = "CONFAB_WORLD")]
    pub world: Option<PathBuf>,
    /// Seed the demo world and print its credentials and a curl per face.
    #[arg(long)]
    pub demo: bool,
}

/// The file form; every key optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub db_pool_size: Option<usize>,
    pub db_statement_timeout_ms: Option<u64>,
    pub admin_token: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub request_timeout: Option<u64>,
    pub body_limit: Option<usize>,
    pub header_read_timeout: Option<u64>,
    pub bitrix_rate_limit: Option<String>,
    pub bitrix_operating_limit: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub db_pool_size: usize,
    pub db_statement_timeout_ms: u64,
    pub admin_token: Option<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub request_timeout: u64,
    pub body_limit: usize,
    pub header_read_timeout: u64,
    pub bitrix_rate_limit: Option<BucketConfig>,
    pub bitrix_operating_limit: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn example() -> String {
        let f = FileConfig {
            listen: Some(DEFAULT_LISTEN.into()),
            database_url: Some(DEFAULT_DATABASE_URL.into()),
            db_pool_size: Some(16),
            db_statement_timeout_ms: Some(5000),
            admin_token: None,
            log_level: Some("info".into()),
            log_format: Some("text".into()),
            request_timeout: Some(30),
            body_limit: Some(1024 * 1024),
            header_read_timeout: Some(30),
            bitrix_rate_limit: Some("2/50".into()),
            bitrix_operating_limit: Some("420".into()),
        };
        let body = toml::to_string(&f).unwrap_or_default();
        format!("# confab configuration (all keys optional; flags and CONFAB_* env override)\n# admin_token = \"choose-a-long-random-token\"\n{body}")
    }

    pub fn resolve(db: &DbArgs, serve: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &db.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let log_format = match serve
            .log_format
            .clone()
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log format must be \"text\" or \"json\", got {other:?}"),
        };
        let rate = serve
            .bitrix_rate_limit
            .clone()
            .or(file.bitrix_rate_limit)
            .unwrap_or_else(|| "2/50".into());
        let bitrix_rate_limit = BucketConfig::parse(&rate).map_err(|e| anyhow::anyhow!("--bitrix-rate-limit: {e}"))?;
        let operating = serve
            .bitrix_operating_limit
            .clone()
            .or(file.bitrix_operating_limit)
            .unwrap_or_else(|| "420".into());
        let bitrix_operating_limit = if operating.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(operating.parse::<f64>().ok().filter(|s| *s > 0.0).ok_or_else(|| {
                anyhow::anyhow!(
                    "--bitrix-operating-limit must be a positive number of seconds or \"off\", got {operating:?}"
                )
            })?)
        };
        Ok(Config {
            listen: serve
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            database_url: db
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            db_pool_size: db.db_pool_size.or(file.db_pool_size).unwrap_or(16).max(1),
            db_statement_timeout_ms: db
                .db_statement_timeout_ms
                .or(file.db_statement_timeout_ms)
                .unwrap_or(5000)
                .max(1),
            admin_token: serve.admin_token.clone().or(file.admin_token),
            log_level: serve
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            log_format,
            request_timeout: serve.request_timeout.or(file.request_timeout).unwrap_or(30),
            body_limit: serve.body_limit.or(file.body_limit).unwrap_or(1024 * 1024),
            header_read_timeout: serve.header_read_timeout.or(file.header_read_timeout).unwrap_or(30),
            bitrix_rate_limit,
            bitrix_operating_limit,
        })
    }
}

/// What a database URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// The URL as given (credentials included: never log it).
    Postgres(String),
}

pub fn parse_database_url(url: &str) -> anyhow::Result<Database> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Database::Postgres(url.to_owned()));
    }
    Ok(Database::Sqlite(sqlite_path(url)?))
}

/// Where a `sqlite://` URL points.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        bail!("{url:?} is a PostgreSQL URL, not a SQLite one");
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() {
        bail!("the database URL {url:?} names no file");
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nlog_level = \"debug\"\n").unwrap();
        let db = DbArgs {
            config: Some(file),
            ..Default::default()
        };
        let serve = ServeArgs {
            log_level: Some("warn".into()),
            ..Default::default()
        };
        let c = Config::resolve(&db, &serve).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9999", "file beats default");
        assert_eq!(c.log_level, "warn", "flag beats file");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL, "default");
    }

    #[test]
    fn example_parses_back() {
        let text = Config::example();
        let parsed: FileConfig = toml::from_str(&text).unwrap();
        assert_eq!(parsed.listen.as_deref(), Some(DEFAULT_LISTEN));
    }

    #[test]
    fn database_urls() {
        assert_eq!(sqlite_path("sqlite://a/b.db").unwrap(), PathBuf::from("a/b.db"));
        assert_eq!(sqlite_path("sqlite:///tmp/x.db").unwrap(), PathBuf::from("/tmp/x.db"));
        assert_eq!(
            parse_database_url("postgres://u@h/db").unwrap(),
            Database::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            parse_database_url("sqlite://x.db").unwrap(),
            Database::Sqlite(PathBuf::from("x.db"))
        );
    }
}
