//! Small helpers shared by the cases: result checks with clear messages, fixed
//! timestamps, fixtures and a seeded random generator.

use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::*;
use crate::store::Store;
use crate::{Error, ProjectId, Result, TaskId, UserId};

/// The value of a call that must succeed.
#[track_caller]
pub(crate) fn ok<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: expected success, got a {} error: {e}", e.kind()),
    }
}

/// Asserts that a call failed with the given [`Error::kind`].
#[track_caller]
pub(crate) fn fails<T: Debug>(r: Result<T>, kind: &str, what: &str) -> Error {
    match r {
        Ok(v) => panic!("{what}: expected a {kind} error, got success: {v:?}"),
        Err(e) if e.kind() == kind => e,
        Err(e) => panic!(
            "{what}: expected a {kind} error, got a {} error: {e}",
            e.kind()
        ),
    }
}

pub(crate) const NOT_FOUND: &str = "not_found";
pub(crate) const CONFLICT: &str = "conflict";
pub(crate) const INVALID: &str = "invalid_input";

/// A fixed timestamp (RFC 3339, at most microsecond precision).
#[track_caller]
pub(crate) fn at(s: &str) -> Timestamp {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("bad timestamp constant {s}: {e}"),
    }
}

/// `t` plus `micros` microseconds (negative to go back).
pub(crate) fn plus_us(t: Timestamp, micros: i64) -> Timestamp {
    t + chrono::Duration::microseconds(micros)
}

/// Waits long enough that the next timestamp any backend takes from the clock is
/// strictly later than every timestamp taken before (they store microseconds).
pub(crate) async fn tick() {
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// Creates a user with just a handle.
pub(crate) async fn user(s: &dyn Store, handle: &str) -> User {
    let r = s
        .create_user(NewUser {
            handle: handle.into(),
            ..Default::default()
        })
        .await;
    ok(r, &format!("create_user({handle})"))
}

/// Creates a project with a slug.
pub(crate) async fn project(s: &dyn Store, slug: &str) -> Project {
    let r = s
        .create_project(NewProject {
            slug: slug.into(),
            display_name: format!("Project {slug}"),
            description: None,
        })
        .await;
    ok(r, &format!("create_project({slug})"))
}

/// Creates a task with only a creator and a name.
pub(crate) async fn task(s: &dyn Store, by: Option<UserId>, name: &str) -> Task {
    let r = s
        .create_task(NewTask {
            created_by: by,
            name: name.into(),
            ..Default::default()
        })
        .await;
    ok(r, &format!("create_task({name})"))
}

/// Creates a task in a project.
pub(crate) async fn task_in(
    s: &dyn Store,
    by: Option<UserId>,
    project: Option<ProjectId>,
    name: &str,
) -> Task {
    let r = s
        .create_task(NewTask {
            created_by: by,
            project_id: project,
            name: name.into(),
            ..Default::default()
        })
        .await;
    ok(r, &format!("create_task({name})"))
}

/// Total count of all tasks.
pub(crate) async fn task_total(s: &dyn Store) -> u64 {
    ok(
        s.list_tasks(&TaskFilter::default()).await,
        "list_tasks(all)",
    )
    .1
}

/// Sorted copy.
pub(crate) fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Ids of tasks.
pub(crate) fn task_ids(v: &[Task]) -> Vec<TaskId> {
    v.iter().map(|t| t.id).collect()
}

/// A small deterministic generator (SplitMix64), so random data is the same on every
/// run and every backend.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[-1, 1)`.
    pub(crate) fn unit(&mut self) -> f32 {
        let x = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        x * 2.0 - 1.0
    }

    /// A random vector with components in `[-1, 1)` (never all zero in practice; the
    /// first component is nudged away from zero to make sure).
    pub(crate) fn vector(&mut self, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| self.unit()).collect();
        if let Some(first) = v.first_mut()
            && first.abs() < 1e-3
        {
            *first = 0.5;
        }
        v
    }
}

/// Cosine distance computed in f64, the yardstick for the backends' answers.
pub(crate) fn cosine_f64(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    1.0 - dot / (na.sqrt() * nb.sqrt())
}
