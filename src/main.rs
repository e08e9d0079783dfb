//! The `topup` command line: `serve` (the default), `migrate`, `schema`, `sandbox`,
//! `reconcile`, `admin`.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "what a command prints is its interface; logs go through tracing"
)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use topup::accounts::{self, Role};
use topup::app::{Application, Database};
use topup::config::Config;
use topup::db;
use topup::reconcile::Reconciler;
use topup::reconcile::bills::{self, RunStatus};

#[derive(Parser)]
#[command(
    name = "topup",
    version,
    about = "Topup: account center and recharge backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve GraphQL and the notify route (the default). With no DATABASE_URL it starts a
    /// private PostgreSQL in $TOPUP_DATA_DIR/pg.
    Serve,
    /// Run pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (what schema.graphql holds).
    Schema,
    /// Run the SwiftPass sandbox on its own (a local simulator of the gateway).
    Sandbox(topup::gateway::sandbox::SandboxArgs),
    /// Settle with the gateway what `serve` settles in the background (unknown orders,
    /// refunds, failed notifies): until Ctrl-C, or one pass with --once. Needs
    /// SWIFTPASS_GATEWAY_URL and the merchant's credentials.
    Reconcile {
        /// One pass over everything due now, then exit (for cron).
        #[arg(long)]
        once: bool,
        #[command(subcommand)]
        command: Option<ReconcileCommand>,
    },
    /// Administration tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum ReconcileCommand {
    /// Compare the merchant bill of a day (GMT+8) with the orders and the ledger, once per
    /// date; print the differences. Exits non-zero when the bill cannot be had.
    Bills {
        /// The bill's day, YYYY-MM-DD.
        #[arg(long)]
        date: chrono::NaiveDate,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user of any role (bootstraps the first admin).
    CreateUser {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Password (same policy as sign-up).
        #[arg(long, env = "TOPUP_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// CUSTOMER, SALES, AGENT or ADMIN.
        #[arg(long, default_value = "ADMIN")]
        role: String,
        /// The agent a SALES or AGENT user belongs to.
        #[arg(long)]
        agent: Option<i64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    // A server running the sandbox says so on every line it logs; a wrong setting is
    // reported by `serve` itself.
    let sandbox = matches!(command, Command::Serve)
        && Config::from_env()
            .ok()
            .is_some_and(|c| c.sandbox_mode().unwrap_or(false));
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let marked = move || Prefixed {
        out: std::io::stdout(),
        json: false,
        on: sandbox,
    };
    match std::env::var("TOPUP_LOG_FORMAT").as_deref().map(str::trim) {
        Err(_) | Ok("" | "text") => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(marked)
            .init(),
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter())
            .with_writer(move || Prefixed {
                json: true,
                ..marked()
            })
            .init(),
        Ok(other) => {
            eprintln!("topup: TOPUP_LOG_FORMAT: {other:?} is neither text nor json");
            return ExitCode::FAILURE;
        }
    }
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("topup: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Schema => {
            print!("{}", topup::graphql::sdl());
            Ok(())
        }
        Command::Serve => serve().await,
        Command::Sandbox(args) => topup::gateway::sandbox::run_standalone(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Migrate => {
            let config = Config::from_env().map_err(|e| e.to_string())?;
            with_database(&config, async |database| {
                let ran = database.migrate().await.map_err(|e| e.to_string())?;
                println!("{ran} migration(s) applied");
                Ok(())
            })
            .await
        }
        Command::Reconcile { once, command } => reconcile(once, command).await,
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    email,
                    password,
                    role,
                    agent,
                },
        } => {
            let role = Role::parse(&role.to_uppercase())
                .ok_or_else(|| format!("unknown role {role:?}: CUSTOMER, SALES, AGENT or ADMIN"))?;
            let config = Config::from_env().map_err(|e| e.to_string())?;
            with_database(&config, async |database| {
                database.migrate().await.map_err(|e| e.to_string())?;
                let url = database.url();
                let pool = topup::app::runtime_pool(&config, url.expose(), 2, None)
                    .map_err(|e| e.to_string())?;
                let user = accounts::create_user(&pool, &email, &password, role, agent)
                    .await
                    .map_err(|e| format!("{} ({})", e.message(), e.code()))?;
                println!("created {} user {} (id {})", user.role, user.email, user.id);
                Ok(())
            })
            .await
        }
    }
}

async fn serve() -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    print!("{}", app.banner());
    #[cfg(feature = "profile")]
    profile_on_signals();
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Built with the `profile` feature and with `TOPUP_PROFILE_DIR` set (by the fan-out
/// benchmark): `SIGUSR1` starts sampling the process, `SIGUSR2` writes where the time went
/// since into `profile-<n>.txt` in that folder (see `topup::profile`).
#[cfg(feature = "profile")]
fn profile_on_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let Some(dir) = std::env::var_os("TOPUP_PROFILE_DIR") else {
        return;
    };
    let (Ok(mut start), Ok(mut stop)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!("profile: cannot listen for SIGUSR1/SIGUSR2");
        return;
    };
    tokio::spawn(async move {
        let mut n = 0;
        while start.recv().await.is_some() {
            let sampler = match topup::profile::Sampler::start() {
                Ok(sampler) => sampler,
                Err(e) => {
                    eprintln!("profile: {e}");
                    continue;
                }
            };
            if stop.recv().await.is_none() {
                return;
            }
            n += 1;
            let path = std::path::Path::new(&dir).join(format!("profile-{n}.txt"));
            let written = sampler
                .report(30)
                .and_then(|text| std::fs::write(&path, text).map_err(|e| e.to_string()));
            if let Err(e) = written {
                eprintln!("profile: {e}");
            }
        }
    });
}

async fn reconcile(once: bool, command: Option<ReconcileCommand>) -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let gateway = topup::app::gateway_client(&config).map_err(|e| e.to_string())?;
    with_database(&config, async |database| {
        database.migrate().await.map_err(|e| e.to_string())?;
        let url = database.url();
        let pool =
            topup::app::runtime_pool(&config, url.expose(), 4, None).map_err(|e| e.to_string())?;
        match command {
            Some(ReconcileCommand::Bills { date }) => bills(&pool, &gateway, date).await,
            None => {
                let reconciler = Reconciler::new(pool, gateway, config.reconcile.clone());
                if once {
                    let pass = reconciler
                        .run_once()
                        .await
                        .map_err(|e| format!("{} ({})", e.message(), e.code()))?;
                    println!(
                        "asked about {} order(s) and {} refund(s), replayed {} notify(s)",
                        pass.orders, pass.refunds, pass.replays
                    );
                } else {
                    let worker = reconciler.start();
                    shutdown_signal().await;
                    worker.shutdown(std::time::Duration::from_secs(30)).await;
                }
                Ok(())
            }
        }
    })
    .await
}

async fn bills(
    pool: &db::Pool,
    gateway: &topup::gateway::swiftpass::Client,
    date: chrono::NaiveDate,
) -> Result<(), String> {
    let fail = |e: topup::error::AppError| format!("{} ({})", e.message(), e.code());
    let run = bills::run(pool, gateway, date).await.map_err(fail)?;
    let amount = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!(
        "bill of {}: {} (attempt {})\n  bill: {} lines, paid {} fen, refunded {} fen\n  ours: {} lines, paid {} fen, refunded {} fen",
        run.bill_date,
        run.status,
        run.attempts,
        amount(run.bill_count),
        amount(run.bill_total),
        amount(run.bill_refund_total),
        amount(run.our_count),
        amount(run.our_total),
        amount(run.our_refund_total),
    );
    if run.status == RunStatus::Failed {
        return Err(format!(
            "the bill of {date} could not be reconciled: {}",
            run.error.unwrap_or_default()
        ));
    }
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let mut after = None;
    let mut count = 0;
    loop {
        let page = bills::differences(&mut conn, run.id, 100, after)
            .await
            .map_err(fail)?;
        for d in &page.items {
            count += 1;
            println!(
                "  {} {}{}: {} (bill {}, ours {})",
                d.kind,
                d.order_no.as_deref().unwrap_or("-"),
                d.refund_no
                    .as_deref()
                    .map(|r| format!(" refund {r}"))
                    .unwrap_or_default(),
                d.detail,
                amount(d.bill_amount),
                amount(d.our_amount),
            );
        }
        match (page.has_next, page.items.last()) {
            (true, Some(last)) => after = Some(last.id),
            _ => break,
        }
    }
    println!("{count} difference(s)");
    Ok(())
}

/// Resolves the database like `serve` does, runs `work` against it, then stops a private
/// cluster this process started.
async fn with_database(
    config: &Config,
    work: impl AsyncFnOnce(&Database) -> Result<(), String>,
) -> Result<(), String> {
    let database = Database::resolve(config).await.map_err(|e| e.to_string())?;
    let result = work(&database).await;
    database.shutdown().await;
    result
}

/// A log writer that marks every line of a server running the sandbox (the formatter hands
/// it one whole line per write): text lines start with `[SANDBOX] `, JSON lines get a
/// `"sandbox":true` field (so they stay JSON).
struct Prefixed<W> {
    out: W,
    json: bool,
    on: bool,
}

impl<W: std::io::Write> std::io::Write for Prefixed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.on {
            self.out.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        match (self.json, buf.split_first()) {
            (true, Some((b'{', rest))) => {
                line.extend_from_slice(b"{\"sandbox\":true,");
                line.extend_from_slice(rest);
            }
            _ => {
                line.extend_from_slice(b"[SANDBOX] ");
                line.extend_from_slice(buf);
            }
        }
        self.out.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
}
