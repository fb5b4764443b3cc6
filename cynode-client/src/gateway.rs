//! Typed client for the user API gateway (user-api.md).
//!
//! ```no_run
//! # async fn run() -> Result<(), cynode_client::gateway::GatewayError> {
//! use cynode_client::gateway::GatewayClient;
//! use cynode_core::proto::v1::gateway::CreateTaskRequest;
//!
//! let mut gw = GatewayClient::new("http://localhost:12080")?;
//! let tokens = gw.login("admin", "admin123").await?;
//! gw.set_token(Some(tokens.access_token));
//! let task = gw
//!     .create_task(&CreateTaskRequest {
//!         prompt: "echo hello".into(),
//!         input_mode: "commands".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let result = gw.task_result(&task.task_id).await?;
//! println!("{} {}", result.task_id, result.status);
//! # Ok(()) }
//! ```
//!
//! Behaviour fixed by the CLI contract (cli.md §3): every request path is absolute and
//! resolved against the base URL, so a path in the base URL is dropped
//! (`http://h:1/prefix` → `http://h:1/v1/tasks`); the bearer token is sent when set
//! (never on refresh and health); no overall request timeout unless one is configured
//! (chat may take minutes); decoding is lenient (missing fields are empty, unknown
//! fields ignored). Errors carry the HTTP status and the parsed Problem Details or
//! OpenAI error ([`GatewayError`]). The client never prints and never exits: it is
//! shared by `cynork` and the Python bindings.

mod error;
mod sse;

use std::time::Duration;

use cynode_core::proto::v1::gateway::{
    CancelTaskResponse, ChatCompletion, ChatCompletionRequest, CreateTaskRequest, EffectivePrefs,
    LoadSkillRequest, LoginRequest, LogoutRequest, ModelList, PageQuery, PrefList, PrefQuery,
    RefreshRequest, SetPrefRequest, SetSettingRequest, Skill, SkillList, SkillListQuery, SkillMeta,
    Task, TaskList, TaskListQuery, TaskLogs, TaskResult, ThreadCreated, TokenResponse,
    UpdateSkillRequest, UserInfo,
};
pub use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

pub use error::GatewayError;
pub use sse::{ChatEvent, ChatStream};

/// Result of a gateway call.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// The gateway's default address (and the CLI's).
pub const DEFAULT_GATEWAY_URL: &str = "http://localhost:12080";

/// Header naming the project scope of chat requests.
pub const OPENAI_PROJECT_HEADER: &str = "OpenAI-Project";

/// Settings of a [`GatewayClient`].
#[derive(Clone, Debug)]
pub struct GatewayClientConfig {
    /// Base URL; only scheme, host and port are used.
    pub base_url: String,
    /// Access token sent as bearer.
    pub token: Option<String>,
    /// Overall time limit per request (default none: chat may take minutes).
    pub timeout: Option<Duration>,
    /// Time limit for establishing a connection (default 30 s).
    pub connect_timeout: Duration,
    /// `User-Agent` header (default `cynode-client/<version>`).
    pub user_agent: String,
}

impl Default for GatewayClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_GATEWAY_URL.into(),
            token: None,
            timeout: None,
            connect_timeout: Duration::from_secs(30),
            user_agent: format!("cynode-client/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A client of the user API gateway. Cheap to clone (connections are pooled and
/// shared).
#[derive(Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Whether a request carries the access token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Bearer,
    None,
}

impl GatewayClient {
    /// A client for `base_url` with the default settings and no token.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_config(GatewayClientConfig {
            base_url: base_url.into(),
            ..Default::default()
        })
    }

    /// A client with explicit settings.
    pub fn with_config(config: GatewayClientConfig) -> Result<Self> {
        let raw = if config.base_url.trim().is_empty() {
            DEFAULT_GATEWAY_URL
        } else {
            config.base_url.trim()
        };
        let base = Url::parse(raw)
            .map_err(|e| GatewayError::InvalidInput(format!("invalid gateway URL {raw:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(GatewayError::InvalidInput(format!(
                "invalid gateway URL {raw:?}: must be http(s)://host[:port]"
            )));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent);
        if let Some(t) = config.timeout {
            b = b.timeout(t);
        }
        let http = b.build().map_err(|e| GatewayError::Network {
            message: format!("build HTTP client: {e}"),
            source: Some(Box::new(e)),
        })?;
        Ok(Self {
            http,
            base,
            token: config.token.filter(|t| !t.is_empty()),
        })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// Sets or clears the access token.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token.filter(|t| !t.is_empty());
    }

    /// Whether an access token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The URL of `/`-joined `segments` (each percent-encoded), e.g.
    /// `["v1", "tasks", "my task"]` → `/v1/tasks/my%20task`.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        u.set_query(None);
        u.set_fragment(None);
        if let Ok(mut p) = u.path_segments_mut() {
            p.clear();
            p.extend(segments);
        }
        u
    }

    fn request(&self, method: Method, url: Url, auth: Auth) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, url);
        if auth == Auth::Bearer
            && let Some(t) = &self.token
        {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = r.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "request timed out"
            } else if e.is_connect() {
                "connect to gateway"
            } else {
                "request failed"
            };
            let detail = root_cause(&e);
            GatewayError::network(format!("{what}: {detail}"), e)
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(GatewayError::from_response(status.as_u16(), &body))
    }

    async fn read_json<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
        let body = resp
            .bytes()
            .await
            .map_err(|e| GatewayError::network("read response", e))?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        serde_json::from_slice(body).map_err(|e| GatewayError::Decode(e.to_string()))
    }

    /// Sends a request and decodes its JSON answer; `body` is sent as JSON when given.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&(dyn erased::Query + Sync)>,
        body: Option<&B>,
        auth: Auth,
    ) -> Result<T> {
        let mut r = self.request(method, self.url(segments), auth);
        if let Some(q) = query {
            r = q.apply(r);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        Self::read_json(self.send(r).await?).await
    }

    // ------------------------------------------------------------ raw access

    /// Sends any request and returns the raw JSON answer (`Value::Null` for an empty
    /// body). For routes without a typed method, and for callers that show the
    /// gateway's body unchanged.
    pub async fn request_value(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut r = self.request(method, self.url(segments), Auth::Bearer);
        if !query.is_empty() {
            r = r.query(query);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = self.send(r).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| GatewayError::network("read response", e))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        match serde_json::from_slice(&body) {
            Ok(v) => Ok(v),
            Err(_) => Ok(Value::String(String::from_utf8_lossy(&body).into_owned())),
        }
    }

    // ------------------------------------------------------------ probes and auth

    /// `GET /healthz` (no token): the body text of a `200` answer.
    pub async fn healthz(&self) -> Result<String> {
        let resp = self
            .send(self.request(Method::GET, self.url(&["healthz"]), Auth::None))
            .await?;
        resp.text()
            .await
            .map_err(|e| GatewayError::network("read response", e))
    }

    /// `GET /readyz` (no token): `Ok(body)` when ready, else the `503` as an error.
    pub async fn readyz(&self) -> Result<String> {
        let resp = self
            .send(self.request(Method::GET, self.url(&["readyz"]), Auth::None))
            .await?;
        resp.text()
            .await
            .map_err(|e| GatewayError::network("read response", e))
    }

    /// `POST /v1/auth/login`.
    pub async fn login(&self, handle: &str, password: &str) -> Result<TokenResponse> {
        let body = LoginRequest {
            handle: handle.into(),
            password: password.into(),
        };
        self.call(
            Method::POST,
            &["v1", "auth", "login"],
            None,
            Some(&body),
            Auth::None,
        )
        .await
    }

    /// `POST /v1/auth/refresh` (sent without the access token).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse> {
        let body = RefreshRequest {
            refresh_token: refresh_token.into(),
        };
        self.call(
            Method::POST,
            &["v1", "auth", "refresh"],
            None,
            Some(&body),
            Auth::None,
        )
        .await
    }

    /// `POST /v1/auth/logout`: ends the session of `refresh_token` (when given).
    pub async fn logout(&self, refresh_token: Option<&str>) -> Result<()> {
        let body = LogoutRequest {
            refresh_token: refresh_token.map(str::to_string),
        };
        let r = self
            .request(
                Method::POST,
                self.url(&["v1", "auth", "logout"]),
                Auth::Bearer,
            )
            .json(&body);
        self.send(r).await.map(drop)
    }

    /// `GET /v1/users/me`.
    pub async fn me(&self) -> Result<UserInfo> {
        self.call::<(), _>(
            Method::GET,
            &["v1", "users", "me"],
            None,
            None,
            Auth::Bearer,
        )
        .await
    }

    // ------------------------------------------------------------ tasks

    /// `POST /v1/tasks`.
    pub async fn create_task(&self, req: &CreateTaskRequest) -> Result<Task> {
        self.call(
            Method::POST,
            &["v1", "tasks"],
            None,
            Some(req),
            Auth::Bearer,
        )
        .await
        .map(Task::normalized)
    }

    /// `GET /v1/tasks`.
    pub async fn list_tasks(&self, query: &TaskListQuery) -> Result<TaskList> {
        let mut list: TaskList = self
            .call::<(), _>(
                Method::GET,
                &["v1", "tasks"],
                Some(&erased::Q(query)),
                None,
                Auth::Bearer,
            )
            .await?;
        list.tasks = list.tasks.into_iter().map(Task::normalized).collect();
        Ok(list)
    }

    /// `GET /v1/tasks/{task}`; `task` is an id or a task name.
    pub async fn get_task(&self, task: &str) -> Result<Task> {
        self.call::<(), _>(
            Method::GET,
            &["v1", "tasks", task],
            None,
            None,
            Auth::Bearer,
        )
        .await
        .map(Task::normalized)
    }

    /// `GET /v1/tasks/{task}/result`.
    pub async fn task_result(&self, task: &str) -> Result<TaskResult> {
        self.call::<(), _>(
            Method::GET,
            &["v1", "tasks", task, "result"],
            None,
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `POST /v1/tasks/{task}/cancel`.
    pub async fn cancel_task(&self, task: &str) -> Result<CancelTaskResponse> {
        self.call::<(), _>(
            Method::POST,
            &["v1", "tasks", task, "cancel"],
            None,
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `GET /v1/tasks/{task}/logs`; `stream` is `stdout`, `stderr` or `all` (default).
    pub async fn task_logs(&self, task: &str, stream: Option<&str>) -> Result<TaskLogs> {
        let q: Vec<(&str, &str)> = stream.map(|s| vec![("stream", s)]).unwrap_or_default();
        self.call::<(), _>(
            Method::GET,
            &["v1", "tasks", task, "logs"],
            Some(&erased::Pairs(&q)),
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `GET /v1/tasks/{task}/artifacts` (shape not fixed by the contract: raw JSON).
    pub async fn task_artifacts(&self, task: &str) -> Result<Value> {
        self.request_value(Method::GET, &["v1", "tasks", task, "artifacts"], &[], None)
            .await
    }

    /// Downloads one artifact's bytes: `GET /v1/tasks/{task}/artifacts/{artifact_id}`.
    pub async fn task_artifact_bytes(&self, task: &str, artifact_id: &str) -> Result<Vec<u8>> {
        let resp = self
            .send(self.request(
                Method::GET,
                self.url(&["v1", "tasks", task, "artifacts", artifact_id]),
                Auth::Bearer,
            ))
            .await?;
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| GatewayError::network("read response", e))
    }

    // ------------------------------------------------------------ models and chat

    /// `GET /v1/models`.
    pub async fn models(&self) -> Result<ModelList> {
        self.call::<(), _>(Method::GET, &["v1", "models"], None, None, Auth::Bearer)
            .await
    }

    fn chat_request(
        &self,
        req: &ChatCompletionRequest,
        project: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .request(
                Method::POST,
                self.url(&["v1", "chat", "completions"]),
                Auth::Bearer,
            )
            .json(req);
        if let Some(p) = project.filter(|p| !p.is_empty()) {
            r = r.header(OPENAI_PROJECT_HEADER, p);
        }
        r
    }

    /// `POST /v1/chat/completions` (non-streaming); `project` is sent as
    /// `OpenAI-Project`.
    pub async fn chat(
        &self,
        req: &ChatCompletionRequest,
        project: Option<&str>,
    ) -> Result<ChatCompletion> {
        let mut req = req.clone();
        req.stream = false;
        Self::read_json(self.send(self.chat_request(&req, project)).await?).await
    }

    /// `POST /v1/chat/completions` with `"stream": true`: the reply as a stream of
    /// [`ChatEvent`]s. A gateway that ignores `stream` and answers with one JSON
    /// completion is handled too (the stream then yields the whole text at once).
    /// Errors before the first byte (401, 502, …) are returned here; errors reported
    /// inside the stream come as stream items.
    pub async fn chat_stream(
        &self,
        req: &ChatCompletionRequest,
        project: Option<&str>,
    ) -> Result<ChatStream> {
        let mut req = req.clone();
        req.stream = true;
        let resp = self
            .send(self.chat_request(&req, project).header(
                reqwest::header::ACCEPT,
                "text/event-stream, application/json",
            ))
            .await?;
        let is_events = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if is_events {
            Ok(ChatStream::events(Box::pin(resp.bytes_stream())))
        } else {
            Ok(ChatStream::whole(Self::read_json(resp).await?))
        }
    }

    /// `POST /v1/chat/threads`: starts a new thread (it becomes the active one).
    pub async fn create_thread(&self, project: Option<&str>) -> Result<ThreadCreated> {
        let mut r = self.request(
            Method::POST,
            self.url(&["v1", "chat", "threads"]),
            Auth::Bearer,
        );
        if let Some(p) = project.filter(|p| !p.is_empty()) {
            r = r.header(OPENAI_PROJECT_HEADER, p);
        }
        Self::read_json(self.send(r.json(&serde_json::json!({}))).await?).await
    }

    // ------------------------------------------------------------ skills

    /// `GET /v1/skills`.
    pub async fn list_skills(&self, query: &SkillListQuery) -> Result<SkillList> {
        self.call::<(), _>(
            Method::GET,
            &["v1", "skills"],
            Some(&erased::Q(query)),
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `GET /v1/skills/{id}`.
    pub async fn get_skill(&self, id: &str) -> Result<Skill> {
        self.call::<(), _>(Method::GET, &["v1", "skills", id], None, None, Auth::Bearer)
            .await
    }

    /// `POST /v1/skills/load`.
    pub async fn load_skill(&self, req: &LoadSkillRequest) -> Result<SkillMeta> {
        self.call(
            Method::POST,
            &["v1", "skills", "load"],
            None,
            Some(req),
            Auth::Bearer,
        )
        .await
    }

    /// `PUT /v1/skills/{id}`.
    pub async fn update_skill(&self, id: &str, req: &UpdateSkillRequest) -> Result<SkillMeta> {
        self.call(
            Method::PUT,
            &["v1", "skills", id],
            None,
            Some(req),
            Auth::Bearer,
        )
        .await
    }

    /// `DELETE /v1/skills/{id}`.
    pub async fn delete_skill(&self, id: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            self.url(&["v1", "skills", id]),
            Auth::Bearer,
        ))
        .await
        .map(drop)
    }
}

impl GatewayClient {
    // ------------------------------------------------------------ preferences, settings

    /// `GET /v1/prefs`: entries of one scope.
    pub async fn list_prefs(&self, query: &PrefQuery) -> Result<PrefList> {
        self.call::<(), _>(
            Method::GET,
            &["v1", "prefs"],
            Some(&erased::Q(query)),
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `GET /v1/prefs/effective`: merged preferences (for `task_id`/`project_id`, or
    /// the caller).
    pub async fn effective_prefs(&self, query: &PrefQuery) -> Result<EffectivePrefs> {
        self.call::<(), _>(
            Method::GET,
            &["v1", "prefs", "effective"],
            Some(&erased::Q(query)),
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `POST /v1/prefs`: creates or replaces an entry; returns the gateway's answer.
    pub async fn set_pref(&self, req: &SetPrefRequest) -> Result<Value> {
        self.call(
            Method::POST,
            &["v1", "prefs"],
            None,
            Some(req),
            Auth::Bearer,
        )
        .await
    }

    /// `DELETE /v1/prefs`: deletes the entry `query` names.
    pub async fn delete_pref(&self, query: &PrefQuery) -> Result<Value> {
        self.call::<(), _>(
            Method::DELETE,
            &["v1", "prefs"],
            Some(&erased::Q(query)),
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `GET /v1/settings` (one key when given).
    pub async fn settings(&self, key: Option<&str>) -> Result<Value> {
        let q: Vec<(&str, &str)> = key.map(|k| vec![("key", k)]).unwrap_or_default();
        self.request_value(Method::GET, &["v1", "settings"], &q, None)
            .await
    }

    /// `POST /v1/settings` (admin).
    pub async fn set_setting(&self, req: &SetSettingRequest) -> Result<Value> {
        self.call(
            Method::POST,
            &["v1", "settings"],
            None,
            Some(req),
            Auth::Bearer,
        )
        .await
    }

    // ------------------------------------------------------------ nodes, creds, audit, projects

    async fn page(&self, segments: &[&str], page: &PageQuery) -> Result<Value> {
        self.call::<(), _>(
            Method::GET,
            segments,
            Some(&erased::Q(page)),
            None,
            Auth::Bearer,
        )
        .await
    }

    /// `GET /v1/nodes`.
    pub async fn nodes(&self, page: &PageQuery) -> Result<Value> {
        self.page(&["v1", "nodes"], page).await
    }

    /// `GET /v1/nodes/{id}`.
    pub async fn node(&self, id: &str) -> Result<Value> {
        self.request_value(Method::GET, &["v1", "nodes", id], &[], None)
            .await
    }

    /// `GET /v1/creds` (metadata only).
    pub async fn creds(&self, page: &PageQuery) -> Result<Value> {
        self.page(&["v1", "creds"], page).await
    }

    /// `GET /v1/audit` with filters such as `resource_type`, `actor_id`, `since`,
    /// `until`, `limit`, `cursor`.
    pub async fn audit(&self, filters: &[(&str, &str)]) -> Result<Value> {
        self.request_value(Method::GET, &["v1", "audit"], filters, None)
            .await
    }

    /// `GET /v1/projects`.
    pub async fn projects(&self, page: &PageQuery) -> Result<Value> {
        self.page(&["v1", "projects"], page).await
    }

    /// `GET /v1/projects/{id}`.
    pub async fn project(&self, id: &str) -> Result<Value> {
        self.request_value(Method::GET, &["v1", "projects", id], &[], None)
            .await
    }

    /// `POST /v1/projects/set`: selects the active project (`None` clears it).
    pub async fn set_project(&self, id: Option<&str>) -> Result<Value> {
        let body = serde_json::json!({ "project_id": id });
        self.request_value(Method::POST, &["v1", "projects", "set"], &[], Some(&body))
            .await
    }
}

/// The innermost error text of a transport error (e.g. `Connection refused (os error
/// 111)`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether `status` is one the contract calls inference unavailable (502/503/504).
pub fn is_inference_unavailable(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Object-safe query parameters.
mod erased {
    use serde::Serialize;

    pub(super) trait Query {
        fn apply(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder;
    }

    pub(super) struct Q<'a, T: Serialize>(pub(super) &'a T);

    impl<T: Serialize + Sync> Query for Q<'_, T> {
        fn apply(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
            r.query(self.0)
        }
    }

    pub(super) struct Pairs<'a>(pub(super) &'a [(&'a str, &'a str)]);

    impl Query for Pairs<'_> {
        fn apply(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
            if self.0.is_empty() {
                r
            } else {
                r.query(self.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_drop_the_base_path_and_escape_segments() {
        let c = GatewayClient::new("http://h:1/prefix/x?q=1").expect("client");
        assert_eq!(c.url(&["v1", "tasks"]).as_str(), "http://h:1/v1/tasks");
        assert_eq!(
            c.url(&["v1", "tasks", "my task/1", "result"]).as_str(),
            "http://h:1/v1/tasks/my%20task%2F1/result"
        );
        assert_eq!(c.url(&["healthz"]).as_str(), "http://h:1/healthz");
    }

    #[test]
    fn a_bad_or_empty_base_url() {
        assert!(matches!(
            GatewayClient::new("not a url"),
            Err(GatewayError::InvalidInput(_))
        ));
        assert!(GatewayClient::new("ftp://h/").is_err());
        let c = GatewayClient::new("").expect("default");
        assert_eq!(c.base_url(), "http://localhost:12080/");
    }

    #[test]
    fn debug_hides_the_token() {
        let mut c = GatewayClient::new("http://h:1").expect("client");
        c.set_token(Some("secret.jwt.value".into()));
        assert!(c.has_token());
        assert!(!format!("{c:?}").contains("secret.jwt"));
        c.set_token(Some(String::new()));
        assert!(!c.has_token());
    }
}
