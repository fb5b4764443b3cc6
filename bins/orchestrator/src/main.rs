//! The CyNodeAI orchestrator: user gateway, control plane, dispatcher and API egress
//! service over PostgreSQL or SQLite, in one process. `dev` adds one in-process worker.
//! Run `cynode-orchestrator --help`.

mod app;
mod cli;
mod dev;
mod secrets;
mod settings;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::app::Mode;
use crate::cli::{Cli, Command, LogFormat};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.common.log_format, &cli.common.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cynode-orchestrator: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cynode-orchestrator: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cli = cli;
    // Absolute, so the paths printed and stored do not depend on the working directory.
    cli.common.data_dir = std::path::absolute(&cli.common.data_dir)?;
    let common = &cli.common;
    let mode = match &cli.command {
        None | Some(Command::Serve) => Mode::Serve,
        Some(Command::Dev(_)) => Mode::Dev,
    };
    if common.migrate_only {
        return migrate_only(common).await;
    }
    match cli.command {
        Some(Command::Dev(args)) => dev::run(common, &args).await,
        _ => {
            let mut running = app::start(mode, common, app::DispatchOverrides::default()).await?;
            if let Err(e) = running.start_dispatcher() {
                let _ = running.stop(None).await;
                return Err(e);
            }
            running.run_until_signal().await
        }
    }
}

/// `--migrate-only`: open the store and the job queue (which applies the migrations of
/// both) and exit.
async fn migrate_only(common: &cli::Common) -> anyhow::Result<()> {
    secrets::ensure_dir(&common.data_dir)?;
    let db = settings::Database::from_url(common.database_url.as_deref(), &common.data_dir)?;
    let _store = app::open_store(&db).await?;
    let _queue = app::open_queue(&db).await?;
    tracing::info!(database = %db.describe(), "migrations applied");
    println!("migrations applied ({})", db.describe());
    Ok(())
}

fn init_tracing(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("cynode-orchestrator: invalid log filter '{filter}' ({e}); using 'info'");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
