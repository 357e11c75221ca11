//! The `confab` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use confab_faces::admin::world::{self, CredentialSpec, MemberSpec, Mode, UserSpec};
use confab_server::config::{Config, DbArgs, ServeArgs};
use confab_server::{demo, startup};
use confab_store::StoreExt;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "confab",
    version,
    about = "A self-hosted group-chat server speaking the Bitrix24, Vibecode, Chert and Linq APIs"
)]
struct Cli {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply world files to the database.
    World {
        #[command(subcommand)]
        command: WorldCommand,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Credentials for the faces.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Chats.
    Chat {
        #[command(subcommand)]
        command: ChatCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Copy a whole SQLite deployment into an empty PostgreSQL database
    /// (every tenant, membership history, events, pending outbox), then
    /// compare both row by row before committing.
    MigrateData {
        /// The SQLite database: `sqlite://PATH`.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: `postgres://USER:PASSWORD@HOST:PORT/DB`.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum WorldCommand {
    /// Apply a world file idempotently (applying it twice changes nothing).
    Apply { file: PathBuf },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a person to a tenant.
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Fixed integer id (next free id when absent).
        #[arg(long)]
        id: Option<i64>,
        /// E.164 number or e-mail.
        #[arg(long)]
        handle: Option<String>,
    },
}

#[derive(Subcommand)]
enum CredentialCommand {
    /// Issue a credential; prints the secret once.
    Create {
        #[arg(long)]
        tenant: String,
        /// bitrix_webhook, bitrix_oauth, vibecode_personal, vibecode_app,
        /// vibecode_session, chert_signing or linq_api_key.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        user: Option<i64>,
        /// App CLIENT_ID.
        #[arg(long)]
        app: Option<String>,
        /// Comma-separated scopes (im,imbot,imopenlines).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Use this secret instead of a generated one.
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        expires_in: Option<i64>,
    },
}

#[derive(Subcommand)]
enum ChatCommand {
    /// Create a chat.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: Option<i64>,
        /// dm, group or open_line.
        #[arg(long, default_value = "group")]
        kind: String,
        /// internal or imessage.
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        owner: Option<i64>,
        /// Pinned line number (iMessage chats).
        #[arg(long)]
        line: Option<String>,
        /// Comma-separated user ids or handles.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print an example configuration file.
    Example,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = cli.db;
    match cli.command {
        Command::Serve(args) => serve(&db, &args).await,
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", Config::example());
            Ok(())
        }
        Command::MigrateData { from, to } => {
            startup::init_logging("warn", confab_server::config::LogFormat::Text);
            let path = confab_server::config::sqlite_path(&from)?;
            if !matches!(
                confab_server::config::parse_database_url(&to)?,
                confab_server::config::Database::Postgres(_)
            ) {
                anyhow::bail!("--to must be a postgres:// URL");
            }
            let report = confab_store::migrate_data::sqlite_to_postgres(&path.to_string_lossy(), &to).await?;
            let total: usize = report.iter().map(|(_, n)| n).sum();
            for (table, n) in &report {
                println!("{table:>18}  {n} rows");
            }
            println!(
                "copied and verified {total} rows from {} into PostgreSQL",
                path.display()
            );
            Ok(())
        }
        other => {
            let config = Config::resolve(&db, &ServeArgs::default())?;
            startup::init_logging("warn", config.log_format);
            let store = startup::open_store(&config).await?;
            match other {
                Command::World {
                    command: WorldCommand::Apply { file },
                } => {
                    let text =
                        std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                    let w = world::parse_toml(&text)
                        .map_err(|e| anyhow::anyhow!("invalid world file {}: {e}", file.display()))?;
                    print_json(store.write(move |tx| world::apply(tx, &w)).await?)
                }
                Command::Tenant {
                    command: TenantCommand::Create { slug, name },
                } => print_json(
                    store
                        .write(move |tx| world::ensure_tenant(tx, &slug, name.as_deref(), Mode::Create))
                        .await?
                        .0,
                ),
                Command::Tenant {
                    command: TenantCommand::List,
                } => print_json(store.read(|tx| tx.tenants()).await?),
                Command::User {
                    command:
                        UserCommand::Add {
                            tenant,
                            name,
                            id,
                            handle,
                        },
                } => {
                    let spec = UserSpec {
                        id,
                        name,
                        kind: None,
                        handle,
                        active: true,
                    };
                    print_json(
                        in_tenant(&store, tenant, move |tx, t| {
                            world::ensure_user(tx, t, &spec, Mode::Create)
                        })
                        .await?
                        .0,
                    )
                }
                Command::Credential {
                    command:
                        CredentialCommand::Create {
                            tenant,
                            kind,
                            user,
                            app,
                            scopes,
                            secret,
                            expires_in,
                        },
                } => {
                    let spec = CredentialSpec {
                        kind,
                        secret,
                        user,
                        app,
                        scopes,
                        expires_at: None,
                        expires_in,
                        label: None,
                    };
                    print_json(
                        in_tenant(&store, tenant, move |tx, t| {
                            world::ensure_credential(tx, t, &spec, Mode::Create)
                        })
                        .await?,
                    )
                }
                Command::Chat {
                    command:
                        ChatCommand::Create {
                            tenant,
                            id,
                            kind,
                            network,
                            title,
                            owner,
                            line,
                            members,
                        },
                } => {
                    let members = members
                        .into_iter()
                        .map(|m| m.parse::<i64>().map(MemberSpec::Id).unwrap_or(MemberSpec::Handle(m)))
                        .collect();
                    let spec = world::ChatSpec {
                        id,
                        uuid: None,
                        kind: Some(kind),
                        network,
                        title,
                        owner,
                        line,
                        chat_key: None,
                        members,
                        crm: vec![],
                    };
                    print_json(
                        in_tenant(&store, tenant, move |tx, t| {
                            world::ensure_chat(tx, t, &spec, Mode::Create)
                        })
                        .await?
                        .0,
                    )
                }
                Command::Serve(_) | Command::Config { .. } | Command::MigrateData { .. } => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

async fn in_tenant<R, F>(store: &std::sync::Arc<dyn confab_store::Store>, slug: String, f: F) -> anyhow::Result<R>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn confab_core::tx::StoreTx, confab_core::TenantId) -> Result<R, confab_core::CoreError>
        + Send
        + 'static,
{
    let missing = format!("tenant {slug:?} not found");
    let r = store
        .write(move |tx| match tx.tenant_by_slug(&slug)? {
            Some(t) => f(tx, t.id).map(Some),
            None => Ok(None),
        })
        .await?;
    r.ok_or_else(|| anyhow::anyhow!(missing))
}

async fn serve(db: &DbArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(db, args)?;
    startup::init_logging(&config.log_level, config.log_format);
    let prepared = startup::prepare(&config).await?;
    let store = prepared.state.store.clone();
    if let Some(path) = &args.world {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read world file {}", path.display()))?;
        let w = world::parse_toml(&text).map_err(|e| anyhow::anyhow!("invalid world file {}: {e}", path.display()))?;
        let applied = store
            .write(move |tx| world::apply(tx, &w))
            .await
            .context("cannot apply the world file")?;
        tracing::info!(
            created = applied.created,
            unchanged = applied.unchanged,
            "world file applied"
        );
    }
    let tls = if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        startup::Tls::Files {
            cert: cert.clone(),
            key: key.clone(),
        }
    } else if args.tls_self_signed {
        let (cert, key) = startup::self_signed(&startup::data_dir(&config))?;
        println!(
            "TLS: self-signed certificate {} (trust it with NODE_EXTRA_CA_CERTS / REQUESTS_CA_BUNDLE / SSL_CERT_FILE)",
            cert.display()
        );
        startup::Tls::Files { cert, key }
    } else {
        startup::Tls::Off
    };
    let scheme = if matches!(tls, startup::Tls::Off) {
        "http"
    } else {
        "https"
    };
    if args.demo {
        let w = demo::world()?;
        store
            .write(move |tx| world::apply(tx, &w))
            .await
            .context("cannot seed the demo world")?;
        let base = format!("{scheme}://{}", config.listen);
        println!("{}", demo::banner(&base, prepared.generated_admin_token.as_deref()));
    } else if let Some(token) = &prepared.generated_admin_token {
        println!("Generated admin token (shown once; store it): {token}");
    }
    let mut delivery = confab_delivery::DeliveryConfig::default();
    if let Some(n) = args.webhook_max_attempts {
        anyhow::ensure!(n >= 1, "--webhook-max-attempts must be at least 1");
        delivery.max_attempts = n;
    }
    if let Some(ms) = args.webhook_retry_base_ms {
        delivery.base_delay = std::time::Duration::from_millis(ms);
    }
    let mut prepared = prepared;
    if let Some(l) = &args.linq_rate_limit {
        let max = if l.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(
                l.parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("--linq-rate-limit must be a number per minute or \"off\""))?,
            )
        };
        let state = prepared
            .state
            .shared_mut()
            .ok_or_else(|| anyhow::anyhow!("the server state is already shared"))?;
        state.pair_limiter = std::sync::Arc::new(confab_faces::limits::WindowLimiter::for_store(
            max,
            std::time::Duration::from_secs(60),
            &state.store,
        ));
    }
    let (stop_worker, stop) = tokio::sync::watch::channel(false);
    let mut worker = startup::spawn_worker_until(&prepared.state, delivery, stop);
    let _trim = startup::spawn_memory_trim();
    let served = startup::serve(&config, prepared, tls).await;
    // Webhook attempts and operations in flight are finished and recorded,
    // not left leased until their lease runs out.
    let _ = stop_worker.send(true);
    if tokio::time::timeout(startup::WORKER_DRAIN, &mut worker).await.is_err() {
        tracing::warn!("the delivery worker did not finish in time; its claims wait for their lease");
        worker.abort();
    }
    served
}
