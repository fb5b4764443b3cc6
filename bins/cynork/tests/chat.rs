//! cynork's chat and models commands against the real orchestrator, with a mock LLM
//! (Ollama API) as its model endpoint: one-shot, streamed replies, errors, and an
//! interactive session through a pseudo-terminal.

mod common;

use std::time::Duration;

use common::Stack;
use cynode_testkit::{MockHandle, MockLlm};

/// A mock LLM on its own runtime thread (kept for the rest of the test process).
fn mock_llm(reply: &str, chunk_delay: Duration) -> MockHandle {
    let (tx, rx) = std::sync::mpsc::channel();
    let reply = reply.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let (_, h) = MockLlm::builder()
                    .reply(reply)
                    .chunk_delay(chunk_delay)
                    .start()
                    .await;
                tx.send(h).expect("send handle");
                std::future::pending::<()>().await;
            });
    });
    rx.recv().expect("mock started")
}

/// A stack whose model endpoint (`OLLAMA_BASE_URL`) is `mock`, or none at all.
fn chat_stack(mock: Option<&MockHandle>) -> Option<Stack> {
    Stack::start_with(mock.map(MockHandle::base_url).as_deref())
}

#[test]
fn models_list_table_and_json() {
    let mock = mock_llm("OK", Duration::ZERO);
    let Some(s) = chat_stack(Some(&mock)) else {
        return;
    };
    let cfg = s.config("m");
    s.cynork(&cfg, &["models", "list"], None)
        .fails(3, "not logged in");
    s.login_admin(&cfg);
    let j = s
        .cynork(&cfg, &["models", "list", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(j["object"], "list");
    let ids: Vec<&str> = j["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"cynodeai.pm"), "{j}");
    let r = s.cynork(&cfg, &["models", "list"], None).ok();
    assert!(r.stdout.lines().any(|l| l == "cynodeai.pm"), "{r:?}");
}

#[test]
fn one_shot_plain_streams_the_reply() {
    let mock = mock_llm("OK from the model", Duration::from_millis(5));
    let Some(s) = chat_stack(Some(&mock)) else {
        return;
    };
    let cfg = s.config("c");
    s.login_admin(&cfg);
    let r = s
        .cynork(
            &cfg,
            &["chat", "--message", "Reply with exactly: OK", "--plain"],
            None,
        )
        .ok();
    assert_eq!(r.stdout, "OK from the model\n");
    // The model saw the message; the CLI asked for a stream.
    let sent = mock.requests();
    assert!(
        sent.iter()
            .any(|q| q.body_text().contains("Reply with exactly: OK"))
    );
    // --thread-new announces the thread on stderr; --project-id is accepted.
    let r = s
        .cynork(
            &cfg,
            &["chat", "-m", "again", "--plain", "--thread-new"],
            None,
        )
        .ok();
    assert!(r.stderr.contains("New thread started: "), "{r:?}");
    // Not a terminal: the Markdown source is printed as is (no escapes).
    let r = s.cynork(&cfg, &["chat", "-m", "x"], None).ok();
    assert_eq!(r.stdout, "OK from the model\n");
    // Piped session: the reply of each line, then /exit.
    let r = s
        .cynork(&cfg, &["chat", "--plain"], Some("hello\n/exit\n"))
        .ok();
    assert!(r.stdout.contains("OK from the model\n"), "{r:?}");
}

#[test]
fn no_inference_is_an_inference_unavailable_error() {
    let Some(s) = chat_stack(None) else { return };
    let cfg = s.config("n");
    s.login_admin(&cfg);
    let r = s.cynork(&cfg, &["chat", "-m", "hi", "--plain"], None);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(r.stderr.contains("503 Service Unavailable"), "{r:?}");
    assert!(r.stderr.contains("(model_unavailable)"), "{r:?}");
    // In a session the error is printed and the session goes on.
    let r = s.cynork(&cfg, &["chat"], Some("hi\n/version\n")).ok();
    assert!(r.stderr.contains("model_unavailable"));
    assert!(r.stdout.contains("cynork "));
}

/// An interactive session in a pseudo-terminal: banner, prompt, a streamed and rendered
/// reply, slash commands, a shell escape, /exit.
#[test]
fn interactive_chat_in_a_terminal() {
    let mock = mock_llm(
        "# Title\n- item **bold**\nthe end",
        Duration::from_millis(5),
    );
    let Some(s) = chat_stack(Some(&mock)) else {
        return;
    };
    let cfg = s.config("pty");
    s.login_admin(&cfg);
    let mut c = s.command(&cfg, &["chat"]);
    c.env("TERM", "xterm");
    let mut p = expectrl::Session::spawn(c).expect("spawn in a pty");
    p.set_expect_timeout(Some(Duration::from_secs(60)));
    p.expect("Slash commands: /help for list.").expect("banner");
    p.expect("> ").expect("prompt");
    p.send_line("/model").expect("type");
    p.expect("model: (default)").expect("model");
    p.send_line("hello there").expect("type");
    // Rendered: the heading in bold without its '#', the bullet as a dot.
    p.expect("\x1b[1m\x1b[4mTitle").expect("styled heading");
    p.expect("•").expect("bullet");
    p.expect("the end").expect("last line");
    p.send_line("! echo shell-ok").expect("type");
    p.expect("shell-ok").expect("shell escape");
    p.send_line("/exit").expect("type");
    p.expect(expectrl::Eof).expect("session ends");
    assert!(
        mock.requests()
            .iter()
            .any(|q| q.body_text().contains("hello there"))
    );
}
