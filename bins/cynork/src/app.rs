//! Running one command line: parse, load the config, dispatch.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use clap::Parser;
use cynode_client::gateway::{GatewayClient, GatewayClientConfig};

use crate::cli::{Cli, Command};
use crate::config::{self, ConfigFile};
use crate::error::{CliError, CliResult, code};
use crate::{cmd, util};

/// Everything a command needs: the resolved config, the output mode and styling.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// Resolved config path (`None` when no home directory is known).
    pub config_path: Option<PathBuf>,
    /// Values from the file.
    pub file: ConfigFile,
    /// Effective gateway URL (file, then `CYNORK_GATEWAY_URL`).
    pub gateway_url: String,
    /// Effective access token (`CYNORK_TOKEN`, then the file).
    pub token: String,
    /// `-o json`.
    pub json: bool,
    /// `--no-color` (or `NO_COLOR`).
    pub no_color: bool,
    /// `-q`.
    pub quiet: bool,
}

impl Ctx {
    /// A client with the token (if any).
    pub fn client(&self) -> CliResult<GatewayClient> {
        GatewayClient::with_config(GatewayClientConfig {
            base_url: self.gateway_url.clone(),
            token: Some(self.token.clone()),
            user_agent: format!("cynork/{}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
        .map_err(|e| CliError::usage(e.to_string()))
    }

    /// A client for an authenticated route: fails with exit 3 when no token is set.
    pub fn authed(&self) -> CliResult<GatewayClient> {
        if self.token.trim().is_empty() {
            return Err(CliError::not_logged_in());
        }
        self.client()
    }

    /// Stores a new token pair in the file (file values plus the new tokens).
    pub fn save_tokens(&mut self, token: &str, refresh: &str) -> CliResult {
        self.file.token = token.into();
        self.file.refresh_token = refresh.into();
        self.token = token.into();
        config::save(self.config_path.as_deref(), &self.file)
    }

    /// Whether colour may be used on stdout.
    pub fn color_stdout(&self) -> bool {
        !self.no_color && util::color_allowed() && util::stdout_tty()
    }

    /// Prints chatter on stderr unless `-q`.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// A boxed command future (commands can run other commands: shell, chat).
pub type BoxFut = Pin<Box<dyn Future<Output = CliResult> + 'static>>;

/// Runs one full command line (`argv[0]` is the program name).
pub fn run(argv: Vec<String>) -> BoxFut {
    Box::pin(async move {
        let cli = match Cli::try_parse_from(&argv) {
            Ok(c) => c,
            Err(e) => {
                use clap::error::ErrorKind as K;
                let ok = matches!(
                    e.kind(),
                    K::DisplayHelp
                        | K::DisplayVersion
                        | K::DisplayHelpOnMissingArgumentOrSubcommand
                );
                let _ = e.print();
                return if ok {
                    Ok(())
                } else {
                    Err(CliError::new(code::USAGE, String::new()))
                };
            }
        };
        let Some(command) = cli.command else {
            let mut c = <Cli as clap::CommandFactory>::command();
            let _ = c.print_help();
            return Ok(());
        };
        let config_path = config::resolve_path(cli.config.as_deref());
        let file = config::load(config_path.as_deref())?;
        let json = match cli.output.as_str() {
            "table" => false,
            "json" => true,
            _ => return Err(CliError::usage("output must be table or json")),
        };
        let mut gateway_url = file.gateway_url.clone();
        if let Ok(v) = std::env::var("CYNORK_GATEWAY_URL")
            && !v.trim().is_empty()
        {
            gateway_url = v;
        }
        if gateway_url.trim().is_empty() {
            gateway_url = config::DEFAULT_GATEWAY_URL.into();
        }
        let token = std::env::var("CYNORK_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| file.token.clone());
        let mut ctx = Ctx {
            config_path,
            file,
            gateway_url,
            token,
            json,
            no_color: cli.no_color || !util::color_allowed(),
            quiet: cli.quiet,
        };
        dispatch(&mut ctx, command).await
    })
}

async fn dispatch(ctx: &mut Ctx, command: Command) -> CliResult {
    match command {
        Command::Version => {
            cmd::misc::version(ctx);
            Ok(())
        }
        Command::Status => cmd::misc::status(ctx).await,
        Command::Auth(c) => cmd::auth::run(ctx, c).await,
        Command::Task(c) => cmd::task::run(ctx, c).await,
        Command::Models(c) => cmd::misc::models(ctx, c).await,
        Command::Chat(a) => cmd::chat::run(ctx, a).await,
        Command::Shell(a) => cmd::shell::run(ctx, a).await,
        Command::Skills(c) => cmd::skills::run(ctx, c).await,
        Command::Prefs(c) => cmd::resources::prefs(ctx, c).await,
        Command::Settings(c) => cmd::resources::settings(ctx, c).await,
        Command::Nodes(c) => cmd::resources::nodes(ctx, c).await,
        Command::Creds(c) => cmd::resources::creds(ctx, c).await,
        Command::Audit(c) => cmd::resources::audit(ctx, c).await,
        Command::Project(c) => cmd::resources::project(ctx, c).await,
        Command::Completion { shell } => {
            let mut c = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut c, "cynork", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Prints an error the contract's way: `Error: <message>` on one stderr line.
pub fn report(e: &CliError) {
    if e.message.is_empty() {
        return;
    }
    let msg = e.message.replace('\n', " ");
    if util::stderr_tty() && util::color_allowed() {
        eprintln!("\x1b[31mError:\x1b[0m {msg}");
    } else {
        eprintln!("Error: {msg}");
    }
}

/// Runs a command line inside a session (shell, chat) and prints its error, if any;
/// returns the exit code.
pub async fn run_nested(argv: Vec<String>) -> i32 {
    match run(argv).await {
        Ok(()) => code::OK,
        Err(e) => {
            report(&e);
            e.code
        }
    }
}
