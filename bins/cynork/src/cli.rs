//! Command-line syntax (clap derive). Every command carries an example in its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// cynork: the CyNodeAI command-line client. Talks only to the user API gateway.
#[derive(Debug, Parser)]
#[command(
    name = "cynork",
    version,
    disable_version_flag = true,
    args_override_self = true,
    after_help = "Examples:\n  cynork --config ~/.config/cynork/config.yaml auth login -u admin\n  cynork task create -p \"summarize the README\" --result\n  cynork chat\n\nEnvironment: CYNORK_GATEWAY_URL, CYNORK_TOKEN, XDG_CONFIG_HOME, NO_COLOR.\nExit codes: 0 ok, 1 error, 2 usage, 3 auth, 4 not found, 5 conflict, 6 validation, 7 gateway."
)]
pub struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/cynork/config.yaml or ~/.config/cynork/config.yaml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Output format: table or json.
    #[arg(
        short,
        long,
        global = true,
        default_value = "table",
        value_name = "FORMAT"
    )]
    pub output: String,
    /// Plain styling (no colours) for rendered chat Markdown.
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Suppress non-error chatter on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version.
    #[command(after_help = "Example:\n  cynork version")]
    Version,
    /// Check that the gateway answers (GET /healthz).
    #[command(after_help = "Example:\n  cynork status -o json")]
    Status,
    /// Log in and out, show or refresh the session.
    #[command(subcommand, after_help = "Example:\n  cynork auth login -u admin")]
    Auth(AuthCmd),
    /// Create, inspect, wait for and cancel tasks.
    #[command(
        subcommand,
        after_help = "Example:\n  cynork task create --command 'echo hello' --result"
    )]
    Task(TaskCmd),
    /// List the models the gateway offers.
    #[command(subcommand, after_help = "Example:\n  cynork models list")]
    Models(ModelsCmd),
    /// Chat with the project manager agent (interactive, or one message with -m).
    #[command(
        after_help = "Examples:\n  cynork chat\n  cynork chat -m \"Reply with exactly: OK\" --plain"
    )]
    Chat(ChatArgs),
    /// Run cynork commands in a loop (or one with -c).
    #[command(after_help = "Examples:\n  cynork shell\n  cynork shell -c \"task list -l 5\"")]
    Shell(ShellArgs),
    /// Manage skills (Markdown instructions for agents).
    #[command(
        subcommand,
        after_help = "Example:\n  cynork skills load ./review.md --name review"
    )]
    Skills(SkillsCmd),
    /// Preferences (scoped key/value entries).
    #[command(
        subcommand,
        after_help = "Example:\n  cynork prefs set --scope-type user --key output.summary_style --value '\"concise\"'"
    )]
    Prefs(PrefsCmd),
    /// System settings (admin).
    #[command(
        subcommand,
        after_help = "Example:\n  cynork settings get --key agents.pm.model"
    )]
    Settings(SettingsCmd),
    /// Worker nodes.
    #[command(subcommand, after_help = "Example:\n  cynork nodes list")]
    Nodes(NodesCmd),
    /// Credentials (metadata only; secrets are never shown).
    #[command(subcommand, after_help = "Example:\n  cynork creds list")]
    Creds(CredsCmd),
    /// Audit events.
    #[command(subcommand, after_help = "Example:\n  cynork audit list")]
    Audit(AuditCmd),
    /// Projects.
    #[command(subcommand, after_help = "Example:\n  cynork project list")]
    Project(ProjectCmd),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  cynork completion bash > /etc/bash_completion.d/cynork\n  cynork completion zsh > \"${fpath[1]}/_cynork\"\n  cynork completion fish > ~/.config/fish/completions/cynork.fish"
    )]
    Completion {
        /// bash, zsh or fish.
        shell: clap_complete::Shell,
    },
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Log in; the password is read from stdin or a prompt without echo, never argv.
    #[command(
        after_help = "Examples:\n  cynork auth login -u admin\n  printf 'admin123\\n' | cynork auth login -u admin --password-stdin"
    )]
    Login {
        /// User handle (prompted when absent).
        #[arg(short, long, visible_alias = "handle")]
        user: Option<String>,
        /// Read the whole of stdin as the password (one trailing newline removed).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the tokens (and end the session on the gateway when reachable).
    #[command(after_help = "Example:\n  cynork auth logout")]
    Logout,
    /// Show who the token belongs to.
    #[command(after_help = "Example:\n  cynork auth whoami -o json")]
    Whoami,
    /// Trade the refresh token for a new token pair.
    #[command(after_help = "Example:\n  cynork auth refresh")]
    Refresh,
}

/// `task` subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Create a task (exactly one input: -p/-t, -f, -s, --command, --commands-file).
    #[command(
        after_help = "Examples:\n  cynork task create -p \"write a haiku about queues\" --name haiku\n  cynork task create --command 'uname -a' --command 'id' --result\n  cynork task create -s ./build.sh --attach data.csv -o json"
    )]
    Create(TaskCreateArgs),
    /// List your tasks, newest first.
    #[command(after_help = "Example:\n  cynork task list -l 10 --status completed -o json")]
    List {
        /// Page size (1..200; default 50).
        #[arg(short, long, default_value_t = 50, allow_negative_numbers = true)]
        limit: i64,
        /// Rows to skip.
        #[arg(long)]
        offset: Option<u64>,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Only this status (queued, running, completed, failed, canceled, superseded).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one task (by id or name).
    #[command(after_help = "Example:\n  cynork task get my-task")]
    Get {
        /// Task id or name.
        task: String,
    },
    /// Show a task's result (optionally waiting until it finishes).
    #[command(after_help = "Example:\n  cynork task result my-task -w -o json")]
    Result {
        /// Task id or name.
        task: String,
        /// Wait until the task reaches a terminal status.
        #[arg(short, long)]
        wait: bool,
        /// Polling interval while waiting (minimum 1s).
        #[arg(long, default_value = "2s")]
        wait_interval: String,
    },
    /// Re-show a task's result every interval until it finishes.
    #[command(after_help = "Example:\n  cynork task watch my-task -n 5s")]
    Watch {
        /// Task id or name.
        task: String,
        /// Polling interval (minimum 1s).
        #[arg(short = 'n', long, default_value = "2s")]
        interval: String,
        /// Do not clear the screen between polls.
        #[arg(long)]
        no_clear: bool,
    },
    /// Cancel a task.
    #[command(after_help = "Example:\n  cynork task cancel my-task -y")]
    Cancel {
        /// Task id or name.
        task: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// Print a task's output (stdout to stdout, stderr to stderr).
    #[command(after_help = "Example:\n  cynork task logs my-task --stream stdout -F")]
    Logs {
        /// Task id or name.
        task: String,
        /// stdout, stderr or all.
        #[arg(long, default_value = "all")]
        stream: String,
        /// Keep printing new output until the task finishes.
        #[arg(short = 'F', long)]
        follow: bool,
    },
    /// Task artifacts.
    #[command(
        subcommand,
        after_help = "Example:\n  cynork task artifacts list my-task"
    )]
    Artifacts(ArtifactsCmd),
}

/// `task artifacts` subcommands.
#[derive(Debug, Subcommand)]
pub enum ArtifactsCmd {
    /// List a task's artifacts.
    #[command(after_help = "Example:\n  cynork task artifacts list my-task")]
    List {
        /// Task id or name.
        task: String,
    },
    /// Download one artifact.
    #[command(
        after_help = "Example:\n  cynork task artifacts get my-task 3f0c... --out ./report.md"
    )]
    Get {
        /// Task id or name.
        task: String,
        /// Artifact id.
        artifact_id: String,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// `task create` flags.
#[derive(Debug, Args)]
pub struct TaskCreateArgs {
    /// Task text (prompt mode).
    #[arg(short, long)]
    pub task: Option<String>,
    /// Task text (prompt mode; same as --task).
    #[arg(short, long)]
    pub prompt: Option<String>,
    /// Read the task text from a file (≤ 1 MiB).
    #[arg(short = 'f', long)]
    pub task_file: Option<PathBuf>,
    /// Run a shell script file (≤ 256 KiB).
    #[arg(short, long)]
    pub script: Option<PathBuf>,
    /// Run a shell command (repeatable; run in order).
    #[arg(long = "command")]
    pub commands: Vec<String>,
    /// Run the commands in a file (≤ 64 KiB).
    #[arg(long)]
    pub commands_file: Option<PathBuf>,
    /// Task name (normalized and made unique by the gateway).
    #[arg(long = "name", visible_alias = "task-name")]
    pub name: Option<String>,
    /// Attach a file reference (repeatable; at most 16, each ≤ 10 MiB).
    #[arg(short = 'a', long = "attach", visible_alias = "attachment")]
    pub attach: Vec<String>,
    /// Project id (UUID; default: the active project of `project set`).
    #[arg(long)]
    pub project_id: Option<String>,
    /// Input mode for -p/-t/-f text: prompt, script or commands.
    #[arg(long, default_value = "prompt")]
    pub input_mode: String,
    /// Give a script/commands sandbox access to inference.
    #[arg(long)]
    pub use_inference: bool,
    /// Run through the sandbox agent.
    #[arg(long)]
    pub use_sba: bool,
    /// Wait for the result and print it like `task result`.
    #[arg(long)]
    pub result: bool,
}

/// `models` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// List model ids.
    #[command(after_help = "Example:\n  cynork models list -o json")]
    List,
}

/// `chat` flags.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Print replies as raw text (no Markdown rendering).
    #[arg(long)]
    pub plain: bool,
    /// Send one message, print the reply and exit.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Project scope (sent as OpenAI-Project; default: the active project of
    /// `project set`).
    #[arg(long)]
    pub project_id: Option<String>,
    /// Start a new conversation thread first.
    #[arg(long)]
    pub thread_new: bool,
    /// Model id (default: the project manager agent, cynodeai.pm).
    #[arg(long)]
    pub model: Option<String>,
}

/// `shell` flags.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Run this one command line and exit with its code.
    #[arg(short, long)]
    pub command: Option<String>,
}

/// `skills` subcommands.
#[derive(Debug, Subcommand)]
pub enum SkillsCmd {
    /// List skills you can see.
    #[command(after_help = "Example:\n  cynork skills list")]
    List {
        /// Only this scope (user, group, project, global).
        #[arg(long)]
        scope: Option<String>,
        /// Only this owner id.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Show a skill with its content.
    #[command(after_help = "Example:\n  cynork skills get 3f0c...")]
    Get {
        /// Skill id.
        id: String,
    },
    /// Load a Markdown file as a new skill.
    #[command(after_help = "Example:\n  cynork skills load ./review.md --name review --scope user")]
    Load {
        /// Markdown file.
        file: PathBuf,
        /// Name (default `Untitled skill`).
        #[arg(long)]
        name: Option<String>,
        /// Scope (default user).
        #[arg(long, default_value = "user")]
        scope: String,
    },
    /// Replace a skill's content (and optionally name/scope).
    #[command(after_help = "Example:\n  cynork skills update 3f0c... ./review.md")]
    Update {
        /// Skill id.
        id: String,
        /// Markdown file.
        file: PathBuf,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New scope.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Delete a skill (asks first on a terminal unless -y).
    #[command(after_help = "Example:\n  cynork skills delete 3f0c... -y")]
    Delete {
        /// Skill id.
        id: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
}

/// Scope flags and stray words shared by the `prefs` commands.
#[derive(Debug, Args, Default)]
pub struct PrefArgs {
    /// Scope type: system, user, group, project or task.
    #[arg(long)]
    pub scope_type: Option<String>,
    /// Scope id (defaults to you for user scope).
    #[arg(long)]
    pub scope_id: Option<String>,
    /// Preference key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only change the entry if it still has this version (set, delete; else 409).
    #[arg(long)]
    pub expected_version: Option<i64>,
    /// Words such as `scope type user key output.style value '"x"'` (same as the flags).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub words: Vec<String>,
}

/// `prefs` subcommands.
#[derive(Debug, Subcommand)]
pub enum PrefsCmd {
    /// List preference entries of a scope.
    #[command(after_help = "Example:\n  cynork prefs list --scope-type user")]
    List(PrefArgs),
    /// Show a preference (effective value).
    #[command(
        after_help = "Example:\n  cynork prefs get --scope-type user --key output.summary_style"
    )]
    Get(PrefArgs),
    /// Set a preference (value is JSON).
    #[command(
        after_help = "Example:\n  cynork prefs set --scope-type user --key output.summary_style --value '\"concise\"'"
    )]
    Set {
        /// Scope and key.
        #[command(flatten)]
        scope: PrefArgs,
        /// JSON value.
        #[arg(long)]
        value: Option<String>,
        /// Read the JSON value from a file.
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a preference.
    #[command(
        after_help = "Example:\n  cynork prefs delete --scope-type user --key output.summary_style"
    )]
    Delete(PrefArgs),
    /// Show the merged preferences for a task or project.
    #[command(after_help = "Example:\n  cynork prefs effective --project-id 3f0c...")]
    Effective {
        /// Scope flags.
        #[command(flatten)]
        scope: PrefArgs,
        /// Task id.
        #[arg(long)]
        task_id: Option<String>,
        /// Project id.
        #[arg(long)]
        project_id: Option<String>,
    },
}

/// Words after a resource command (accepted for compatibility).
#[derive(Debug, Args, Default)]
pub struct Words {
    /// Extra words.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub words: Vec<String>,
}

/// `settings` subcommands.
#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// Show settings (one with --key).
    #[command(after_help = "Example:\n  cynork settings get --key agents.pm.model")]
    Get {
        /// Setting key.
        #[arg(long)]
        key: Option<String>,
        /// Words such as `key agents.pm.model`.
        #[command(flatten)]
        words: Words,
    },
    /// Set a setting (value is JSON).
    #[command(
        after_help = "Example:\n  cynork settings set --key agents.pm.model --value '\"qwen3.5:0.8b\"'"
    )]
    Set {
        /// Setting key.
        #[arg(long)]
        key: Option<String>,
        /// JSON value.
        #[arg(long)]
        value: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Words such as `key agents.pm.model value '"x"'`.
        #[command(flatten)]
        words: Words,
    },
}

/// Paging flags.
#[derive(Debug, Args, Default)]
pub struct Paging {
    /// Page size (1..200).
    #[arg(short, long)]
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Extra words (ignored).
    #[command(flatten)]
    pub words: Words,
}

/// `nodes` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodesCmd {
    /// List nodes.
    #[command(after_help = "Example:\n  cynork nodes list")]
    List(Paging),
    /// Show one node.
    #[command(after_help = "Example:\n  cynork nodes get node-1")]
    Get {
        /// Node id.
        id: String,
        /// Extra words (ignored).
        #[command(flatten)]
        words: Words,
    },
}

/// `creds` subcommands.
#[derive(Debug, Subcommand)]
pub enum CredsCmd {
    /// List credentials (metadata only).
    #[command(after_help = "Example:\n  cynork creds list --provider openai")]
    List {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Paging.
        #[command(flatten)]
        paging: Paging,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List audit events.
    #[command(after_help = "Example:\n  cynork audit list --since 2026-01-01T00:00:00Z")]
    List {
        /// Only this resource type.
        #[arg(long)]
        resource_type: Option<String>,
        /// Only this actor.
        #[arg(long)]
        actor_id: Option<String>,
        /// Not before (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Not after (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Paging.
        #[command(flatten)]
        paging: Paging,
    },
}

/// `project` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// List projects.
    #[command(after_help = "Example:\n  cynork project list")]
    List(Paging),
    /// Show one project.
    #[command(after_help = "Example:\n  cynork project get 3f0c...")]
    Get {
        /// Project id or slug.
        id: String,
        /// Extra words (ignored).
        #[command(flatten)]
        words: Words,
    },
    /// Make a project the default of `task create` and `chat` (saved in the config
    /// file; `none` clears it).
    #[command(after_help = "Examples:\n  cynork project set my-project\n  cynork project set none")]
    Set {
        /// Project id or slug (`none` clears).
        id: String,
        /// Extra words (ignored).
        #[command(flatten)]
        words: Words,
    },
}
