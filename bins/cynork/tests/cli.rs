//! The cynork binary against the real orchestrator (`cynode-orchestrator dev`: gateway,
//! SQLite, dispatcher and a worker running tasks in real sandboxes): every line of the
//! core checklist of cli.md §15 that the gateway serves today, failures included.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{ADMIN, Stack, config_value, run};
use serde_json::Value;

#[test]
fn version_help_completion_and_usage_errors() {
    let Some(s) = Stack::start() else { return };
    let cfg = s.config("v");
    let r = s.cynork(&cfg, &["version"], None).ok();
    assert!(r.stdout.contains("cynork"), "{r:?}");
    let v = s.cynork(&cfg, &["version", "-o", "json"], None).ok().json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // No command: help, exit 0.
    let r = s.cynork(&cfg, &[], None).ok();
    assert!(r.stdout.contains("Usage"), "{r:?}");
    // Every command has an example in its help.
    for cmd in [
        &["task", "create", "--help"][..],
        &["auth", "login", "--help"],
        &["chat", "--help"],
        &["skills", "load", "--help"],
        &["prefs", "set", "--help"],
    ] {
        let r = s.cynork(&cfg, cmd, None).ok();
        assert!(r.stdout.contains("Example"), "{cmd:?}: {r:?}");
    }
    // Bad -o: exit 2 with the contract's text, before any request.
    s.cynork(&cfg, &["-o", "yaml", "status"], None)
        .fails(2, "output must be table or json");
    // Unknown flag, missing positional: exit 2.
    assert_eq!(s.cynork(&cfg, &["task", "list", "--bogus"], None).code, 2);
    assert_eq!(s.cynork(&cfg, &["task", "get"], None).code, 2);
    // Completions.
    for sh in ["bash", "zsh", "fish"] {
        let r = s.cynork(&cfg, &["completion", sh], None).ok();
        assert!(r.stdout.contains("cynork") && r.stdout.len() > 500, "{sh}");
    }
    // Reading never creates the config file.
    assert!(!cfg.exists());
}

#[test]
fn status_ok_and_unreachable() {
    let Some(s) = Stack::start() else { return };
    let cfg = s.config("s");
    assert_eq!(s.cynork(&cfg, &["status"], None).ok().stdout, "ok\n");
    assert_eq!(
        s.cynork(&cfg, &["status", "-o", "json"], None).ok().json(),
        serde_json::json!({"gateway": "ok"})
    );
    // Nothing listens on a port we just closed: exit 7.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut c = s.command(&cfg, &["status"]);
    c.env(
        "CYNORK_GATEWAY_URL",
        format!("http://127.0.0.1:{port}/prefix"),
    );
    run(c, None).fails(7, "gateway unreachable: ");
    // The same for an authenticated command (network failure → 7).
    s.login_admin(&cfg);
    let mut c = s.command(&cfg, &["task", "list"]);
    c.env("CYNORK_GATEWAY_URL", format!("http://127.0.0.1:{port}"));
    assert_eq!(run(c, None).code, 7);
}

#[test]
fn login_whoami_refresh_logout() {
    let Some(s) = Stack::start() else { return };
    let cfg = s.config("a");
    // Not logged in: exit 3, nothing sent.
    s.cynork(&cfg, &["auth", "whoami"], None)
        .fails(3, "not logged in: run 'cynork auth login'");
    // Canonical script form.
    let r = s
        .cynork(
            &cfg,
            &["auth", "login", "-u", "admin", "--password-stdin"],
            Some("admin123\n"),
        )
        .ok();
    assert_eq!(r.stdout, "logged_in=true user=admin\n");
    assert!(!r.stdout.contains("admin123") && !r.stderr.contains("admin123"));
    let token = config_value(&cfg, "token").expect("token line");
    let refresh = config_value(&cfg, "refresh_token").expect("refresh_token line");
    assert!(token.len() > 20 && refresh.len() > 20);
    assert_eq!(config_value(&cfg, "gateway_url").as_deref(), Some(""));
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(mode(cfg.parent().expect("dir")), 0o700);
    let leftovers: Vec<_> = std::fs::read_dir(cfg.parent().expect("dir"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, vec!["config.yaml"]);

    // whoami.
    let r = s.cynork(&cfg, &["auth", "whoami"], None).ok();
    assert!(
        r.stdout.starts_with("id=") && r.stdout.ends_with(" user=admin\n"),
        "{r:?}"
    );
    let me = s
        .cynork(&cfg, &["auth", "whoami", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(me["user"], "admin");
    assert!(me["id"].as_str().is_some_and(|id| id.len() == 36));

    // refresh: both tokens rotate; the old refresh token is then rejected.
    let r = s.cynork(&cfg, &["auth", "refresh"], None).ok();
    assert_eq!(r.stdout, "Token refreshed successfully.\n");
    let token2 = config_value(&cfg, "token").expect("token");
    let refresh2 = config_value(&cfg, "refresh_token").expect("refresh");
    assert_ne!(token, token2);
    assert_ne!(refresh, refresh2);
    let stale = s.config("stale");
    std::fs::create_dir_all(stale.parent().expect("dir")).expect("mkdir");
    std::fs::write(&stale, format!("token: \"\"\nrefresh_token: {refresh}\n")).expect("write");
    s.cynork(&stale, &["auth", "refresh"], None)
        .fails(3, "401 Unauthorized");
    s.cynork(&cfg, &["auth", "whoami"], None).ok();

    // logout: tokens cleared, stdout says so, whoami then fails.
    let r = s.cynork(&cfg, &["auth", "logout"], None).ok();
    assert!(r.stdout.to_lowercase().contains("logged out"), "{r:?}");
    assert!(r.stdout.contains("logged_out=true"));
    assert_eq!(config_value(&cfg, "token").as_deref(), Some(""));
    assert_eq!(config_value(&cfg, "refresh_token").as_deref(), Some(""));
    s.cynork(&cfg, &["auth", "whoami"], None)
        .fails(3, "not logged in");
    // The session ended on the gateway too: its refresh token no longer works.
    std::fs::write(&stale, format!("refresh_token: {refresh2}\n")).expect("write");
    s.cynork(&stale, &["auth", "refresh"], None)
        .fails(3, "401 Unauthorized");
    s.cynork(&cfg, &["auth", "refresh"], None)
        .fails(3, "no refresh token: run 'cynork auth login' first");
    let j = s
        .cynork(&cfg, &["auth", "logout", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(j, serde_json::json!({"logged_out": true}));
}

#[test]
fn login_failures_and_prompts() {
    let Some(s) = Stack::start() else { return };
    let cfg = s.config("f");
    s.cynork(
        &cfg,
        &["auth", "login", "-u", "admin", "--password-stdin"],
        Some("wrong\n"),
    )
    .fails(3, "401 Unauthorized: Invalid credentials");
    assert!(!cfg.exists(), "a failed login writes nothing");
    s.cynork(&cfg, &["auth", "login", "--password-stdin"], Some("x"))
        .fails(2, "--password-stdin requires --user");
    // No -u: "User: " prompt on stderr, then the rest of stdin is the password.
    let r = s
        .cynork(
            &cfg,
            &["auth", "login", "-o", "json"],
            Some("admin\nadmin123\n"),
        )
        .ok();
    assert!(r.stderr.contains("User: "), "{r:?}");
    assert_eq!(
        r.json(),
        serde_json::json!({"logged_in": true, "user": "admin"})
    );
    // --handle is an alias of --user; only one trailing newline is removed.
    s.add_user("bob", "pw with spaces\n");
    s.cynork(
        &cfg,
        &["auth", "login", "--handle", "bob", "--password-stdin"],
        Some("pw with spaces\n\n"),
    )
    .ok();
    assert!(
        s.cynork(&cfg, &["auth", "whoami"], None)
            .ok()
            .stdout
            .contains("user=bob")
    );
}

#[test]
fn expired_token_is_exit_3_with_the_gateway_text() {
    let Some(s) = Stack::start() else { return };
    let cfg = s.config("e");
    s.login_admin(&cfg);
    s.cynork(&cfg, &["auth", "whoami"], None).ok();
    // The stored access token is swapped for one signed with the orchestrator's key
    // that expired an hour ago.
    s.expire_token(&cfg);
    s.cynork(&cfg, &["auth", "whoami"], None)
        .fails(3, "401 Unauthorized: Invalid or expired token");
    s.cynork(&cfg, &["task", "list"], None)
        .fails(3, "Invalid or expired token");
    // Refresh gets a working token again.
    s.cynork(&cfg, &["auth", "refresh"], None).ok();
    s.cynork(&cfg, &["auth", "whoami"], None).ok();
}

#[test]
fn config_location_env_overrides_and_bad_yaml() {
    let Some(s) = Stack::start() else { return };
    // XDG_CONFIG_HOME decides the default location.
    let xdg = s.dir().join("xdg");
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cynork"));
    c.args(["auth", "login", "-u", ADMIN.0, "--password-stdin"])
        .env("XDG_CONFIG_HOME", &xdg)
        .env("HOME", s.dir())
        .env_remove("CYNORK_TOKEN")
        .env("CYNORK_GATEWAY_URL", s.url());
    run(c, Some("admin123\n")).ok();
    let file = xdg.join("cynork").join("config.yaml");
    let token = config_value(&file, "token").expect("token in the XDG file");
    // Without XDG: ~/.config/cynork/config.yaml.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cynork"));
    c.args(["auth", "login", "-u", ADMIN.0, "--password-stdin"])
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", s.dir())
        .env_remove("CYNORK_TOKEN")
        .env("CYNORK_GATEWAY_URL", s.url());
    run(c, Some("admin123\n")).ok();
    assert!(s.dir().join(".config/cynork/config.yaml").exists());

    // CYNORK_TOKEN overrides the file (here: the file has none).
    let empty = s.config("env");
    let mut c = s.command(&empty, &["auth", "whoami"]);
    c.env("CYNORK_TOKEN", &token);
    assert!(run(c, None).ok().stdout.contains("user=admin"));
    // gateway_url from the file is used when the env var is absent.
    let file_url = s.config("url");
    std::fs::create_dir_all(file_url.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file_url, format!("gateway_url: {}\n", s.url())).expect("write");
    let mut c = s.command(&file_url, &["status"]);
    c.env_remove("CYNORK_GATEWAY_URL");
    run(c, None).ok();

    // Invalid YAML: exit 2 before any command runs.
    let bad = s.config("bad");
    std::fs::create_dir_all(bad.parent().expect("dir")).expect("mkdir");
    std::fs::write(&bad, "token: [unclosed\n").expect("write");
    s.cynork(&bad, &["version"], None)
        .fails(2, "load config: parse config: ");
}

/// Logged-in admin config for task tests.
fn logged_in(s: &Stack, name: &str) -> std::path::PathBuf {
    let cfg = s.config(name);
    s.login_admin(&cfg);
    cfg
}

#[test]
fn task_create_flags_and_outputs() {
    let Some(s) = Stack::start() else { return };
    let cfg = logged_in(&s, "t");
    std::fs::create_dir_all(s.dir().join("tmp")).expect("mkdir");
    std::fs::write(s.dir().join("tmp/att1.txt"), "one").expect("write");
    std::fs::write(s.dir().join("tmp/att2.txt"), "two").expect("write");

    // Prompt mode with a name and both attachment aliases; JSON echoes them as typed.
    let mut c = s.command(
        &cfg,
        &[
            "task",
            "create",
            "-p",
            "Please acknowledge.",
            "--name",
            "E2E Task Name",
            "--attach",
            "tmp/att1.txt",
            "--attachment",
            "tmp/att2.txt",
            "-o",
            "json",
        ],
    );
    c.current_dir(s.dir());
    let t = run(c, None).ok().json();
    assert_eq!(t["task_id"], t["id"]);
    assert_eq!(t["status"], "queued");
    assert_eq!(t["task_name"], "e2e-task-name");
    assert_eq!(
        t["attachments"],
        serde_json::json!(["tmp/att1.txt", "tmp/att2.txt"])
    );
    // --task-name alias, table output: task_id first.
    let r = s
        .cynork(
            &cfg,
            &[
                "task",
                "create",
                "-t",
                "second",
                "--task-name",
                "e2e-task-name",
            ],
            None,
        )
        .ok();
    let first = r.stdout.split_whitespace().next().expect("token");
    assert!(
        first.starts_with("task_id=") && first.len() == "task_id=".len() + 36,
        "{r:?}"
    );
    assert!(r.stdout.contains("task_name=e2e-task-name-2"), "{r:?}");
    // --use-inference / --use-sba / --input-mode are accepted.
    for extra in [
        &["--use-inference"][..],
        &["--use-sba"],
        &["--input-mode", "script"],
        &["--input-mode", "commands"],
    ] {
        let mut args = vec!["task", "create", "-p", "echo x"];
        args.extend_from_slice(extra);
        s.cynork(&cfg, &args, None).ok();
    }
    // Usage errors: exit 2, nothing created.
    s.cynork(&cfg, &["task", "create"], None)
        .fails(2, "exactly one task input mode is required");
    s.cynork(&cfg, &["task", "create", "-t", "a", "-p", "b"], None)
        .fails(2, "exactly one of --task or --prompt is allowed");
    s.cynork(
        &cfg,
        &["task", "create", "-p", "a", "--attach", "missing.txt"],
        None,
    )
    .fails(2, "missing.txt");
    s.cynork(
        &cfg,
        &["task", "create", "-p", "a", "--project-id", "nope"],
        None,
    )
    .fails(2, "invalid --project-id");
    std::os::unix::fs::symlink(s.dir().join("tmp/att1.txt"), s.dir().join("link.txt"))
        .expect("symlink");
    let link = s.dir().join("link.txt");
    s.cynork(
        &cfg,
        &["task", "create", "-f", link.to_str().expect("utf8")],
        None,
    )
    .fails(2, "symlink");
    let big = s.dir().join("big.sh");
    std::fs::write(&big, vec![b'#'; 256 * 1024 + 1]).expect("write");
    s.cynork(
        &cfg,
        &["task", "create", "-s", big.to_str().expect("utf8")],
        None,
    )
    .fails(2, "exceeds size limit (262144 bytes)");
    let list = s
        .cynork(&cfg, &["task", "list", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(list["tasks"].as_array().expect("tasks").len(), 6);
    // Without a token: exit 3.
    let none = s.config("none");
    s.cynork(&none, &["task", "create", "-p", "x"], None)
        .fails(3, "not logged in");
}

/// `task create --result` runs the command in a sandbox container of the worker, not
/// on the host.
#[test]
fn tasks_run_in_a_sandbox_container() {
    let Some(s) = Stack::start() else { return };
    let cfg = logged_in(&s, "sandbox");
    // `echo hi` prints hi from the container, which runs as the dev stack's sandbox
    // user (uid 10001).
    let r = s
        .cynork(
            &cfg,
            &[
                "task",
                "create",
                "--command",
                "echo hi",
                "--result",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["jobs"][0]["result"]["stdout"], "hi\n", "{r}");
    let r = s
        .cynork(
            &cfg,
            &[
                "task",
                "create",
                "--command",
                "id -u",
                "--result",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(r["jobs"][0]["result"]["stdout"], "10001\n", "{r}");
}

#[test]
fn task_run_result_logs_get_and_list() {
    let Some(s) = Stack::start() else { return };
    let cfg = logged_in(&s, "r");
    // Commands run in order; --result waits and prints like `task result`.
    let r = s
        .cynork(
            &cfg,
            &[
                "task",
                "create",
                "--command",
                "echo hello",
                "--command",
                "echo oops >&2",
                "--name",
                "hello",
                "--result",
            ],
            None,
        )
        .ok();
    assert!(r.stdout.contains("status=completed"), "{r:?}");
    assert!(r.stdout.contains("hello\\n"), "{r:?}");

    // result -o json by name: raw job result JSON in stdout, stderr parsed out of it.
    let res = s
        .cynork(&cfg, &["task", "result", "hello", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(res["status"], "completed");
    let inner: Value = serde_json::from_str(res["stdout"].as_str().expect("stdout string"))
        .expect("stdout holds the job result JSON");
    assert_eq!(inner["stdout"], "hello\n");
    assert_eq!(res["stderr"], "oops\n");
    assert_eq!(res["jobs"][0]["result"]["stdout"], "hello\n");
    let id = res["task_id"].as_str().expect("id").to_string();

    // get by id and by name.
    let g = s
        .cynork(&cfg, &["task", "get", &id, "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(
        (g["task_id"].as_str(), g["task_name"].as_str()),
        (Some(id.as_str()), Some("hello"))
    );
    let r = s.cynork(&cfg, &["task", "get", "hello"], None).ok();
    assert_eq!(
        r.stdout,
        format!("task_id={id} status=completed task_name=hello\n")
    );

    // logs: table splits streams; json has both strings.
    let r = s.cynork(&cfg, &["task", "logs", "hello"], None).ok();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str()),
        ("hello\n", "oops\n")
    );
    let l = s
        .cynork(&cfg, &["task", "logs", &id, "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(
        l,
        serde_json::json!({"task_id": id, "stdout": "hello\n", "stderr": "oops\n"})
    );
    let r = s
        .cynork(
            &cfg,
            &["task", "logs", &id, "--stream", "stdout", "-F"],
            None,
        )
        .ok();
    assert_eq!(r.stdout, "hello\n");

    // A failing command: failed status, result still has both strings.
    let t = s
        .cynork(
            &cfg,
            &["task", "create", "--command", "exit 3", "-o", "json"],
            None,
        )
        .ok()
        .json();
    let fid = t["task_id"].as_str().expect("id").to_string();
    let res = s
        .cynork(
            &cfg,
            &[
                "task",
                "result",
                &fid,
                "-w",
                "--wait-interval",
                "1s",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(res["status"], "failed");
    assert!(
        res["stdout"]
            .as_str()
            .is_some_and(|s| s.contains("\"exit_code\":3"))
    );

    // watch ends at the terminal status, header and result included.
    let r = s
        .cynork(&cfg, &["task", "watch", &fid, "-n", "1s"], None)
        .ok();
    assert!(
        r.stdout.starts_with("Every 1s: cynork task result "),
        "{r:?}"
    );
    assert!(r.stdout.contains("status=failed"));

    // list: table lines, json with tasks array and a string next_cursor.
    let r = s.cynork(&cfg, &["task", "list"], None).ok();
    assert_eq!(r.stdout.lines().count(), 2);
    assert!(r.stdout.lines().all(|l| l.starts_with("task_id=")));
    let page = s
        .cynork(&cfg, &["task", "list", "-l", "1", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(page["tasks"].as_array().expect("tasks").len(), 1);
    assert_eq!(page["next_cursor"], "1");
    let last = s
        .cynork(
            &cfg,
            &["task", "list", "-l", "1", "--cursor", "1", "-o", "json"],
            None,
        )
        .ok()
        .json();
    assert_eq!(last["next_cursor"], "");
    let done = s
        .cynork(
            &cfg,
            &["task", "list", "--status", "completed", "-o", "json"],
            None,
        )
        .ok()
        .json();
    assert_eq!(done["tasks"].as_array().expect("tasks").len(), 1);
    assert_eq!(done["tasks"][0]["task_name"], "hello");
    // An invalid filter is a validation error: exit 6.
    s.cynork(&cfg, &["task", "list", "--status", "bogus"], None)
        .fails(6, "400 Bad Request: Invalid status");
}

#[test]
fn task_cancel_and_lookup_failures() {
    let Some(s) = Stack::start() else { return };
    let cfg = logged_in(&s, "c");
    // Prompt-mode jobs need a node with inference; this stack has no model, so the
    // task stays queued.
    let t = s
        .cynork(
            &cfg,
            &[
                "task",
                "create",
                "-p",
                "wait",
                "--name",
                "to-cancel",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    let id = t["task_id"].as_str().expect("id").to_string();
    // Declined confirmation: exit 0, no request, no output.
    let r = s
        .cynork(&cfg, &["task", "cancel", "to-cancel"], Some("n\n"))
        .ok();
    assert!(
        r.stdout.is_empty() && r.stderr.contains("Cancel task to-cancel? [y/N] "),
        "{r:?}"
    );
    let r = s.cynork(&cfg, &["task", "cancel", "to-cancel"], None).ok();
    assert!(r.stdout.is_empty());
    assert!(
        s.cynork(&cfg, &["task", "get", &id], None)
            .ok()
            .stdout
            .contains("status=queued")
    );
    // Confirmed by name.
    let j = s
        .cynork(
            &cfg,
            &["task", "cancel", "to-cancel", "-y", "-o", "json"],
            None,
        )
        .ok()
        .json();
    assert_eq!(j, serde_json::json!({"task_id": id, "canceled": true}));
    assert!(
        s.cynork(&cfg, &["task", "get", &id], None)
            .ok()
            .stdout
            .contains("status=canceled")
    );
    let r = s.cynork(&cfg, &["task", "cancel", &id], Some("y\n")).ok();
    assert_eq!(r.stdout, format!("task_id={id} canceled=true\n"));

    // Unknown task: exit 4 with the gateway's text, by name and by id.
    s.cynork(&cfg, &["task", "get", "no-such-task"], None)
        .fails(4, "404 Not Found: Task not found");
    s.cynork(
        &cfg,
        &["task", "result", "00000000-0000-4000-8000-000000000000"],
        None,
    )
    .fails(4, "Task not found");
    // Someone else's task: 403 → exit 3.
    s.add_user("mallory", "pw");
    let other = s.config("other");
    s.cynork(
        &other,
        &["auth", "login", "-u", "mallory", "--password-stdin"],
        Some("pw"),
    )
    .ok();
    s.cynork(&other, &["task", "get", &id], None)
        .fails(3, "403 Forbidden: Not task owner");
    // Not routed on this gateway: exit 4.
    assert_eq!(
        s.cynork(&cfg, &["task", "artifacts", "list", &id], None)
            .code,
        4
    );
}

#[test]
fn shell_runs_lines_and_exits_cleanly() {
    let Some(s) = Stack::start() else { return };
    let cfg = logged_in(&s, "sh");
    // A lone Tab line, commands, an error, then exit: exit 0.
    let r = s
        .cynork(
            &cfg,
            &["shell"],
            Some("\t\nauth whoami\ntask get nope\nversion\nexit\nversion\n"),
        )
        .ok();
    assert!(r.stdout.contains("user=admin"), "{r:?}");
    assert_eq!(
        r.stdout.matches("cynork version=").count(),
        1,
        "stops at exit: {r:?}"
    );
    assert!(r.stderr.contains("cynork> "));
    assert!(r.stderr.contains("Error: 404 Not Found: Task not found"));
    // EOF ends it too.
    s.cynork(&cfg, &["shell"], Some("\t\n")).ok();
    s.cynork(&cfg, &["shell"], Some("quit\n")).ok();
    // -c runs one line with the session's globals and exits with its code.
    let r = s
        .cynork(&cfg, &["-o", "json", "shell", "-c", "auth whoami"], None)
        .ok();
    assert_eq!(r.json()["user"], "admin");
    s.cynork(&cfg, &["shell", "-c", "task get \"no such\""], None)
        .fails(4, "Task not found");
    let none = s.config("none");
    s.cynork(&none, &["shell", "-c", "task list"], None)
        .fails(3, "not logged in");
}

#[test]
fn chat_without_token_and_with_exit_on_stdin() {
    let Some(s) = Stack::start() else { return };
    let none = s.config("none");
    s.cynork(&none, &["chat", "-m", "hi", "--plain"], None)
        .fails(3, "not logged in");
    s.cynork(&none, &["chat"], Some("/exit\n"))
        .fails(3, "not logged in");
    let cfg = logged_in(&s, "chat");
    let r = s.cynork(&cfg, &["chat"], Some("/exit\n")).ok();
    assert!(
        r.stderr
            .contains("Slash commands: /help for list. ! <cmd> run in shell."),
        "{r:?}"
    );
    assert!(r.stderr.contains("  /exit        end the session"), "{r:?}");
    // Slash commands and shell escapes never reach the model and never end the session.
    let r = s
        .cynork(
            &cfg,
            &["chat"],
            Some("/bogus\n/model\n/model m1\n/model\n/version\n/whoami\n! echo from-shell; exit 4\n!\n/thread old\n/task get nope\n/quit\n"),
        )
        .ok();
    assert!(
        r.stderr
            .contains("Unknown command. Type /help for available commands.")
    );
    assert!(r.stderr.contains("model: (default)"));
    assert!(r.stderr.contains("model set to: m1"));
    assert!(r.stderr.contains("model: m1"));
    assert!(
        r.stdout
            .contains(&format!("cynork {}", env!("CARGO_PKG_VERSION")))
    );
    assert!(r.stdout.contains("user=admin"));
    assert!(r.stdout.contains("from-shell\n"));
    assert!(r.stderr.contains("exit status 4"));
    assert!(r.stderr.contains("usage: ! <shell command>"));
    assert!(
        r.stderr
            .contains("thread: unknown subcommand \"old\" — use: /thread new")
    );
    assert!(r.stderr.contains("Task not found"));
    // /auth logout drops the session's token.
    let r = s
        .cynork(&cfg, &["chat"], Some("/auth logout\n/whoami\n"))
        .ok();
    assert!(r.stdout.contains("logged out"));
    assert!(r.stderr.contains("not logged in"));
}

/// Through a pseudo-terminal: the password prompt does not echo, and the password never
/// shows up in the terminal output.
#[test]
fn login_prompts_for_the_password_without_echo_on_a_terminal() {
    let Some(s) = Stack::start() else { return };
    let cfg = s.config("pty");
    let mut p = expectrl::Session::spawn(s.command(&cfg, &["auth", "login", "-u", "admin"]))
        .expect("spawn in a pty");
    p.set_expect_timeout(Some(Duration::from_secs(30)));
    p.expect("Password: ").expect("password prompt");
    p.send_line("admin123").expect("type password");
    let seen = p.expect("logged_in=true user=admin").expect("logged in");
    assert!(
        !String::from_utf8_lossy(seen.before()).contains("admin123"),
        "password echoed: {:?}",
        String::from_utf8_lossy(seen.before())
    );
    p.expect(expectrl::Eof).expect("exit");
    assert!(config_value(&cfg, "token").is_some_and(|t| !t.is_empty()));
}

/// Through a pseudo-terminal: the shell completes commands, subcommands and the
/// caller's task names with Tab.
#[test]
fn shell_tab_completes_commands_and_task_names() {
    let Some(s) = Stack::start() else { return };
    let cfg = logged_in(&s, "shpty");
    s.cynork(
        &cfg,
        &["task", "create", "-p", "x", "--name", "hello-world"],
        None,
    )
    .ok();
    let mut p = expectrl::Session::spawn(s.command(&cfg, &["shell"])).expect("spawn in a pty");
    p.set_expect_timeout(Some(Duration::from_secs(30)));
    p.expect("cynork> ").expect("prompt");
    p.send("tas\t").expect("type");
    p.expect("task").expect("command completed");
    p.send(" resu\t").expect("type");
    p.expect("result").expect("subcommand completed");
    p.send(" hello-w\t").expect("type");
    p.expect("hello-world").expect("task name completed");
    p.send("\r").expect("enter");
    p.expect("status=queued").expect("command ran");
    p.send_line("exit").expect("exit");
    p.expect(expectrl::Eof).expect("shell ends");
}
