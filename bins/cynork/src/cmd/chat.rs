//! `cynork chat` (cli.md §10): one-shot (`-m`) or interactive, with slash commands
//! and `!` shell escapes; replies stream in as they are generated.

use std::io::{BufRead, Write};
use std::time::Duration;

use cynode_client::gateway::{ChatEvent, GatewayClient};
use cynode_core::proto::v1::gateway::{ChatCompletionRequest, ChatMessage};
use futures::StreamExt;

use super::shell::{base_argv, editor};
use crate::app::{self, Ctx};
use crate::cli::ChatArgs;
use crate::config;
use crate::error::{CliError, CliResult};
use crate::markdown::Renderer;
use crate::util::{self, Progress, split_words};

/// Slash commands and their descriptions, in `/help` order.
const SLASH: &[(&str, &str)] = &[
    ("/help", "show this list"),
    ("/exit", "end the session"),
    ("/quit", "end the session"),
    ("/clear", "clear the screen"),
    ("/version", "print the cynork version"),
    ("/models", "list models (/models list)"),
    ("/model", "show or set the chat model (/model <id>)"),
    (
        "/project",
        "project commands; /project set <id> sets the chat project",
    ),
    ("/task", "task commands (/task list, /task get <id>, ...)"),
    ("/status", "check the gateway"),
    ("/whoami", "show the logged-in user"),
    (
        "/auth",
        "auth commands (/auth login, /auth refresh, /auth logout)",
    ),
    ("/nodes", "node commands (/nodes list)"),
    ("/prefs", "preference commands (/prefs list)"),
    ("/skills", "skill commands (/skills list)"),
    ("/thread", "start a new thread (/thread new)"),
];

/// Names of the slash commands (for completion).
pub fn slash_names() -> Vec<&'static str> {
    SLASH.iter().map(|(n, _)| *n).collect()
}

fn help_text() -> String {
    let mut s = String::new();
    for (name, desc) in SLASH {
        s.push_str(&format!("  {name:<12} {desc}\n"));
    }
    s
}

/// Session state.
struct Session {
    client: GatewayClient,
    model: Option<String>,
    project: Option<String>,
    styled: bool,
}

/// Runs `cynork chat`.
pub async fn run(ctx: &mut Ctx, a: ChatArgs) -> CliResult {
    let client = ctx.authed()?;
    let mut s = Session {
        client,
        model: a.model.filter(|m| !m.trim().is_empty()),
        project: a
            .project_id
            .or_else(|| ctx.file.active_project())
            .filter(|p| !p.trim().is_empty()),
        styled: !a.plain && ctx.color_stdout(),
    };
    if a.thread_new {
        new_thread(&s)
            .await
            .map_err(|e| CliError::general(format!("start new thread: {e}")))?;
    }
    if let Some(m) = a.message {
        return send(&s, &m).await;
    }
    eprintln!("Slash commands: /help for list. ! <cmd> run in shell.");
    eprint!("{}", help_text());
    let mut ed = if util::stdin_tty() && util::stdout_tty() {
        editor::slash()
    } else {
        None
    };
    loop {
        let line = match &mut ed {
            Some(ed) => match ed.readline("> ") {
                Ok(l) => l,
                Err(_) => break, // Ctrl+C, Ctrl+D
            },
            None => {
                eprint!("> ");
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
        if let Some(cmd) = line.strip_prefix('!') {
            shell_escape(cmd.trim()).await;
            continue;
        }
        if line.starts_with('/') {
            match slash(ctx, &mut s, line).await {
                Flow::Exit => break,
                Flow::Continue => continue,
            }
        }
        if let Err(e) = send(&s, line).await {
            app::report(&e);
        }
    }
    Ok(())
}

async fn new_thread(s: &Session) -> Result<(), cynode_client::gateway::GatewayError> {
    let t = s.client.create_thread(s.project.as_deref()).await?;
    eprintln!("New thread started: {}", t.thread_id);
    Ok(())
}

/// Sends one message and streams the reply to stdout.
async fn send(s: &Session, text: &str) -> CliResult {
    let req = ChatCompletionRequest {
        model: s.model.clone(),
        messages: vec![ChatMessage::user(text)],
        stream: true,
    };
    let width = terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .unwrap_or(80);
    let mut out = Renderer::new(std::io::stdout(), s.styled, width);
    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(Duration::from_millis(120));
    let mut waiting = true;
    let open = s.client.chat_stream(&req, s.project.as_deref());
    tokio::pin!(open);
    let mut stream = loop {
        tokio::select! {
            r = &mut open => break r?,
            _ = tick.tick() => progress.update("waiting for reply"),
            _ = tokio::signal::ctrl_c() => { progress.clear(); eprintln!("(interrupted)"); return Ok(()); }
        }
    };
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(ChatEvent::Delta(t))) => {
                    if waiting {
                        progress.clear();
                        waiting = false;
                    }
                    out.push(&t);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    progress.clear();
                    out.finish();
                    return Err(e.into());
                }
                None => break,
            },
            _ = tick.tick(), if waiting => progress.update("waiting for reply"),
            _ = tokio::signal::ctrl_c() => {
                progress.clear();
                out.finish();
                eprintln!("(interrupted)");
                return Ok(());
            }
        }
    }
    progress.clear();
    out.finish();
    Ok(())
}

enum Flow {
    Exit,
    Continue,
}

/// Runs another cynork command in this process, keeping the session alive.
async fn delegate(ctx: &Ctx, args: Vec<String>) {
    let argv = base_argv(ctx, false).into_iter().chain(args).collect();
    app::run_nested(argv).await;
}

async fn slash(ctx: &mut Ctx, s: &mut Session, line: &str) -> Flow {
    let words = split_words(line);
    let Some(first) = words.first() else {
        return Flow::Continue;
    };
    let name = first.to_lowercase();
    let args: Vec<String> = words[1..].to_vec();
    match name.as_str() {
        "/exit" | "/quit" => return Flow::Exit,
        "/help" => eprint!("{}", help_text()),
        "/clear" => util::out("\x1b[H\x1b[2J"),
        "/version" => util::outln(&format!("cynork {}", super::misc::VERSION)),
        "/models" => {
            let args = if args.is_empty() {
                vec!["list".to_string()]
            } else {
                args
            };
            delegate(ctx, [vec!["models".into()], args].concat()).await;
        }
        "/model" => match args.first() {
            None => match &s.model {
                None => eprintln!("model: (default)"),
                Some(m) => eprintln!("model: {m}"),
            },
            Some(m) => {
                s.model = Some(m.clone());
                eprintln!("model set to: {m}");
            }
        },
        "/project" => {
            if args.is_empty() {
                match &s.project {
                    None => eprintln!("project: (none)"),
                    Some(p) => eprintln!("project: {p}"),
                }
            } else {
                delegate(ctx, [vec!["project".into()], args.clone()].concat()).await;
                if args[0] == "set" {
                    let id = args.get(1).cloned().unwrap_or_default();
                    if id.is_empty() || id == "none" {
                        s.project = None;
                    } else {
                        s.project = Some(id.clone());
                    }
                    eprintln!("project set to: {id}");
                }
            }
        }
        "/task" => {
            // `/task create <free text>`: the rest of the line is the prompt.
            let args = if args.first().is_some_and(|a| a == "create")
                && args.get(1).is_some_and(|a| !a.starts_with('-'))
            {
                let text = line
                    .splitn(3, char::is_whitespace)
                    .nth(2)
                    .map(|r| r.trim_start().strip_prefix("create").unwrap_or(r).trim())
                    .unwrap_or_default()
                    .to_string();
                vec!["create".into(), "-p".into(), text]
            } else {
                args
            };
            delegate(ctx, [vec!["task".into()], args].concat()).await;
        }
        "/status" => delegate(ctx, vec!["status".into()]).await,
        "/whoami" => delegate(ctx, vec!["auth".into(), "whoami".into()]).await,
        "/auth" => {
            delegate(ctx, [vec!["auth".into()], args.clone()].concat()).await;
            match args.first().map(String::as_str) {
                Some("login" | "refresh") => {
                    if let Ok(file) = config::load(ctx.config_path.as_deref()) {
                        ctx.file = file;
                        if std::env::var("CYNORK_TOKEN").map_or(true, |t| t.trim().is_empty()) {
                            ctx.token = ctx.file.token.clone();
                        }
                        s.client.set_token(Some(ctx.token.clone()));
                    }
                }
                Some("logout") => {
                    ctx.token.clear();
                    s.client.set_token(None);
                }
                _ => {}
            }
        }
        "/nodes" | "/prefs" | "/skills" => {
            delegate(ctx, [vec![name[1..].to_string()], args].concat()).await;
        }
        "/thread" => match args.first().map(String::as_str) {
            None | Some("new") => {
                if let Err(e) = new_thread(s).await {
                    app::report(&CliError::general(format!("start new thread: {e}")));
                }
            }
            Some(other) => {
                eprintln!("thread: unknown subcommand \"{other}\" — use: /thread new");
            }
        },
        _ => eprintln!("Unknown command. Type /help for available commands."),
    }
    Flow::Continue
}

/// `! <cmd>`: runs `sh -c <cmd>`, combined output to stdout.
async fn shell_escape(cmd: &str) {
    if cmd.is_empty() {
        eprintln!("usage: ! <shell command>");
        return;
    }
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1; {cmd}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    if let Some(mut so) = child.stdout.take() {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut so, &mut buf).await;
        util::out(&String::from_utf8_lossy(&buf));
    }
    match child.wait().await {
        Ok(st) if !st.success() => match st.code() {
            Some(c) => eprintln!("exit status {c}"),
            None => eprintln!("exit status {st}"),
        },
        Ok(_) => {}
        Err(e) => eprintln!("{e}"),
    }
}
