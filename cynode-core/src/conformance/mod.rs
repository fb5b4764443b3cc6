//! The storage conformance suite: the executable definition of how every storage
//! backend behaves.
//!
//! Each case is a `pub async fn` taking `&dyn Store`. It drives the store through the
//! public traits only and panics with a message that names the call and what was
//! expected when the backend deviates. Every case expects a **fresh, empty** store.
//! The in-memory backend ([`crate::store::MemoryStore`]) is the reference: it passes
//! every case, and so must SQLite, PostgreSQL and any backend an integrator writes.
//!
//! [`conformance_suite!`](crate::conformance_suite) turns the whole list ([`CASES`])
//! into one test per case, each on its own Tokio runtime with a store made fresh by
//! the factory you give it.
//!
//! # Running the suite against your own backend
//!
//! Enable the `conformance` feature of `cynode-core` in your dev-dependencies and add
//! an integration test, e.g. `tests/conformance.rs`:
//!
//! ```ignore
//! use std::sync::Arc;
//! use cynode_core::conformance::TestStore;
//!
//! // Every case calls the factory once, for a store nobody else uses.
//! async fn fresh_store() -> TestStore {
//!     let dir = tempfile::tempdir().expect("temp dir");
//!     let store = my_backend::MyStore::open(dir.path().join("data")).await.expect("open");
//!     TestStore::new(store)
//!         // keep the directory alive until the case is over
//!         .keep_alive(dir)
//!         // runs after the case, whether it passed or not
//!         .with_teardown(|| async { /* drop remote databases, buckets, ... */ })
//! }
//!
//! cynode_core::conformance_suite!(my_backend_conformance, fresh_store());
//! ```
//!
//! The factory expression is evaluated once per case and must produce a future whose
//! output implements [`IntoTestStore`]: a store value (`MyStore`), an `Arc` of one, an
//! `Arc<dyn Store>`, a [`TestStore`], or an `Option` of any of these, where `None`
//! skips the case (for example when the service it needs is not configured; print why).
//! For the in-memory backend it is as short as:
//!
//! ```ignore
//! cynode_core::conformance_suite!(memory, async { cynode_core::store::MemoryStore::new() });
//! ```
//!
//! The cases can also be called one by one from your own harness:
//! `cynode_core::conformance::tasks_create_atomic(&store).await`.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::store::Store;

mod access;
mod audit;
mod chat;
mod concurrency;
mod credentials;
mod nodes;
mod preferences;
mod resources;
mod support;
mod tasks;
mod users;
mod vectors;
mod workflow;

pub use access::*;
pub use audit::*;
pub use chat::*;
pub use concurrency::*;
pub use credentials::*;
pub use nodes::*;
pub use preferences::*;
pub use resources::*;
pub use tasks::*;
pub use users::*;
pub use vectors::*;
pub use workflow::*;

/// A boxed, sendable future, as teardown hooks return.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

type Teardown = Box<dyn FnOnce() -> BoxFuture + Send + 'static>;

/// A fresh store for one conformance case, with what must outlive it (temporary
/// directories, ...) and what must run after it (dropping a database, ...).
pub struct TestStore {
    store: Arc<dyn Store>,
    keep: Vec<Box<dyn Any + Send>>,
    teardown: Vec<Teardown>,
}

impl TestStore {
    /// Wraps a store.
    pub fn new<S: Store>(store: S) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Wraps a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            keep: Vec::new(),
            teardown: Vec::new(),
        }
    }

    /// Keeps `value` alive until the case and its teardown are over (dropped last).
    pub fn keep_alive(mut self, value: impl Any + Send) -> Self {
        self.keep.push(Box::new(value));
        self
    }

    /// Runs `f` after the case, whether it passed or panicked, once the store itself
    /// has been dropped by the harness. Hooks run in the order they were added.
    pub fn with_teardown<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.teardown.push(Box::new(move || Box::pin(f())));
        self
    }

    /// The store under test.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// What a conformance factory may produce. `None` (through `Option`) skips the case.
pub trait IntoTestStore {
    /// The store to test, or `None` to skip.
    fn into_test_store(self) -> Option<TestStore>;
}

impl IntoTestStore for TestStore {
    fn into_test_store(self) -> Option<TestStore> {
        Some(self)
    }
}

impl IntoTestStore for Arc<dyn Store> {
    fn into_test_store(self) -> Option<TestStore> {
        Some(TestStore::from_arc(self))
    }
}

impl<S: Store> IntoTestStore for S {
    fn into_test_store(self) -> Option<TestStore> {
        Some(TestStore::from_arc(Arc::new(self)))
    }
}

impl<S: Store> IntoTestStore for Arc<S> {
    fn into_test_store(self) -> Option<TestStore> {
        Some(TestStore::from_arc(self))
    }
}

impl<T: IntoTestStore> IntoTestStore for Option<T> {
    fn into_test_store(self) -> Option<TestStore> {
        self.and_then(IntoTestStore::into_test_store)
    }
}

/// Runs one case on a new current-thread Tokio runtime (what `#[tokio::test]` does):
/// builds the store with `factory`, runs `case` on it, runs the teardown hooks, then
/// re-raises the case's panic, if any. Used by [`conformance_suite!`](crate::conformance_suite).
#[doc(hidden)]
pub fn __run_case<F, Fut, T, C>(name: &str, factory: F, case: C)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
    T: IntoTestStore,
    C: FnOnce(Arc<dyn Store>) -> BoxFuture,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("conformance case {name}: cannot build a Tokio runtime: {e}"),
    };
    rt.block_on(async move {
        let Some(fixture) = factory().await.into_test_store() else {
            eprintln!("conformance case {name}: skipped (the factory returned None)");
            return;
        };
        let TestStore {
            store,
            keep,
            teardown,
        } = fixture;
        let outcome = tokio::spawn(case(store)).await;
        for hook in teardown {
            hook().await;
        }
        drop(keep);
        if let Err(e) = outcome {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("conformance case {name} was cancelled: {e}");
        }
    });
}

/// Expands to one test per conformance case (see [`CASES`]), inside a module named
/// `$mod_name`. `$factory` is an expression evaluated afresh for every case, giving a
/// future whose output implements [`IntoTestStore`](crate::conformance::IntoTestStore).
/// Names used in it are resolved as in the enclosing module.
///
/// ```ignore
/// cynode_core::conformance_suite!(memory, async { cynode_core::store::MemoryStore::new() });
/// ```
///
/// See the [module docs](crate::conformance) for a backend with setup and teardown.
#[macro_export]
macro_rules! conformance_suite {
    ($mod_name:ident, $factory:expr $(,)?) => {
        mod $mod_name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_cases!(tests $factory);
        }
    };
}

/// The one list of case names, expanded either into tests or into [`CASES`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($($mode:tt)*) => {
        $crate::__conformance_expand! { ($($mode)*)
            admin_ping_and_backend_name,
            users_create_round_trip,
            users_unknown_ids_not_found,
            users_invalid_handles,
            users_duplicates_conflict,
            users_create_is_atomic,
            users_system_user,
            projects_round_trip,
            sessions_round_trip_and_expiry,
            sessions_rotation,
            sessions_revoke,
            tasks_round_trip,
            tasks_lookup_by_name,
            tasks_duplicate_name_conflict,
            tasks_invalid_input,
            tasks_create_is_atomic,
            tasks_status_terminal_is_final,
            tasks_summary,
            tasks_dependencies,
            tasks_list_filters_and_order,
            tasks_list_paging,
            jobs_round_trip,
            jobs_update,
            jobs_terminal_status_conflict,
            artifacts_put_replace_list,
            nodes_upsert_round_trip,
            nodes_update,
            nodes_capabilities,
            workflow_leases,
            workflow_checkpoints,
            workflow_gate_without_plan,
            preferences_versions,
            preferences_scopes_and_listing,
            chat_threads_round_trip,
            chat_messages_order_and_bump,
            chat_newest_thread_and_recent_messages,
            chat_turns_are_atomic,
            audit_round_trip_all_kinds,
            audit_filters_and_order,
            credentials_round_trip,
            credentials_conflict_and_invalid,
            credentials_usable,
            access_rules_round_trip,
            access_rules_invalid,
            access_audit_round_trip_and_filters,
            vectors_round_trip,
            vectors_invalid_input,
            vectors_insert_is_atomic,
            vectors_filters,
            vectors_nearest_brute_force,
            vectors_nearest_384_dims,
            vectors_delete_by_source,
            skills_round_trip_and_listing,
            skills_system_skill,
            skills_invalid_input,
            settings_versions_and_history,
            settings_listing,
            preferences_audited_writes,
            audit_query_keyset_paging,
            concurrent_unique_keys_and_upserts,
            concurrent_compare_and_set,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ((names) $($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
    ((tests $factory:expr) $($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            $crate::conformance::__run_case(
                stringify!($case),
                || $factory,
                |store: ::std::sync::Arc<dyn $crate::store::Store>| -> $crate::conformance::BoxFuture {
                    ::std::boxed::Box::pin(async move { $crate::conformance::$case(&*store).await })
                },
            );
        }
    )*};
}

/// Names of all cases, in the order [`conformance_suite!`](crate::conformance_suite)
/// declares them.
pub const CASES: &[&str] = crate::__conformance_cases!(names);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `pub async fn` in the case files is in [`super::CASES`] and vice versa, so
    /// no case is written but never run.
    #[test]
    fn every_case_is_listed() {
        let sources = [
            include_str!("access.rs"),
            include_str!("audit.rs"),
            include_str!("chat.rs"),
            include_str!("concurrency.rs"),
            include_str!("credentials.rs"),
            include_str!("nodes.rs"),
            include_str!("preferences.rs"),
            include_str!("resources.rs"),
            include_str!("tasks.rs"),
            include_str!("users.rs"),
            include_str!("vectors.rs"),
            include_str!("workflow.rs"),
        ];
        let defined: BTreeSet<&str> = sources
            .iter()
            .flat_map(|s| s.lines())
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter_map(|l| l.split('(').next())
            .collect();
        let listed: BTreeSet<&str> = super::CASES.iter().copied().collect();
        assert_eq!(listed.len(), super::CASES.len(), "a case is listed twice");
        assert_eq!(
            defined, listed,
            "defined cases and the list in __conformance_cases! differ"
        );
    }
}
