//! `task create|list|get|result|watch|cancel|logs|artifacts` (cli.md §8).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cynode_client::gateway::GatewayClient;
use cynode_core::proto::v1::gateway::{CreateTaskRequest, Task, TaskListQuery, TaskResult};
use serde_json::{Map, Value, json};

use crate::app::Ctx;
use crate::cli::{ArtifactsCmd, TaskCmd, TaskCreateArgs};
use crate::error::{CliError, CliResult};
use crate::util::{self, Progress, out, outln, print_json};

const MAX_TASK_FILE: u64 = 1024 * 1024;
const MAX_SCRIPT: u64 = 256 * 1024;
const MAX_COMMANDS_FILE: u64 = 64 * 1024;
const MAX_ATTACHMENT: u64 = 10 * 1024 * 1024;
const MAX_ATTACHMENTS: usize = 16;

/// Runs a `task` subcommand.
pub async fn run(ctx: &Ctx, c: TaskCmd) -> CliResult {
    match c {
        TaskCmd::Create(a) => create(ctx, a).await,
        TaskCmd::List {
            limit,
            offset,
            cursor,
            status,
        } => list(ctx, limit, offset, cursor, status).await,
        TaskCmd::Get { task } => get(ctx, &task).await,
        TaskCmd::Result {
            task,
            wait,
            wait_interval,
        } => {
            let interval = util::interval_flag(&wait_interval, "--wait-interval")?;
            let client = ctx.authed()?;
            let r = if wait {
                match wait_terminal(&client, &task, interval).await? {
                    Some(r) => r,
                    None => return Ok(()),
                }
            } else {
                client.task_result(&task).await?
            };
            print_result(ctx, &r);
            Ok(())
        }
        TaskCmd::Watch {
            task,
            interval,
            no_clear,
        } => watch(ctx, &task, &interval, no_clear).await,
        TaskCmd::Cancel { task, yes } => cancel(ctx, &task, yes).await,
        TaskCmd::Logs {
            task,
            stream,
            follow,
        } => logs(ctx, &task, &stream, follow).await,
        TaskCmd::Artifacts(a) => artifacts(ctx, a).await,
    }
}

/// Checks an input file the contract's way and reads it.
fn read_checked(path: &Path, what: &str, limit: u64) -> CliResult<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| CliError::usage(format!("{what} {}: {e}", path.display())))?;
    if meta.file_type().is_symlink() {
        return Err(CliError::usage(format!(
            "{what} {}: must not be a symlink",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(CliError::usage(format!(
            "{what} {}: not a regular file",
            path.display()
        )));
    }
    if meta.len() > limit {
        return Err(CliError::usage(format!(
            "{what} {} exceeds size limit ({limit} bytes)",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| CliError::usage(format!("{what} {}: {e}", path.display())))
}

fn read_text(path: &Path, what: &str, limit: u64) -> CliResult<String> {
    let bytes = read_checked(path, what, limit)?;
    String::from_utf8(bytes)
        .map_err(|_| CliError::usage(format!("{what} {}: not UTF-8 text", path.display())))
}

/// Builds the create request from the flags; all usage errors come before any request.
pub fn build_create(a: &TaskCreateArgs) -> CliResult<CreateTaskRequest> {
    let given = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.trim().is_empty());
    let text_flags = usize::from(given(&a.task)) + usize::from(given(&a.prompt));
    if text_flags > 1 {
        return Err(CliError::usage(
            "exactly one of --task or --prompt is allowed",
        ));
    }
    let commands: Vec<&String> = a.commands.iter().filter(|c| !c.trim().is_empty()).collect();
    let groups = usize::from(text_flags == 1)
        + usize::from(a.task_file.is_some())
        + usize::from(a.script.is_some())
        + usize::from(!commands.is_empty())
        + usize::from(a.commands_file.is_some());
    if groups != 1 {
        return Err(CliError::usage("exactly one task input mode is required"));
    }
    let (prompt, mode) = if text_flags == 1 {
        let t = a.task.clone().filter(|v| !v.trim().is_empty());
        (t.or_else(|| a.prompt.clone()).unwrap_or_default(), "prompt")
    } else if let Some(p) = &a.task_file {
        (read_text(p, "task file", MAX_TASK_FILE)?, "prompt")
    } else if let Some(p) = &a.script {
        (read_text(p, "script", MAX_SCRIPT)?, "script")
    } else if !commands.is_empty() {
        (
            commands
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            "commands",
        )
    } else if let Some(p) = &a.commands_file {
        (
            read_text(p, "commands file", MAX_COMMANDS_FILE)?,
            "commands",
        )
    } else {
        return Err(CliError::usage("exactly one task input mode is required"));
    };
    let mut input_mode = mode.to_string();
    let flag_mode = a.input_mode.trim();
    if mode == "prompt" && !flag_mode.is_empty() && flag_mode != "prompt" {
        input_mode = flag_mode.to_string();
    }
    if a.attach.len() > MAX_ATTACHMENTS {
        return Err(CliError::usage(format!(
            "too many attachments: max {MAX_ATTACHMENTS}"
        )));
    }
    for p in &a.attach {
        let meta = std::fs::symlink_metadata(p)
            .map_err(|e| CliError::usage(format!("attachment {p}: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(CliError::usage(format!(
                "attachment {p}: must not be a symlink"
            )));
        }
        if !meta.is_file() {
            return Err(CliError::usage(format!(
                "attachment {p}: not a regular file"
            )));
        }
        if meta.len() > MAX_ATTACHMENT {
            return Err(CliError::usage(format!(
                "attachment {p} exceeds size limit ({MAX_ATTACHMENT} bytes)"
            )));
        }
        std::fs::File::open(p).map_err(|e| CliError::usage(format!("attachment {p}: {e}")))?;
    }
    let project_id = match a.project_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(
            uuid::Uuid::parse_str(p)
                .map_err(|e| CliError::usage(format!("invalid --project-id: {e}")))?
                .to_string(),
        ),
    };
    Ok(CreateTaskRequest {
        prompt,
        input_mode,
        task_name: a.name.clone().filter(|n| !n.trim().is_empty()),
        project_id,
        attachments: a.attach.clone(),
        use_inference: a.use_inference,
        use_sba: a.use_sba,
    })
}

fn task_line(t: &Task) -> String {
    let mut s = format!("task_id={} status={}", t.task_id, t.status);
    if !t.task_name.is_empty() {
        s.push_str(&format!(" task_name={}", t.task_name));
    }
    s
}

async fn create(ctx: &Ctx, mut a: TaskCreateArgs) -> CliResult {
    if a.project_id.is_none() {
        a.project_id = ctx.file.active_project();
    }
    let req = build_create(&a)?;
    let client = ctx.authed()?;
    let task = client.create_task(&req).await?;
    if !a.result {
        if ctx.json {
            print_json(&task);
        } else {
            let mut s = format!("task_id={}", task.task_id);
            if !task.task_name.is_empty() {
                s.push_str(&format!(" task_name={}", task.task_name));
            }
            outln(&s);
        }
        return Ok(());
    }
    if let Some(r) = wait_terminal(&client, &task.task_id, Duration::from_secs(2)).await? {
        print_result(ctx, &r);
    }
    Ok(())
}

async fn list(
    ctx: &Ctx,
    limit: i64,
    offset: Option<u64>,
    cursor: Option<String>,
    status: Option<String>,
) -> CliResult {
    let limit = if limit <= 0 { 50 } else { limit.min(200) } as u32;
    let client = ctx.authed()?;
    let page = client
        .list_tasks(&TaskListQuery {
            limit: Some(limit),
            offset,
            cursor: cursor.filter(|c| !c.is_empty()),
            status: status.filter(|s| !s.is_empty()),
        })
        .await?;
    if ctx.json {
        let mut m = Map::new();
        m.insert(
            "tasks".into(),
            serde_json::to_value(&page.tasks).unwrap_or(json!([])),
        );
        m.insert(
            "next_cursor".into(),
            Value::String(page.next_cursor.clone().unwrap_or_default()),
        );
        if let Some(o) = page.next_offset {
            m.insert("next_offset".into(), json!(o));
        }
        print_json(&Value::Object(m));
    } else {
        for t in &page.tasks {
            outln(&task_line(t));
        }
    }
    Ok(())
}

async fn get(ctx: &Ctx, task: &str) -> CliResult {
    let t = ctx.authed()?.get_task(task).await?;
    if ctx.json {
        print_json(&t);
    } else {
        outln(&task_line(&t));
    }
    Ok(())
}

/// The JSON form of a task result (cli.md §8.4): `stdout` is every job's raw result
/// string, `stderr` the `stderr` fields of the decoded results; `jobs` carries each
/// decoded result object.
pub fn result_json(r: &TaskResult) -> Value {
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut jobs = Vec::new();
    for j in &r.jobs {
        let decoded = j.result_json();
        if let Some(raw) = &j.result {
            stdout.push_str(raw);
        }
        if let Some(e) = decoded
            .as_ref()
            .and_then(|v| v.get("stderr"))
            .and_then(Value::as_str)
        {
            stderr.push_str(e);
        }
        let mut job = Map::new();
        job.insert("id".into(), json!(j.id));
        job.insert("status".into(), json!(j.status));
        if let Some(v) = decoded.filter(Value::is_object) {
            job.insert("result".into(), v);
        }
        if let Some(s) = &j.started_at {
            job.insert("started_at".into(), json!(s));
        }
        if let Some(s) = &j.ended_at {
            job.insert("ended_at".into(), json!(s));
        }
        jobs.push(Value::Object(job));
    }
    let terminal = r.is_terminal();
    let mut m = Map::new();
    m.insert("task_id".into(), json!(r.task_id));
    m.insert("status".into(), json!(r.status));
    if terminal || !stdout.is_empty() {
        m.insert("stdout".into(), json!(stdout));
    }
    if terminal || !stderr.is_empty() {
        m.insert("stderr".into(), json!(stderr));
    }
    m.insert("jobs".into(), Value::Array(jobs));
    Value::Object(m)
}

/// The table form of a task result.
pub fn result_table(r: &TaskResult) -> String {
    let mut s = format!("task_id={} status={}\n", r.task_id, r.status);
    for j in &r.jobs {
        s.push_str(&format!("job {}: {}\n", j.id, j.status));
        if let Some(raw) = &j.result {
            s.push_str(raw);
            if !raw.ends_with('\n') {
                s.push('\n');
            }
        }
    }
    s
}

fn print_result(ctx: &Ctx, r: &TaskResult) {
    if ctx.json {
        print_json(&result_json(r));
    } else {
        out(&result_table(r));
    }
}

/// Polls the result until the task is terminal; `None` when interrupted (Ctrl+C).
async fn wait_terminal(
    client: &GatewayClient,
    task: &str,
    interval: Duration,
) -> CliResult<Option<TaskResult>> {
    let mut progress = Progress::new();
    let poll = async {
        loop {
            let r = client.task_result(task).await?;
            if r.is_terminal() {
                return Ok::<_, CliError>(r);
            }
            progress.update(&format!("waiting for task {task}: {}", r.status));
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        r = poll => { progress.clear(); r.map(Some) }
        _ = tokio::signal::ctrl_c() => Ok(None),
    }
}

async fn watch(ctx: &Ctx, task: &str, interval: &str, no_clear: bool) -> CliResult {
    let every = util::interval_flag(interval, "--interval")?;
    let client = ctx.authed()?;
    let clear = util::stdout_tty() && !no_clear;
    let poll = async {
        loop {
            let r = client.task_result(task).await?;
            if clear {
                out("\x1b[H\x1b[2J");
            }
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            outln(&format!(
                "Every {}: cynork task result {task}  {now}",
                util::format_duration(every)
            ));
            outln("");
            print_result(ctx, &r);
            if r.is_terminal() {
                return Ok::<_, CliError>(());
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::select! {
        r = poll => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn cancel(ctx: &Ctx, task: &str, yes: bool) -> CliResult {
    let client = ctx.authed()?;
    if !yes && !util::confirm(&format!("Cancel task {task}? [y/N] ")) {
        return Ok(());
    }
    let r = client.cancel_task(task).await?;
    if ctx.json {
        print_json(&json!({"task_id": r.task_id, "canceled": r.canceled}));
    } else {
        outln(&format!("task_id={} canceled={}", r.task_id, r.canceled));
    }
    Ok(())
}

async fn logs(ctx: &Ctx, task: &str, stream: &str, follow: bool) -> CliResult {
    if !matches!(stream, "all" | "stdout" | "stderr") {
        return Err(CliError::usage("--stream must be stdout, stderr or all"));
    }
    let client = ctx.authed()?;
    let stream_q = (stream != "all").then_some(stream);
    if !follow || ctx.json {
        let l = client.task_logs(task, stream_q).await?;
        if ctx.json {
            print_json(&json!({"task_id": l.task_id, "stdout": l.stdout, "stderr": l.stderr}));
        } else {
            out(&l.stdout);
            eprint!("{}", l.stderr);
        }
        return Ok(());
    }
    let (mut seen_out, mut seen_err) = (0usize, 0usize);
    let poll = async {
        loop {
            let l = client.task_logs(task, stream_q).await?;
            if let Some(s) = l.stdout.get(seen_out..) {
                out(s);
                seen_out = l.stdout.len();
            }
            if let Some(s) = l.stderr.get(seen_err..) {
                eprint!("{s}");
                seen_err = l.stderr.len();
            }
            let t = client.get_task(task).await?;
            if t.is_terminal() {
                // One more read: output written just before the status changed.
                let l = client.task_logs(task, stream_q).await?;
                if let Some(s) = l.stdout.get(seen_out..) {
                    out(s);
                }
                if let Some(s) = l.stderr.get(seen_err..) {
                    eprint!("{s}");
                }
                return Ok::<_, CliError>(());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        r = poll => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn artifacts(ctx: &Ctx, a: ArtifactsCmd) -> CliResult {
    match a {
        ArtifactsCmd::List { task } => {
            let body = ctx.authed()?.task_artifacts(&task).await?;
            if body.is_null() {
                print_json(&json!([]));
            } else {
                print_json(&body);
            }
            Ok(())
        }
        ArtifactsCmd::Get {
            task,
            artifact_id,
            out: path,
            force,
        } => {
            let client = ctx.authed()?;
            if !force && std::fs::symlink_metadata(&path).is_ok() {
                return Err(CliError::usage(format!(
                    "{} exists (use --force to overwrite)",
                    path.display()
                )));
            }
            let bytes = client.task_artifact_bytes(&task, &artifact_id).await?;
            write_out(&path, &bytes)?;
            let p = path.display().to_string();
            if ctx.json {
                print_json(&json!({"saved": true, "path": p}));
            } else {
                outln(&format!("saved=true path={p}"));
            }
            Ok(())
        }
    }
}

fn write_out(path: &PathBuf, bytes: &[u8]) -> CliResult {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::general(format!("create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| CliError::general(format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cynode_core::proto::v1::gateway::JobResult;

    fn args() -> TaskCreateArgs {
        TaskCreateArgs {
            task: None,
            prompt: None,
            task_file: None,
            script: None,
            commands: vec![],
            commands_file: None,
            name: None,
            attach: vec![],
            project_id: None,
            input_mode: "prompt".into(),
            use_inference: false,
            use_sba: false,
            result: false,
        }
    }

    #[test]
    fn input_modes_are_exclusive() {
        let e = build_create(&args()).expect_err("none");
        assert_eq!(
            (e.code, e.message.as_str()),
            (2, "exactly one task input mode is required")
        );
        let mut a = args();
        a.task = Some("x".into());
        a.prompt = Some("y".into());
        assert_eq!(
            build_create(&a).expect_err("both").message,
            "exactly one of --task or --prompt is allowed"
        );
        let mut a = args();
        a.prompt = Some("   ".into());
        assert_eq!(build_create(&a).expect_err("blank").code, 2);
        let mut a = args();
        a.commands = vec!["echo a".into(), "echo b".into()];
        let r = build_create(&a).expect("commands");
        assert_eq!(
            (r.prompt.as_str(), r.input_mode.as_str()),
            ("echo a\necho b", "commands")
        );
        let mut a = args();
        a.prompt = Some("echo hi".into());
        a.input_mode = "script".into();
        assert_eq!(build_create(&a).expect("p").input_mode, "script");
        let mut a = args();
        a.prompt = Some("x".into());
        a.project_id = Some("nope".into());
        assert!(
            build_create(&a)
                .expect_err("project")
                .message
                .starts_with("invalid --project-id")
        );
    }

    #[test]
    fn result_json_keeps_raw_stdout_and_decoded_jobs() {
        let raw = r#"{"version":1,"status":"completed","stdout":"hello\n","stderr":"warn"}"#;
        let r = TaskResult {
            task_id: "t".into(),
            status: "completed".into(),
            jobs: vec![JobResult {
                id: "j".into(),
                status: "completed".into(),
                result: Some(raw.into()),
                ..Default::default()
            }],
        };
        let v = result_json(&r);
        assert_eq!(v["stdout"], raw);
        assert_eq!(v["stderr"], "warn");
        assert_eq!(v["jobs"][0]["result"]["stdout"], "hello\n");
        let pending = TaskResult {
            task_id: "t".into(),
            status: "queued".into(),
            jobs: vec![],
        };
        let v = result_json(&pending);
        assert!(v.get("stdout").is_none() && v.get("stderr").is_none());
        assert_eq!(
            result_table(&r),
            format!("task_id=t status=completed\njob j: completed\n{raw}\n")
        );
    }
}
