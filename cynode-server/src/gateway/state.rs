//! The gateway's shared state and the hooks the orchestrator plugs in.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cynode_core::JobId;
use cynode_core::auth::JwtKeys;
use cynode_core::model::{Job, PasswordHash, Task, Timestamp};
use cynode_core::store::Store;
use tokio::sync::{OnceCell, Semaphore};

use super::chat::{ChatInference, ChatRuntime};
use super::config::GatewayConfig;
use super::ratelimit::LoginLimiter;

/// A source of the current time, injectable so tests can move time by hand.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the gateway hands tasks on. The orchestrator plugs in the scheduler here.
///
/// The gateway always writes the task and its first job (status `queued`) to storage
/// before calling [`TaskDispatcher::task_created`], and marks the task and its open
/// jobs `canceled` before calling [`TaskDispatcher::task_canceled`]; so a dispatcher
/// that fails loses nothing (its error is logged and the request still succeeds).
#[async_trait]
pub trait TaskDispatcher: Send + Sync {
    /// A task and its first job were stored; the job is `queued`.
    async fn task_created(&self, task: &Task, job: &Job) -> cynode_core::Result<()>;
    /// A task was canceled; `jobs` are the jobs that were open and are now
    /// `canceled`. Running work for them should be stopped.
    async fn task_canceled(&self, task: &Task, jobs: &[JobId]) -> cynode_core::Result<()>;
}

/// The default dispatcher: does nothing. Jobs stay `queued` in storage until a
/// scheduler that reads the job table picks them up; cancel only changes storage.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueOnlyDispatcher;

#[async_trait]
impl TaskDispatcher for QueueOnlyDispatcher {
    async fn task_created(&self, _task: &Task, _job: &Job) -> cynode_core::Result<()> {
        Ok(())
    }
    async fn task_canceled(&self, _task: &Task, _jobs: &[JobId]) -> cynode_core::Result<()> {
        Ok(())
    }
}

/// An extra condition for `GET /readyz`, checked after storage answers (e.g. "an
/// inference path exists", "the project manager agent is ready").
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// `None` when ready; otherwise the exact text `/readyz` answers with `503`.
    async fn check(&self) -> Option<String>;
}

/// Everything the gateway's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: GatewayConfig,
    pub(crate) keys: JwtKeys,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) dispatcher: Arc<dyn TaskDispatcher>,
    pub(crate) readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub(crate) limiter: LoginLimiter,
    /// Bounds concurrent password hashing (each takes the configured memory).
    pub(crate) hash_gate: Semaphore,
    /// Verified against when a login names no usable account, to equalize timing.
    pub(crate) dummy_hash: OnceCell<PasswordHash>,
    /// Chat inference, redaction and thread locks.
    pub(crate) chat: ChatRuntime,
}

impl fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayState")
            .field("backend", &self.inner.store.backend())
            .field("config", &self.inner.config)
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

impl GatewayState {
    /// State with the default configuration, the system clock and the
    /// [`QueueOnlyDispatcher`].
    pub fn new(store: Arc<dyn Store>, keys: JwtKeys) -> Self {
        Self::builder(store, keys).build()
    }

    /// A builder to set the configuration, clock, dispatcher and readiness checks.
    pub fn builder(store: Arc<dyn Store>, keys: JwtKeys) -> GatewayStateBuilder {
        GatewayStateBuilder {
            store,
            keys,
            config: GatewayConfig::default(),
            clock: Arc::new(SystemClock),
            dispatcher: Arc::new(QueueOnlyDispatcher),
            readiness: Vec::new(),
            inference: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The storage.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
}

/// Builds a [`GatewayState`].
pub struct GatewayStateBuilder {
    store: Arc<dyn Store>,
    keys: JwtKeys,
    config: GatewayConfig,
    clock: Arc<dyn Clock>,
    dispatcher: Arc<dyn TaskDispatcher>,
    readiness: Vec<Arc<dyn ReadinessCheck>>,
    inference: Option<ChatInference>,
}

impl fmt::Debug for GatewayStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayStateBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GatewayStateBuilder {
    /// Sets the configuration.
    pub fn config(mut self, config: GatewayConfig) -> Self {
        self.config = config;
        self
    }
    /// Sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Sets the task dispatcher.
    pub fn dispatcher(mut self, dispatcher: Arc<dyn TaskDispatcher>) -> Self {
        self.dispatcher = dispatcher;
        self
    }
    /// Adds a readiness check (checked in the order added, after storage).
    pub fn readiness_check(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.readiness.push(check);
        self
    }
    /// Sets the inference behind the chat surface (without it, completions answer
    /// `503` `model_unavailable` saying how to configure one).
    pub fn inference(mut self, inference: ChatInference) -> Self {
        self.inference = Some(inference);
        self
    }
    /// Builds the state.
    pub fn build(self) -> GatewayState {
        let hashers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(1);
        GatewayState {
            inner: Arc::new(Inner {
                limiter: LoginLimiter::new(self.config.login_rate_limit.clone()),
                store: self.store,
                config: self.config,
                keys: self.keys,
                clock: self.clock,
                dispatcher: self.dispatcher,
                readiness: self.readiness,
                hash_gate: Semaphore::new(hashers),
                dummy_hash: OnceCell::new(),
                chat: ChatRuntime::new(self.inference),
            }),
        }
    }
}
