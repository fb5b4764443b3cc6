//! Test harness for the gateway: a router over a real store, a hand-moved clock, a
//! recording dispatcher, and helpers to send requests with `oneshot`.
#![allow(dead_code)]

pub mod cases;
pub mod pg;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cynode_core::JobId;
use cynode_core::auth::{JwtKey, JwtKeys, PasswordParams, hash_password};
use cynode_core::model::{Job, NewUser, Task, User};
use cynode_core::store::{MemoryStore, SqliteStore, Store};
use cynode_server::gateway::{
    GatewayConfig, GatewayState, ManualClock, TaskDispatcher, TokenResponse, router,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

pub async fn sqlite() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory().await.expect("open sqlite"))
}

/// Cheap hashing so tests spend their time on behaviour.
pub fn test_config() -> GatewayConfig {
    GatewayConfig {
        password_params: PasswordParams::insecure_fast_for_tests(),
        ..Default::default()
    }
}

pub fn test_keys() -> JwtKeys {
    JwtKeys::new(JwtKey::new(
        "test-key",
        b"test secret for the gateway suite".to_vec(),
    ))
}

/// Records what the gateway tells its dispatcher.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<String>>,
    pub payloads: Mutex<Vec<Value>>,
}

#[async_trait]
impl TaskDispatcher for Recorder {
    async fn task_created(&self, task: &Task, job: &Job) -> cynode_core::Result<()> {
        self.events
            .lock()
            .expect("lock")
            .push(format!("created {} {}", task.id, job.id));
        self.payloads
            .lock()
            .expect("lock")
            .push(job.payload.clone());
        Ok(())
    }
    async fn task_canceled(&self, task: &Task, jobs: &[JobId]) -> cynode_core::Result<()> {
        self.events
            .lock()
            .expect("lock")
            .push(format!("canceled {} {}", task.id, jobs.len()));
        Ok(())
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<String> {
        self.events.lock().expect("lock").clone()
    }
}

pub struct H {
    pub app: Router,
    pub state: GatewayState,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Recorder>,
    pub keys: JwtKeys,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// Asserts an exact Problem Details answer.
    pub fn assert_problem(&self, status: u16, detail: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "status; body: {}",
            self.text()
        );
        assert_eq!(self.content_type(), "application/problem+json");
        let (t, title) = match status {
            400 => ("urn:cynodeai:error:validation", "Bad Request"),
            401 => ("urn:cynodeai:error:authentication", "Unauthorized"),
            403 => ("urn:cynodeai:error:authorization", "Forbidden"),
            404 => ("urn:cynodeai:error:not_found", "Not Found"),
            413 => ("urn:cynodeai:error:payload_too_large", "Payload Too Large"),
            429 => ("urn:cynodeai:error:rate_limit", "Too Many Requests"),
            500 => ("urn:cynodeai:error:internal", "Internal Server Error"),
            504 => ("urn:cynodeai:error:timeout", "Gateway Timeout"),
            other => panic!("no expectation for {other}"),
        };
        assert_eq!(
            self.json(),
            serde_json::json!({"type": t, "title": title, "status": status, "detail": detail})
        );
    }
}

impl H {
    pub async fn new(store: Arc<dyn Store>) -> H {
        Self::with_config(store, test_config()).await
    }

    pub async fn with_config(store: Arc<dyn Store>, config: GatewayConfig) -> H {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let dispatcher = Arc::new(Recorder::default());
        let keys = test_keys();
        let state = GatewayState::builder(store.clone(), keys.clone())
            .config(config)
            .clock(clock.clone())
            .dispatcher(dispatcher.clone())
            .build();
        H {
            app: router(state.clone()),
            state,
            clock,
            store,
            dispatcher,
            keys,
        }
    }

    /// A user with a password (and an e-mail when given).
    pub async fn user_with(
        &self,
        handle: &str,
        password: Option<&str>,
        email: Option<&str>,
    ) -> User {
        let password = password
            .map(|p| hash_password(p, &PasswordParams::insecure_fast_for_tests()).expect("hash"));
        self.store
            .create_user(NewUser {
                handle: handle.into(),
                email: email.map(String::from),
                password,
            })
            .await
            .expect("create user")
    }

    pub async fn user(&self, handle: &str, password: &str) -> User {
        self.user_with(handle, Some(password), None).await
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn request(
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Request<Body> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).expect("json"))
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 10], 40000))));
        req
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.send(Self::request(method, path, token, body.as_ref()))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn login(&self, handle: &str, password: &str) -> TokenResponse {
        let r = self
            .post(
                "/v1/auth/login",
                None,
                serde_json::json!({"handle": handle, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login: {}", r.text());
        serde_json::from_slice(&r.body).expect("token response")
    }

    pub async fn auth_events(&self) -> Vec<(String, bool, Option<String>)> {
        let mut v = self
            .store
            .list_audit(&cynode_core::model::AuditFilter {
                kind: cynode_core::model::AuditKind::Auth,
                user_id: None,
                since: None,
                limit: 1000,
            })
            .await
            .expect("audit");
        v.reverse();
        v.into_iter()
            .map(|r| match r {
                cynode_core::model::AuditRecord::Auth(a) => (a.event_type, a.success, a.reason),
                other => panic!("unexpected record {other:?}"),
            })
            .collect()
    }
}
