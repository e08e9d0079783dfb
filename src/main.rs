//! The `topup` command line: `serve` (the default), `migrate`, `schema`, `sandbox`, `admin`.
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
    /// Administration tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli.command.unwrap_or(Command::Serve)).await {
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
            with_database(&config, async |url| {
                let ran = db::migrate(url).await.map_err(|e| e.to_string())?;
                println!("{ran} migration(s) applied");
                Ok(())
            })
            .await
        }
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
            with_database(&config, async |url| {
                db::migrate(url).await.map_err(|e| e.to_string())?;
                let pool = db::pool(url, 2, std::time::Duration::from_secs(10))
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
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Resolves the database like `serve` does, runs `work` against it, then stops a private
/// cluster this process started.
async fn with_database(
    config: &Config,
    work: impl AsyncFnOnce(&str) -> Result<(), String>,
) -> Result<(), String> {
    let database = Database::resolve(config).await.map_err(|e| e.to_string())?;
    let result = work(database.url().expose()).await;
    database.shutdown().await;
    result
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
