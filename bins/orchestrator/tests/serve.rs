//! `cynode-orchestrator serve` and `--migrate-only` as an operator runs them: secrets
//! it refuses, migrations on SQLite and PostgreSQL, and a production start on
//! PostgreSQL with a bootstrap file, stopped with SIGTERM.
//!
//! The PostgreSQL cases need `CYNODE_TEST_PG_URL`: missing, they fail under
//! `CYNODE_REQUIRE_SERVICES=1` and are skipped otherwise.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use cynode_core::model::Scope;
use cynode_core::store::{
    AccessControlStore, AccessRuleFilter, PgStore, PreferenceStore, SettingStore, UserStore,
};
use serde_json::{Value, json};
use sqlx::Connection;
use support::{JWT, create_db, drop_db, free_port, orchestrator, pg_url, run, stderr};
use tokio::io::{AsyncBufReadExt, BufReader};

#[test]
fn serve_refuses_unsafe_or_missing_secrets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = |c: &mut Command| {
        c.args(["serve", "--gateway-listen", "127.0.0.1:0"])
            .args(["--control-plane-listen", "127.0.0.1:0"])
            .args(["--egress-listen", "127.0.0.1:0"]);
    };
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[], "JWT_SECRET is not set"),
        (
            &[("JWT_SECRET", "change-me-in-production")],
            "well-known default 'change-me-in-production'",
        ),
        (&[("JWT_SECRET", "short")], "use at least 32 random bytes"),
        (&[("JWT_SECRET", JWT)], "NODE_REGISTRATION_PSK is not set"),
        (
            &[
                ("JWT_SECRET", JWT),
                ("NODE_REGISTRATION_PSK", "default-psk-change-me"),
            ],
            "well-known default 'default-psk-change-me'",
        ),
        (
            &[
                ("JWT_SECRET", JWT),
                ("NODE_REGISTRATION_PSK", "psk-for-the-test"),
            ],
            "the admin account 'admin' does not exist yet: set BOOTSTRAP_ADMIN_PASSWORD",
        ),
    ];
    for (env, message) in cases {
        let mut c = orchestrator(tmp.path());
        base(&mut c);
        c.envs(env.iter().copied());
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(1), "{env:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{env:?}: expected '{message}' in:\n{}",
            stderr(&out)
        );
    }
    // With the admin password set, the API egress service still needs its token.
    let mut c = orchestrator(tmp.path());
    base(&mut c);
    c.envs([
        ("JWT_SECRET", JWT),
        ("NODE_REGISTRATION_PSK", "psk-for-the-test"),
        ("BOOTSTRAP_ADMIN_PASSWORD", "an admin password"),
    ]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("API_EGRESS_BEARER_TOKEN is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_bootstrap_file_stops_the_start_with_its_location() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let yaml = tmp.path().join("bootstrap.yaml");
    std::fs::write(
        &yaml,
        "version: 1\npreferences:\n  - {key: a, value: 1, value_type: number\n",
    )
    .expect("write");
    let out = run(orchestrator(tmp.path())
        .args(["dev", "--no-demo", "--gateway-listen", "127.0.0.1:0"])
        .env("BOOTSTRAP_YAML_PATH", &yaml)
        .env("CONTAINER_HOST", "unix:///nonexistent.sock"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bootstrap.yaml") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn migrate_only_on_sqlite_creates_the_database_and_exits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("sub/dir/orchestrator.db");
    let out = run(orchestrator(tmp.path())
        .arg("--migrate-only")
        .env("DATABASE_URL", format!("sqlite://{}", db.display())));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(db.is_file(), "the SQLite file exists after --migrate-only");
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    // Again: nothing to do, still success.
    let again = run(orchestrator(tmp.path())
        .arg("--migrate-only")
        .env("DATABASE_URL", format!("sqlite://{}", db.display())));
    assert!(again.status.success(), "{}", stderr(&again));
}

#[tokio::test]
async fn migrate_only_on_postgresql() {
    let Some(admin) = pg_url() else { return };
    let (url, name) = create_db(&admin).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(orchestrator(tmp.path())
        .arg("--migrate-only")
        .env("DATABASE_URL", &url));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('users', 'tasks', 'nodes', 'sched_jobs')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(tables, 4, "core and scheduler tables exist");
    drop(conn);
    drop_db(&admin, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgresql_with_a_bootstrap_file_stops_on_sigterm() {
    let Some(admin) = pg_url() else { return };
    let (url, name) = create_db(&admin).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let yaml = tmp.path().join("bootstrap.yaml");
    std::fs::write(
        &yaml,
        "version: 1\n\
         preferences:\n  - {key: language.preferred, value: en, value_type: string}\n  \
         - {key: bad.one, value: x, value_type: number}\n\
         system_settings:\n  - {key: models.cache.max_bytes, value: 1024, value_type: number}\n\
         access_control_rules:\n  - {subject_type: system, action: api.call, resource_type: api.provider_operation, resource_pattern: openai/chat, effect: allow}\n\
         admin_user: {handle: operator, password_env: OPERATOR_PASSWORD}\n",
    )
    .expect("write");
    let gw_port = free_port();
    let gw = format!("http://127.0.0.1:{gw_port}");
    let egress_port = free_port();
    let mut cmd = orchestrator(tmp.path());
    cmd.args(["serve", "--log-format", "json"])
        .env("DATABASE_URL", &url)
        .env("JWT_SECRET", JWT)
        .env("NODE_REGISTRATION_PSK", "psk-for-the-test")
        .env("API_EGRESS_BEARER_TOKEN", "egress-token")
        .env("OPERATOR_PASSWORD", "operator password 1")
        .env("BOOTSTRAP_YAML_PATH", &yaml)
        .env("USER_GATEWAY_LISTEN_ADDR", format!("127.0.0.1:{gw_port}"))
        .env("CONTROL_PLANE_LISTEN_ADDR", "127.0.0.1:0")
        .env("API_EGRESS_LISTEN_ADDR", format!("127.0.0.1:{egress_port}"))
        .env(
            "CYNODE_CREDENTIAL_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("start serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(l);
        }
    });
    let mut log = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut gateway_up = false;
    let mut egress_up = false;
    while !(gateway_up && egress_up) {
        let l = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no 'user gateway listening' within 60 s:\n{}",
                    log.join("\n")
                )
            })
            .unwrap_or_else(|| panic!("serve exited early:\n{}", log.join("\n")));
        gateway_up |= l.contains("user gateway listening");
        egress_up |= l.contains("API egress service listening");
        log.push(l);
    }
    // JSON logs: one object per line.
    for l in &log {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{l}"
        );
    }
    assert!(
        log.iter()
            .any(|l| l.contains("bootstrap file applied") && l.contains("\"rejected\":1")),
        "the import is logged with its rejected entry:\n{}",
        log.join("\n")
    );

    assert!(
        log.iter()
            .any(|l| l.contains("API egress service mode") && l.contains("\"mode\":\"policy\"")),
        "with a credential key the API egress service runs in policy mode:\n{}",
        log.join("\n")
    );
    let http = reqwest::Client::new();
    let call = http
        .post(format!("http://127.0.0.1:{egress_port}/v1/call"))
        .json(&json!({"provider": "openai", "operation": "chat", "params": {}}))
        .send()
        .await
        .expect("egress call");
    assert_eq!(
        call.status(),
        401,
        "the API egress service wants its bearer token"
    );
    let ready = http
        .get(format!("{gw}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "no worker, no model: not ready");
    let login = http
        .post(format!("{gw}/v1/auth/login"))
        .json(&json!({"handle": "operator", "password": "operator password 1"}))
        .send()
        .await
        .expect("login");
    assert_eq!(
        login.status(),
        200,
        "the admin named in the bootstrap file logs in"
    );

    let pid = child.id().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits within 60 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "SIGTERM: clean exit, got {status:?}");

    let store = PgStore::connect(&url, 2).await.expect("connect store");
    let pref = store
        .get_preference(Scope::System, "language.preferred")
        .await
        .expect("seeded preference");
    assert_eq!(
        (pref.value, pref.updated_by.as_deref()),
        (json!("en"), Some("bootstrap"))
    );
    assert!(
        store
            .get_preference(Scope::System, "bad.one")
            .await
            .is_err()
    );
    let setting = store
        .get_setting("models.cache.max_bytes")
        .await
        .expect("seeded setting");
    assert_eq!(
        (setting.value, setting.updated_by.as_deref()),
        (json!(1024), Some("bootstrap"))
    );
    let rules = store
        .list_access_rules(&AccessRuleFilter::default())
        .await
        .expect("rules");
    assert_eq!(rules.len(), 1, "the seeded access rule");
    assert_eq!(rules[0].resource_pattern, "openai/chat");
    assert!(
        store.get_user_by_handle("admin").await.is_err(),
        "no default `admin` when the file names another"
    );
    store.close().await;
    drop_db(&admin, &name).await;
}

#[test]
fn a_malformed_image_alias_stops_the_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(orchestrator(tmp.path())
        .args(["serve", "--gateway-listen", "127.0.0.1:0"])
        .args(["--control-plane-listen", "127.0.0.1:0"])
        .env("API_EGRESS_DISABLED", "true")
        .env("JWT_SECRET", JWT)
        .env("NODE_REGISTRATION_PSK", "psk-for-the-test")
        .env("BOOTSTRAP_ADMIN_PASSWORD", "an admin password")
        .env(
            "SANDBOX_IMAGE_ALIASES",
            "alpine:latest=local/alpine,nonsense",
        ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SANDBOX_IMAGE_ALIASES: \"nonsense\" is not `from=to`"),
        "{}",
        stderr(&out)
    );
}
