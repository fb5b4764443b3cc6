//! Security properties of the sandbox on a real engine. Each test fails if its property
//! breaks: network isolation, environment hygiene, pids and memory limits, read-only
//! root, non-root without capabilities, and the inference socket as the only channel.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use cynode_sandbox::{InferenceAccess, InferenceConfig, InputFile, JobSpec, JobStatus};

fn sh(env: &common::TestEnv, script: &str) -> JobSpec {
    JobSpec::new(env.image.clone(), ["sh", "-c", script])
}

/// A non-loopback address of this host, if it has one.
fn host_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A TCP listener on all interfaces counting accepted connections.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

/// Lines `key=value` printed by a script, as a map.
fn kv(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn no_network_route_out() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let helper = cynode_testkit::podman::uds_http_helper().await;
    let (port, hits) = counting_listener().await;
    let mut targets = vec![format!("1.1.1.1:80"), format!("127.0.0.1:{port}")];
    if let Some(ip) = host_ip() {
        targets.push(SocketAddr::new(ip, port).to_string());
    }
    let mut script = String::from("echo ifaces=$(ls /sys/class/net);");
    for (i, target) in targets.iter().enumerate() {
        script.push_str(&format!(
            "out=$(/workspace/uds-http tcp {target}); echo tcp{i}_rc=$?; echo tcp{i}=$out;"
        ));
    }
    script.push_str("wget -q -T 3 -O /dev/null http://example.com/ 2>/dev/null; echo wget_rc=$?;");
    let r = t
        .driver
        .run(
            sh(&env, &script)
                .with_workspace_file(InputFile::executable("uds-http", helper.to_vec())),
        )
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Succeeded, "stderr: {}", r.stderr.text);
    let out = kv(&r.stdout.text);
    assert_eq!(out["ifaces"], "lo", "only the loopback interface may exist");
    for i in 0..targets.len() {
        assert_eq!(
            out[&format!("tcp{i}_rc")],
            "1",
            "connect to {} succeeded: {out:?}",
            targets[i]
        );
    }
    assert!(out["tcp0"].contains("unreachable"), "{out:?}");
    assert_ne!(out["wget_rc"], "0", "an HTTP fetch by name must fail");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the host listener was reached"
    );
}

#[tokio::test]
async fn host_environment_and_engine_are_not_visible() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let socket = env.docker_host.trim_start_matches("unix://").to_string();
    let r = t
        .driver
        .run(
            sh(
                &env,
                &format!(
                    "env; echo ---; ls {socket} 2>/dev/null && echo engine-visible; \
                     ls /var/run/docker.sock /run/podman 2>/dev/null && echo engine-visible; \
                     ls {} 2>/dev/null && echo mount-root-visible; true",
                    t.mount_root.display()
                ),
            )
            .with_env("MINE", "1")
            .with_env("OLLAMA_BASE_URL", "http://127.0.0.1:11434")
            .with_env("HTTP_PROXY", "http://proxy:3128"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Succeeded, "stderr: {}", r.stderr.text);
    let (env_text, rest) = r.stdout.text.split_once("---\n").unwrap();
    let mut names: Vec<&str> = env_text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort();
    // Exactly: the engine's defaults, the node's context keys, and the request's own.
    let allowed = [
        "CYNODE_ARTIFACTS_DIR",
        "CYNODE_JOB_ID",
        "CYNODE_TASK_ID",
        "CYNODE_WORKSPACE_DIR",
        "HOME",
        "HOSTNAME",
        "MINE",
        "PATH",
        "PWD",
        "SHLVL",
        "TERM",
        "container",
    ];
    for n in &names {
        assert!(
            allowed.contains(n),
            "unexpected variable {n} inside the sandbox"
        );
    }
    // Nothing of this process's environment (cargo, test contract) leaks in.
    for (k, v) in std::env::vars() {
        if k.starts_with("CARGO") || k.starts_with("CYNODE_") || k.starts_with("RUST") {
            assert!(!names.contains(&k.as_str()), "host variable {k} visible");
            if v.len() > 8 {
                assert!(!env_text.contains(&v), "value of host variable {k} visible");
            }
        }
    }
    assert!(!env_text.contains("11434") && !env_text.contains("proxy:3128"));
    assert!(!rest.contains("visible"), "{rest}");
}

#[tokio::test]
async fn pids_limit_contains_a_fork_bomb() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;

    // 1. Bounded probe: try to start 200 processes under a limit of 32.
    let probe = sh(
        &env,
        // The child shell dies at the first failed fork; the parent only uses builtins.
        "sh -c 'i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done' 2>/dev/null; \
         set -- /proc/[0-9]*; echo procs=$#",
    )
    .with_pids(32)
    .with_timeout(Duration::from_secs(60));
    let r = t.driver.run(probe).await.unwrap();
    let procs: usize = kv(&r.stdout.text)
        .get("procs")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no count: {:?} / {:?}", r.stdout.text, r.stderr.text));
    assert!(procs <= 32, "{procs} processes ran under a limit of 32");
    assert!(
        procs >= 10,
        "the probe should have started processes up to the limit: {procs}"
    );

    // 2. A real fork bomb (only after the limit is proven): it is stopped, a job next to
    // it still runs, and this host can still start processes.
    let bomb = sh(&env, "b() { b | b & }; b; sleep 60")
        .with_pids(64)
        .with_cpus(0.5)
        .with_timeout(Duration::from_secs(10));
    let bomb_job = t.driver.spawn(bomb);
    let neighbour = t.driver.run(sh(&env, "echo ok")).await.unwrap();
    assert_eq!(neighbour.status, JobStatus::Succeeded);
    assert_eq!(neighbour.stdout.text, "ok\n");
    let host_ok = tokio::process::Command::new("true").status().await.unwrap();
    assert!(host_ok.success());
    let r = bomb_job.wait().await.unwrap();
    assert!(
        matches!(r.status, JobStatus::TimedOut | JobStatus::Failed),
        "fork bomb ended {:?}",
        r.status
    );
    assert!(t.wait_until_clean().await.is_empty());
}

#[tokio::test]
async fn memory_hog_is_killed_and_reported() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    let hog = "dd if=/dev/zero of=/dev/null bs=256M count=1 && echo survived";
    let r = t
        .driver
        .run(sh(&env, hog).with_memory_mb(64))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        JobStatus::MemoryKilled,
        "stdout {:?} stderr {:?}",
        r.stdout.text,
        r.stderr.text
    );
    assert_eq!(r.exit_code, 137);
    assert!(r.diagnostics.oom_killed);
    assert_eq!(r.status.protocol_status(), "failed");
    assert!(!r.stdout.text.contains("survived"));
    // Control: the same command fits in a larger limit, so the limit is what killed it.
    let r = t
        .driver
        .run(sh(&env, hog).with_memory_mb(512))
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Succeeded, "stderr {:?}", r.stderr.text);
    assert_eq!(r.stdout.text, "survived\n");
}

#[tokio::test]
async fn root_filesystem_is_read_only_and_scratch_is_bounded() {
    let env = require_env!();
    let t = common::driver(&env, |c| c.default_limits.tmp_mb = 8).await;
    let r = t
        .driver
        .run(sh(
            &env,
            "touch /etc/x 2>/dev/null; echo etc=$?; touch /bin/x 2>/dev/null; echo bin=$?; \
             touch /x 2>/dev/null; echo root=$?; \
             touch /workspace/a; echo workspace=$?; touch /tmp/b; echo tmp=$?; \
             touch /job/c; echo job=$?; \
             dd if=/dev/zero of=/tmp/big bs=1M count=20 2>/dev/null; echo tmpfill=$?; \
             set -- $(ls -l /tmp/big); echo tmpsize=$5",
        ))
        .await
        .unwrap();
    let out = kv(&r.stdout.text);
    assert_ne!(out["etc"], "0", "{out:?}");
    assert_ne!(out["bin"], "0", "{out:?}");
    assert_ne!(out["root"], "0", "{out:?}");
    assert_eq!(out["workspace"], "0", "{out:?}");
    assert_eq!(out["tmp"], "0", "{out:?}");
    assert_eq!(out["job"], "0", "{out:?}");
    assert_ne!(out["tmpfill"], "0", "/tmp must stop at its size: {out:?}");
    let size: u64 = out["tmpsize"].parse().unwrap();
    assert!(size <= 8 << 20, "/tmp held {size} bytes with an 8 MiB cap");
}

#[tokio::test]
async fn runs_as_non_root_without_capabilities() {
    let env = require_env!();
    let t = common::driver(&env, |_| {}).await;
    // The test image has no USER, so its default is root: the driver must override it.
    let r = t
        .driver
        .run(sh(
            &env,
            "echo uid=$(id -u); echo gid=$(id -g); cat /proc/self/status",
        ))
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Succeeded, "stderr: {}", r.stderr.text);
    let out = kv(&r.stdout.text);
    assert_eq!(out["uid"], common::SANDBOX_UID.to_string());
    assert_eq!(out["gid"], common::SANDBOX_UID.to_string());
    let status = &r.stdout.text;
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            common::status_field(status, cap),
            Some("0000000000000000"),
            "{cap}"
        );
    }
    assert_eq!(common::status_field(status, "NoNewPrivs"), Some("1"));
    assert_eq!(
        common::status_field(status, "Seccomp"),
        Some("2"),
        "runtime seccomp filter"
    );
}

struct MockOllama {
    addr: SocketAddr,
    chats: Arc<AtomicUsize>,
    others: Arc<AtomicUsize>,
}

/// A deterministic mock of the Ollama API on all interfaces (so that a sandbox with a
/// route out could reach it directly).
async fn mock_ollama() -> MockOllama {
    let chats = Arc::new(AtomicUsize::new(0));
    let others = Arc::new(AtomicUsize::new(0));
    let (c, o1, o2) = (chats.clone(), others.clone(), others.clone());
    let app = Router::new()
        .route(
            "/api/chat",
            post(move |body: Bytes| {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    axum::Json(serde_json::json!({
                        "model": v["model"], "done": true,
                        "message": {"role": "assistant", "content": "pong from mock"}
                    }))
                }
            }),
        )
        .route(
            "/api/pull",
            post(move || async move {
                o1.fetch_add(1, Ordering::SeqCst);
                "pulled"
            }),
        )
        .route(
            "/api/delete",
            axum::routing::delete(move || async move {
                o2.fetch_add(1, Ordering::SeqCst);
                "deleted"
            }),
        )
        .route(
            "/api/tags",
            get(|| async { axum::Json(serde_json::json!({"models": [{"name": "tiny:latest"}]})) }),
        );
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    MockOllama {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        chats,
        others,
    }
}

#[tokio::test]
async fn inference_socket_answers_and_nothing_else_does() {
    let env = require_env!();
    let mock = mock_ollama().await;
    let upstream = format!("http://{}", mock.addr);
    let t = common::driver(&env, |c| {
        c.inference = Some(InferenceConfig {
            upstream_url: upstream.clone(),
            ..Default::default()
        })
    })
    .await;
    let helper = cynode_testkit::podman::uds_http_helper().await;
    let port = mock.addr.port();
    let mut direct = vec![format!("127.0.0.1:{port}")];
    if let Some(ip) = host_ip() {
        direct.push(SocketAddr::new(ip, port).to_string());
    }
    let mut script = String::from(
        "H=/workspace/uds-http; S=/run/cynode/inference-proxy.sock; \
         echo \"url=$INFERENCE_PROXY_URL\"; echo sockets=$(ls /run/cynode); \
         echo health=$($H http $S GET /healthz); \
         echo chat=$($H http $S POST /api/chat '{\"model\":\"tiny\",\"messages\":[]}'); \
         echo other=$($H http $S POST /api/chat '{\"model\":\"big:70b\"}'); \
         echo pull=$($H http $S POST /api/pull '{\"model\":\"tiny\"}'); \
         echo delete=$($H http $S DELETE /api/delete '{\"model\":\"tiny\"}'); \
         case \"$(env)\" in *11434*|*127.0.0.1:*) echo tcpurl=leaked;; *) echo tcpurl=none;; esac;",
    );
    for (i, target) in direct.iter().enumerate() {
        script.push_str(&format!("$H tcp {target} >/dev/null; echo direct{i}=$?;"));
    }
    let spec = sh(&env, &script)
        .with_inference(InferenceAccess {
            allowed_models: Some(vec!["tiny".into()]),
            ..Default::default()
        })
        .with_workspace_file(InputFile::executable("uds-http", helper.to_vec()));
    let r = t.driver.run(spec).await.unwrap();
    assert_eq!(
        r.status,
        JobStatus::Succeeded,
        "stdout {} stderr {}",
        r.stdout.text,
        r.stderr.text
    );
    let out = kv(&r.stdout.text);
    assert!(out["url"].starts_with("http+unix://"), "{out:?}");
    assert_eq!(
        out["url"],
        "http+unix://%2Frun%2Fcynode%2Finference-proxy.sock"
    );
    assert_eq!(out["sockets"], "inference-proxy.sock");
    assert!(
        out["health"].starts_with("STATUS 200") && out["health"].contains("ok"),
        "{out:?}"
    );
    assert!(
        out["chat"].starts_with("STATUS 200") && out["chat"].contains("pong from mock"),
        "{out:?}"
    );
    for key in ["other", "pull", "delete"] {
        assert!(out[key].starts_with("STATUS 403 "), "{key}: {out:?}");
    }
    assert_eq!(out["tcpurl"], "none");
    for i in 0..direct.len() {
        assert_eq!(
            out[&format!("direct{i}")],
            "1",
            "reached the model server directly: {out:?}"
        );
    }
    assert_eq!(
        mock.chats.load(Ordering::SeqCst),
        1,
        "exactly the one allowed chat went upstream"
    );
    assert_eq!(
        mock.others.load(Ordering::SeqCst),
        0,
        "management calls reached the model server"
    );
    // The socket and its directory are gone with the job.
    assert!(t.wait_until_clean().await.is_empty());
}
