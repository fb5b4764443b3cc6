//! Provider keys at rest in the real storage backends: only ciphertext is stored, the
//! plaintext appears nowhere in the database, and the egress path still works on top.
//!
//! SQLite: a full egress call on a file database, then a byte search of the database
//! files. PostgreSQL (needs `CYNODE_TEST_PG_URL`; a fresh database, dropped afterwards):
//! the row as stored, searched as bytes and as text.

mod common;

use std::sync::Arc;

use chrono::Utc;
use cynode_core::{
    model::NewUser,
    store::{AccessAuditFilter, AccessControlStore, CredentialStore, SqliteStore, Store},
};
use cynode_egress::{
    CredentialCipher, Secret,
    api::{
        Decision, Effect, EgressConfig, EgressState, JobClaims, JobTokenKey, NewCredential,
        PolicyDeps, api_call_rule, open_credential, router, store_credential,
    },
};
use cynode_testkit::MockLlm;
use serde_json::json;

const KEY: &str = "sk-at-rest-3b1f6e0a9c8d7e6f5a4b3c2d1e0f9a8b";

fn new_credential(owner: uuid::Uuid) -> NewCredential {
    NewCredential {
        owner_type: "user".into(),
        owner_id: owner,
        provider: "openai".into(),
        credential_type: "api_key".into(),
        credential_name: "default".into(),
        secret: Secret::new(KEY),
        expires_at: None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn sqlite_holds_only_ciphertext_and_the_egress_call_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (user, task) = common::user_with_task(store.as_ref(), "carol", "t").await;
    let cipher = Arc::new(CredentialCipher::single("k1", &[11u8; 32]));
    let stored = store_credential(store.as_ref(), &cipher, new_credential(user.id.as_uuid()))
        .await
        .unwrap();
    let again = store.get_credential(stored.id).await.unwrap();
    assert_eq!(again.ciphertext, stored.ciphertext);
    assert_eq!(again.kid.as_deref(), Some("k1"));
    assert_eq!(open_credential(&cipher, &again).unwrap().expose(), KEY);

    // A full call through the egress service on this store.
    let (_, mock) = MockLlm::builder().require_api_key(KEY).start().await;
    store
        .create_access_rule(api_call_rule(
            user.id.as_uuid(),
            "openai/chat",
            Effect::Allow,
        ))
        .await
        .unwrap();
    let token_key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([3u8; 32])
    };
    let config: EgressConfig = serde_json::from_value(json!({
        "job_token_key": token_key,
        "providers": {"openai": {"kind": "open_ai", "base_url": format!("{}/v1", mock.base_url())}}
    }))
    .unwrap();
    let deps = PolicyDeps::from_store(store.clone(), cipher);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(EgressState::policy(&config, deps).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // The token's job runs (the egress service accepts job tokens only then).
    let job = common::job_in(
        store.as_ref(),
        task.id,
        cynode_core::model::JobStatus::Running,
    )
    .await;
    let token = JobTokenKey::from_base64(&Secret::new(token_key))
        .unwrap()
        .issue(&JobClaims::new(
            task.id,
            job,
            Utc::now(),
            chrono::Duration::minutes(5),
        ));
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/call"))
        .bearer_auth(token.expose())
        .json(&json!({"provider": "openai", "operation": "chat",
                      "params": {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // The decision is in the database's audit log.
    let audit = store
        .list_access_audit(&AccessAuditFilter::default())
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].decision, Decision::Allow);
    assert_eq!(audit[0].resource, "openai/chat");
    assert_eq!(audit[0].task_id, Some(task.id));

    // Every file of the database (main file, WAL, shared memory) is free of the key.
    drop(store);
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        scanned += bytes.len();
        assert!(
            !contains(&bytes, KEY.as_bytes()),
            "plaintext key found in {}",
            p.display()
        );
    }
    assert!(scanned > 0);
}

#[tokio::test]
async fn postgres_holds_only_ciphertext() {
    use sqlx::{Connection, Row};

    let Some(db) = common::TestDatabase::create().await else {
        return;
    };
    let url = db.url.clone();

    let result = async {
        let store: Arc<dyn Store> =
            Arc::new(cynode_core::store::PgStore::connect(&url, 2).await.unwrap());
        let user = store
            .create_user(NewUser {
                handle: "dave".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let cipher = CredentialCipher::single("k-pg", &[12u8; 32]);
        let stored = store_credential(store.as_ref(), &cipher, new_credential(user.id.as_uuid()))
            .await
            .unwrap();
        let usable = store
            .usable_credentials("user", user.id.as_uuid(), "openai", Utc::now())
            .await
            .unwrap();
        assert_eq!(usable.len(), 1);
        assert_eq!(open_credential(&cipher, &usable[0]).unwrap().expose(), KEY);

        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let row = sqlx::query(
            "SELECT credential_ciphertext, credential_kid, t::text AS whole_row,
                    position($1::bytea in credential_ciphertext) AS pos
             FROM api_credentials t WHERE id = $2",
        )
        .bind(KEY.as_bytes())
        .bind(stored.id.as_uuid())
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let ct: Vec<u8> = row.get("credential_ciphertext");
        let kid: Option<String> = row.get("credential_kid");
        let whole: String = row.get("whole_row");
        let pos: i32 = row.get("pos");
        assert_eq!(kid.as_deref(), Some("k-pg"));
        assert_ne!(ct, KEY.as_bytes());
        assert!(!contains(&ct, KEY.as_bytes()));
        assert_eq!(pos, 0, "key bytes inside the stored ciphertext");
        assert!(!whole.contains(KEY), "key in the row's text form");
        // Nothing else in the database holds it either.
        let dump: String = sqlx::query_scalar(
            "SELECT coalesce(string_agg(t::text, ' '), '') FROM (
                 SELECT row_to_json(u)::text AS t FROM users u
                 UNION ALL SELECT row_to_json(c)::text FROM api_credentials c) s",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(!dump.contains(KEY));
        let _ = conn.close().await;
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    let _ = db.drop_db().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
