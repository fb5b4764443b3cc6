//! `cynork shell` (cli.md §11): run command lines one by one, or one with `-c`.

use std::io::{BufRead, Write};

use crate::app::{self, Ctx};
use crate::cli::ShellArgs;
use crate::error::CliResult;
use crate::util::{self, split_words};

/// argv prefix carrying the session's global flags.
pub fn base_argv(ctx: &Ctx, forward_output: bool) -> Vec<String> {
    let mut v = vec!["cynork".to_string()];
    if let Some(p) = &ctx.config_path {
        v.push("--config".into());
        v.push(p.display().to_string());
    }
    if forward_output && ctx.json {
        v.push("-o".into());
        v.push("json".into());
    }
    if ctx.no_color {
        v.push("--no-color".into());
    }
    if ctx.quiet {
        v.push("-q".into());
    }
    v
}

/// Runs `cynork shell`.
pub async fn run(ctx: &Ctx, a: ShellArgs) -> CliResult {
    let base = base_argv(ctx, true);
    if let Some(line) = a.command {
        let words = split_words(&line);
        if words.is_empty() {
            return Ok(());
        }
        return app::run(base.into_iter().chain(words).collect()).await;
    }
    let mut editor = if util::stdin_tty() && util::stderr_tty() {
        let tasks = ctx.authed().ok();
        editor::new(tasks)
    } else {
        None
    };
    let identity = if ctx.token.is_empty() {
        "not logged in".to_string()
    } else {
        "logged in".to_string()
    };
    ctx.note(&format!(
        "cynork shell — gateway {} ({identity}). Type a command (e.g. `task list`), `help`, or `exit`.",
        ctx.gateway_url
    ));
    loop {
        let line = match &mut editor {
            Some(ed) => match ed.readline("cynork> ") {
                Ok(l) => l,
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => break,
            },
            None => {
                eprint!("cynork> ");
                let _ = std::io::stderr().flush();
                let mut l = String::new();
                match std::io::stdin().lock().read_line(&mut l) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => l,
                }
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if matches!(line, "exit" | "quit") {
            break;
        }
        let mut words = split_words(line);
        if words.first().is_some_and(|w| w == "cynork") {
            words.remove(0);
        }
        if words.first().is_some_and(|w| w == "help") {
            words[0] = "--help".into();
        }
        app::run_nested(base.iter().cloned().chain(words).collect()).await;
    }
    Ok(())
}

/// A line editor with Tab completion of commands and flags (no history file).
pub mod editor {
    use clap::CommandFactory;
    use cynode_client::gateway::GatewayClient;
    use cynode_core::proto::v1::gateway::TaskListQuery;
    use rustyline::completion::{Completer, Pair};
    use rustyline::{Context, Editor, Helper, Highlighter, Hinter, Validator};

    use crate::cli::Cli;

    /// Completes cynork words from the clap command tree (and task names).
    #[derive(Helper, Highlighter, Hinter, Validator)]
    pub struct CommandCompleter {
        /// Complete chat slash commands instead.
        slash: bool,
        /// Where task names come from (a logged-in client).
        tasks: Option<GatewayClient>,
    }

    /// Whether the word after `before` is a task id/name argument.
    pub fn at_task_position(before: &[&str]) -> bool {
        matches!(
            before,
            ["task", "get" | "result" | "watch" | "cancel" | "logs"]
                | ["task", "artifacts", "list" | "get"]
        )
    }

    /// The caller's newest task names (empty on any failure). Runs on its own thread
    /// and runtime: completion is called from inside the CLI's runtime.
    fn task_names(client: &GatewayClient) -> Vec<String> {
        let client = client.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(3),
                    client.list_tasks(&TaskListQuery {
                        limit: Some(100),
                        ..Default::default()
                    }),
                )
                .await
                .ok()?
                .ok()
            })
        })
        .join()
        .ok()
        .flatten()
        .map(|l| {
            l.tasks
                .into_iter()
                .map(|t| t.task_name)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
    }

    /// Candidates for the word under the cursor, given the words before it.
    pub fn candidates(before: &[&str], word: &str) -> Vec<String> {
        let root = Cli::command();
        let mut cmd = &root;
        for w in before {
            if let Some(sub) = cmd.get_subcommands().find(|s| s.get_name() == *w) {
                cmd = sub;
            }
        }
        let mut out: Vec<String> = Vec::new();
        if word.starts_with('-') {
            for a in cmd.get_arguments().chain(root.get_arguments()) {
                if let Some(l) = a.get_long() {
                    out.push(format!("--{l}"));
                }
            }
        } else {
            out.extend(cmd.get_subcommands().map(|s| s.get_name().to_string()));
            if before.is_empty() {
                out.extend(["exit".to_string(), "quit".to_string(), "help".to_string()]);
            }
        }
        out.retain(|c| c.starts_with(word));
        out.sort();
        out.dedup();
        out
    }

    impl Completer for CommandCompleter {
        type Candidate = Pair;
        fn complete(
            &self,
            line: &str,
            pos: usize,
            _ctx: &Context<'_>,
        ) -> rustyline::Result<(usize, Vec<Pair>)> {
            let head = &line[..pos];
            let start = head.rfind([' ', '\t']).map(|i| i + 1).unwrap_or(0);
            let word = &head[start..];
            let before: Vec<&str> = head[..start].split_whitespace().collect();
            let list = if self.slash {
                if !before.is_empty() {
                    return Ok((pos, Vec::new()));
                }
                super::super::chat::slash_names()
                    .iter()
                    .filter(|n| n.to_lowercase().starts_with(&word.to_lowercase()))
                    .map(|n| n.to_string())
                    .collect()
            } else if at_task_position(&before) && !word.starts_with('-') {
                let mut names = self.tasks.as_ref().map(task_names).unwrap_or_default();
                names.retain(|n| n.starts_with(word));
                names.sort();
                names.dedup();
                names
            } else {
                candidates(&before, word)
            };
            Ok((
                start,
                list.into_iter()
                    .map(|c| Pair {
                        display: c.clone(),
                        replacement: c,
                    })
                    .collect(),
            ))
        }
    }

    /// The editor type.
    pub type LineEditor = Editor<CommandCompleter, rustyline::history::MemHistory>;

    fn build(slash: bool, tasks: Option<GatewayClient>) -> Option<LineEditor> {
        let cfg = rustyline::Config::builder()
            .auto_add_history(true)
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut ed = Editor::with_history(cfg, rustyline::history::MemHistory::new()).ok()?;
        ed.set_helper(Some(CommandCompleter { slash, tasks }));
        Some(ed)
    }

    /// An editor completing cynork commands, flags and (with a client) task names.
    pub fn new(tasks: Option<GatewayClient>) -> Option<LineEditor> {
        build(false, tasks)
    }

    /// An editor completing chat slash commands.
    pub fn slash() -> Option<LineEditor> {
        build(true, None)
    }

    #[cfg(test)]
    mod tests {
        use super::{at_task_position, candidates};

        #[test]
        fn completes_commands_subcommands_and_flags() {
            assert_eq!(candidates(&[], "ta"), vec!["task"]);
            assert!(candidates(&["task"], "re").contains(&"result".to_string()));
            assert!(candidates(&["task", "create"], "--pro").contains(&"--prompt".to_string()));
            assert!(candidates(&["task", "create"], "--pro").contains(&"--project-id".to_string()));
            assert!(candidates(&[], "ex").contains(&"exit".to_string()));
            assert!(at_task_position(&["task", "result"]));
            assert!(at_task_position(&["task", "artifacts", "list"]));
            assert!(!at_task_position(&["task", "create"]));
            assert!(!at_task_position(&["task", "get", "x"]));
        }
    }
}
