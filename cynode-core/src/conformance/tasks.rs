//! Cases for [`TaskStore`](crate::store::TaskStore): tasks, dependencies, jobs and
//! artifacts.

use serde_json::json;

use super::support::*;
use crate::model::*;
use crate::store::Store;
use crate::{JobId, NodeId, ProjectId, TaskId, UserId};

fn artifact(path: &str, storage_ref: &str) -> NewArtifact {
    NewArtifact {
        path: path.into(),
        storage_ref: storage_ref.into(),
        ..Default::default()
    }
}

/// Every field of a task survives the round trip (text with quotes and control
/// characters, JSON documents with nested values and large numbers, `None`s);
/// dependencies and attachment artifacts are stored with it.
pub async fn tasks_round_trip(s: &dyn Store) {
    let u = user(s, "tess").await;
    let p = project(s, "proj").await;
    let dep1 = task(s, Some(u.id), "dep-1").await;
    let dep2 = task(s, Some(u.id), "dep-2").await;
    let criteria = json!({
        "criteria": [{"id": "c1", "text": "builds"}, {"id": "c2", "text": "tests pass ✓"}],
        "strict": true
    });
    let metadata = json!({
        "input_mode": "prompt",
        "n": 3, "neg": -7, "f": 1.5, "tenth": 0.1, "big": u64::MAX, "min": i64::MIN,
        "nested": {"a": [1, "two", null, true, {"deep": []}], "empty": {}},
        "text": "quote \" backslash \\ newline \n tab \t emoji 🚀 — ünïcode"
    });
    let attachment = NewArtifact {
        path: "attachments/a.txt".into(),
        storage_ref: "blob://bucket/key-1".into(),
        size_bytes: Some(12),
        content_type: Some("text/plain".into()),
        checksum_sha256: Some(sha256_hex("hello world\n")),
    };
    let name = "Build the thing ✓ \"now\"";
    let t = ok(
        s.create_task(NewTask {
            created_by: Some(u.id),
            project_id: Some(p.id),
            name: name.into(),
            prompt: Some("Please \"build\" it\n\twith tabs; DROP TABLE tasks; --".into()),
            description: Some("# Title\n\n- item\n".into()),
            acceptance_criteria: Some(criteria.clone()),
            metadata: Some(metadata.clone()),
            depends_on: vec![dep1.id, dep2.id],
            artifacts: vec![attachment.clone(), artifact("b.md", "")],
        })
        .await,
        "create_task(full)",
    );
    assert_eq!(t.created_by, Some(u.id));
    assert_eq!(t.project_id, Some(p.id));
    assert_eq!(t.name, name);
    assert_eq!(t.status, TaskStatus::Pending);
    assert!(!t.closed);
    assert_eq!(
        t.prompt.as_deref(),
        Some("Please \"build\" it\n\twith tabs; DROP TABLE tasks; --")
    );
    assert_eq!(t.description.as_deref(), Some("# Title\n\n- item\n"));
    assert_eq!(t.acceptance_criteria.as_ref(), Some(&criteria));
    assert_eq!(t.metadata.as_ref(), Some(&metadata));
    assert_eq!(t.summary, None);
    assert!(t.updated_at >= t.created_at);
    assert_eq!(
        ok(s.get_task(t.id).await, "get_task"),
        t,
        "get_task round trip"
    );
    assert_eq!(
        ok(s.get_task_by_name(u.id, name).await, "get_task_by_name"),
        t
    );
    assert_eq!(
        sorted(&ok(s.task_dependencies(t.id).await, "task_dependencies")),
        sorted(&[dep1.id, dep2.id])
    );
    let arts = ok(s.list_artifacts(t.id).await, "list_artifacts");
    assert_eq!(arts.len(), 2, "both attachment artifacts stored: {arts:?}");
    let a = &arts[0];
    assert_eq!(a.task_id, t.id);
    assert_eq!(
        (
            a.path.as_str(),
            a.storage_ref.as_str(),
            a.size_bytes,
            a.content_type.as_deref(),
            a.checksum_sha256.as_deref()
        ),
        (
            "attachments/a.txt",
            "blob://bucket/key-1",
            Some(12),
            Some("text/plain"),
            attachment.checksum_sha256.as_deref()
        )
    );
    let b = &arts[1];
    assert_eq!(
        (
            b.path.as_str(),
            b.storage_ref.as_str(),
            b.size_bytes,
            b.content_type.as_deref(),
            b.checksum_sha256.as_deref()
        ),
        ("b.md", "", None, None, None)
    );

    let bare = ok(
        s.create_task(NewTask {
            name: "anonymous".into(),
            ..Default::default()
        })
        .await,
        "create_task(no creator, no project)",
    );
    assert_eq!((bare.created_by, bare.project_id), (None, None));
    assert_eq!(
        (
            &bare.prompt,
            &bare.description,
            &bare.acceptance_criteria,
            &bare.metadata,
            &bare.summary
        ),
        (&None, &None, &None, &None, &None)
    );
    assert_eq!(ok(s.get_task(bare.id).await, "get_task(bare)"), bare);
    assert!(ok(s.task_dependencies(bare.id).await, "task_dependencies").is_empty());
    assert!(ok(s.list_artifacts(bare.id).await, "list_artifacts").is_empty());
}

/// Tasks are found by (creator, exact name); `task_name_exists` agrees; unknown ids
/// are `not_found`.
pub async fn tasks_lookup_by_name(s: &dyn Store) {
    let u = user(s, "u").await;
    let v = user(s, "v").await;
    let t = task(s, Some(u.id), "Report").await;
    assert_eq!(
        ok(s.get_task_by_name(u.id, "Report").await, "get_task_by_name"),
        t
    );
    assert!(ok(
        s.task_name_exists(u.id, "Report").await,
        "task_name_exists"
    ));
    assert!(
        !ok(s.task_name_exists(u.id, "report").await, "task_name_exists"),
        "names are case-sensitive"
    );
    assert!(
        !ok(s.task_name_exists(v.id, "Report").await, "task_name_exists"),
        "names are per creator"
    );
    assert!(!ok(
        s.task_name_exists(UserId::new(), "Report").await,
        "task_name_exists(unknown user)"
    ));
    fails(
        s.get_task_by_name(v.id, "Report").await,
        NOT_FOUND,
        "get_task_by_name(other creator)",
    );
    fails(
        s.get_task_by_name(u.id, "report").await,
        NOT_FOUND,
        "get_task_by_name(other case)",
    );
    fails(
        s.get_task_by_name(UserId::new(), "Report").await,
        NOT_FOUND,
        "get_task_by_name(unknown user)",
    );
    fails(
        s.get_task(TaskId::new()).await,
        NOT_FOUND,
        "get_task(unknown)",
    );
    fails(
        s.set_task_status(TaskId::new(), TaskStatus::Running).await,
        NOT_FOUND,
        "set_task_status(unknown)",
    );
    fails(
        s.set_task_summary(TaskId::new(), None).await,
        NOT_FOUND,
        "set_task_summary(unknown)",
    );
    fails(
        s.task_dependencies(TaskId::new()).await,
        NOT_FOUND,
        "task_dependencies(unknown)",
    );
    fails(
        s.list_jobs(TaskId::new()).await,
        NOT_FOUND,
        "list_jobs(unknown task)",
    );
    fails(s.get_job(JobId::new()).await, NOT_FOUND, "get_job(unknown)");
    fails(
        s.update_job(JobId::new(), JobUpdate::default()).await,
        NOT_FOUND,
        "update_job(unknown)",
    );
    fails(
        s.put_artifact(TaskId::new(), artifact("x", "")).await,
        NOT_FOUND,
        "put_artifact(unknown task)",
    );
    fails(
        s.list_artifacts(TaskId::new()).await,
        NOT_FOUND,
        "list_artifacts(unknown task)",
    );
}

/// A second task with the same name for the same creator is a conflict; other
/// creators, and tasks without a creator, may reuse a name.
pub async fn tasks_duplicate_name_conflict(s: &dyn Store) {
    let u = user(s, "u").await;
    let v = user(s, "v").await;
    let first = task(s, Some(u.id), "same").await;
    fails(
        s.create_task(NewTask {
            created_by: Some(u.id),
            name: "same".into(),
            ..Default::default()
        })
        .await,
        CONFLICT,
        "create_task with a name the creator already used",
    );
    task(s, Some(v.id), "same").await;
    task(s, None, "same").await;
    task(s, None, "same").await;
    task(s, Some(u.id), "Same").await;
    assert_eq!(
        ok(s.get_task_by_name(u.id, "same").await, "get_task_by_name"),
        first
    );
    assert_eq!(task_total(s).await, 5);
}

/// Blank or over-long names, blank artifact paths, dangling dependencies, unknown
/// projects and unknown creators are `invalid_input`, and nothing is stored.
pub async fn tasks_invalid_input(s: &dyn Store) {
    let u = user(s, "u").await;
    let long = "n".repeat(256);
    for name in ["", "   ", "\t\n", long.as_str()] {
        fails(
            s.create_task(NewTask {
                created_by: Some(u.id),
                name: name.into(),
                ..Default::default()
            })
            .await,
            INVALID,
            &format!(
                "create_task(name = {:?})",
                name.chars().take(10).collect::<String>()
            ),
        );
    }
    let cases: Vec<(&str, NewTask)> = vec![
        (
            "dangling dependency",
            NewTask {
                created_by: Some(u.id),
                name: "t1".into(),
                depends_on: vec![TaskId::new()],
                ..Default::default()
            },
        ),
        (
            "unknown project",
            NewTask {
                created_by: Some(u.id),
                name: "t2".into(),
                project_id: Some(ProjectId::new()),
                ..Default::default()
            },
        ),
        (
            "unknown creator",
            NewTask {
                created_by: Some(UserId::new()),
                name: "t3".into(),
                ..Default::default()
            },
        ),
        (
            "blank artifact path",
            NewTask {
                created_by: Some(u.id),
                name: "t4".into(),
                artifacts: vec![artifact(" ", "ref")],
                ..Default::default()
            },
        ),
    ];
    for (what, new) in cases {
        let name = new.name.clone();
        fails(
            s.create_task(new).await,
            INVALID,
            &format!("create_task with {what}"),
        );
        assert!(
            !ok(s.task_name_exists(u.id, &name).await, "task_name_exists"),
            "{what}: task stored anyway"
        );
    }
    assert_eq!(task_total(s).await, 0, "a rejected task was stored");
    let max = "m".repeat(255);
    assert_eq!(
        task(s, Some(u.id), &max).await.name,
        max,
        "a 255-character name is valid"
    );
}

/// ATOMICITY: a task whose second dependency does not exist is not stored (nor are its
/// other dependencies or artifacts); a duplicate-name create adds nothing to the
/// existing task; afterwards the name is still free.
pub async fn tasks_create_is_atomic(s: &dyn Store) {
    let u = user(s, "u").await;
    let dep = task(s, Some(u.id), "dep").await;
    let total = task_total(s).await;
    fails(
        s.create_task(NewTask {
            created_by: Some(u.id),
            name: "atomic".into(),
            depends_on: vec![dep.id, TaskId::new()],
            artifacts: vec![artifact("a.txt", "blob://a")],
            ..Default::default()
        })
        .await,
        INVALID,
        "create_task with [existing dependency, missing dependency]",
    );
    assert!(
        !ok(s.task_name_exists(u.id, "atomic").await, "task_name_exists"),
        "half-created task left behind"
    );
    fails(
        s.get_task_by_name(u.id, "atomic").await,
        NOT_FOUND,
        "get_task_by_name(atomic)",
    );
    assert_eq!(
        task_total(s).await,
        total,
        "list_tasks total changed by a failed create"
    );
    assert_eq!(
        ok(
            s.list_tasks(&TaskFilter {
                created_by: Some(u.id),
                ..Default::default()
            })
            .await,
            "list_tasks"
        )
        .0,
        vec![dep.clone()]
    );

    fails(
        s.create_task(NewTask {
            created_by: Some(u.id),
            name: "dep".into(),
            depends_on: vec![dep.id],
            artifacts: vec![artifact("leak.txt", "blob://leak")],
            ..Default::default()
        })
        .await,
        CONFLICT,
        "create_task with a duplicate name",
    );
    assert!(
        ok(s.list_artifacts(dep.id).await, "list_artifacts").is_empty(),
        "artifacts leaked onto the existing task"
    );
    assert!(
        ok(s.task_dependencies(dep.id).await, "task_dependencies").is_empty(),
        "dependency leaked"
    );
    assert_eq!(ok(s.get_task(dep.id).await, "get_task"), dep);

    let t = ok(
        s.create_task(NewTask {
            created_by: Some(u.id),
            name: "atomic".into(),
            depends_on: vec![dep.id],
            ..Default::default()
        })
        .await,
        "create_task(atomic) after the failures",
    );
    assert_eq!(
        ok(s.task_dependencies(t.id).await, "task_dependencies"),
        vec![dep.id]
    );
    assert!(
        ok(s.list_artifacts(t.id).await, "list_artifacts").is_empty(),
        "artifacts of the failed create resurfaced"
    );
    assert_eq!(task_total(s).await, total + 1);
}

/// Status changes set `closed` exactly for terminal states; a terminal status is
/// never overwritten (the call returns the task unchanged).
pub async fn tasks_status_terminal_is_final(s: &dyn Store) {
    let u = user(s, "u").await;
    let t = task(s, Some(u.id), "lifecycle").await;
    let same = ok(
        s.set_task_status(t.id, TaskStatus::Pending).await,
        "set_task_status(pending)",
    );
    assert_eq!((same.status, same.closed), (TaskStatus::Pending, false));
    let running = ok(
        s.set_task_status(t.id, TaskStatus::Running).await,
        "set_task_status(running)",
    );
    assert_eq!(
        (running.status, running.closed),
        (TaskStatus::Running, false)
    );
    assert!(running.updated_at >= t.updated_at);
    assert_eq!(running.created_at, t.created_at);
    assert_eq!(ok(s.get_task(t.id).await, "get_task"), running);

    for (i, terminal) in [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Canceled,
        TaskStatus::Superseded,
    ]
    .into_iter()
    .enumerate()
    {
        let t = task(s, Some(u.id), &format!("terminal-{i}")).await;
        ok(
            s.set_task_status(t.id, TaskStatus::Running).await,
            "set_task_status(running)",
        );
        let done = ok(
            s.set_task_status(t.id, terminal).await,
            &format!("set_task_status({terminal})"),
        );
        assert_eq!(
            (done.status, done.closed),
            (terminal, true),
            "closed must be true for {terminal}"
        );
        assert_eq!(ok(s.get_task(t.id).await, "get_task"), done);
        for &next in TaskStatus::ALL {
            let again = ok(
                s.set_task_status(t.id, next).await,
                &format!("set_task_status({terminal} -> {next})"),
            );
            assert_eq!(
                again, done,
                "a {terminal} task must come back unchanged when set to {next}"
            );
        }
        assert_eq!(
            ok(s.get_task(t.id).await, "get_task"),
            done,
            "terminal status {terminal} was overwritten"
        );
    }
    // Straight from pending to a terminal state is allowed.
    let direct = task(s, Some(u.id), "direct").await;
    let canceled = ok(
        s.set_task_status(direct.id, TaskStatus::Canceled).await,
        "set_task_status(canceled)",
    );
    assert_eq!(
        (canceled.status, canceled.closed),
        (TaskStatus::Canceled, true)
    );
}

/// The summary can be set, replaced and cleared, also after the task finished.
pub async fn tasks_summary(s: &dyn Store) {
    let u = user(s, "u").await;
    let t = task(s, Some(u.id), "sum").await;
    let a = ok(
        s.set_task_summary(t.id, Some("first ✓".into())).await,
        "set_task_summary",
    );
    assert_eq!(a.summary.as_deref(), Some("first ✓"));
    assert_eq!(
        (a.name.as_str(), a.status, a.created_at),
        (t.name.as_str(), t.status, t.created_at)
    );
    assert_eq!(ok(s.get_task(t.id).await, "get_task"), a);
    ok(
        s.set_task_status(t.id, TaskStatus::Completed).await,
        "set_task_status(completed)",
    );
    let b = ok(
        s.set_task_summary(t.id, Some("final\nsummary".into()))
            .await,
        "set_task_summary after completion",
    );
    assert_eq!(b.summary.as_deref(), Some("final\nsummary"));
    assert_eq!(b.status, TaskStatus::Completed);
    assert_eq!(ok(s.get_task(t.id).await, "get_task"), b);
    let c = ok(
        s.set_task_summary(t.id, None).await,
        "set_task_summary(None)",
    );
    assert_eq!(c.summary, None);
    assert_eq!(ok(s.get_task(t.id).await, "get_task"), c);
}

/// Dependencies are stored once each (a repeated id is not an error) and belong to
/// their task only.
pub async fn tasks_dependencies(s: &dyn Store) {
    let u = user(s, "u").await;
    let a = task(s, Some(u.id), "a").await;
    let b = task(s, None, "b").await;
    let c = ok(
        s.create_task(NewTask {
            created_by: Some(u.id),
            name: "c".into(),
            depends_on: vec![a.id, b.id, a.id],
            ..Default::default()
        })
        .await,
        "create_task with a repeated dependency",
    );
    assert_eq!(
        sorted(&ok(s.task_dependencies(c.id).await, "task_dependencies")),
        sorted(&[a.id, b.id])
    );
    let d = ok(
        s.create_task(NewTask {
            created_by: Some(u.id),
            name: "d".into(),
            depends_on: vec![c.id],
            ..Default::default()
        })
        .await,
        "create_task(d)",
    );
    assert_eq!(
        ok(s.task_dependencies(d.id).await, "task_dependencies"),
        vec![c.id]
    );
    assert!(ok(s.task_dependencies(a.id).await, "task_dependencies").is_empty());
}

fn newest_first(v: &mut [Task]) {
    v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
}

/// `list_tasks` filters by creator, project and any of several statuses, orders
/// newest first with ties broken by id (descending), and counts the total.
pub async fn tasks_list_filters_and_order(s: &dyn Store) {
    let u1 = user(s, "u1").await;
    let u2 = user(s, "u2").await;
    let pa = project(s, "pa").await;
    let pb = project(s, "pb").await;
    let mut all = Vec::new();
    for i in 0..14 {
        let by = match i % 5 {
            4 => None,
            n if n % 2 == 0 => Some(u1.id),
            _ => Some(u2.id),
        };
        let proj = match i % 3 {
            0 => Some(pa.id),
            1 => Some(pb.id),
            _ => None,
        };
        let t = task_in(s, by, proj, &format!("task-{i:02}")).await;
        let status = [
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Completed,
            TaskStatus::Failed,
        ][i % 4];
        let t = if status == TaskStatus::Pending {
            t
        } else {
            ok(s.set_task_status(t.id, status).await, "set_task_status")
        };
        all.push(t);
    }
    newest_first(&mut all);

    let check = |what: &'static str, filter: TaskFilter, keep: &dyn Fn(&Task) -> bool| {
        let expected: Vec<Task> = all.iter().filter(|t| keep(t)).cloned().collect();
        (what, filter, expected)
    };
    let cases = vec![
        check("no filter", TaskFilter::default(), &|_| true),
        check(
            "created_by u1",
            TaskFilter {
                created_by: Some(u1.id),
                ..Default::default()
            },
            &|t| t.created_by == Some(u1.id),
        ),
        check(
            "project pa",
            TaskFilter {
                project_id: Some(pa.id),
                ..Default::default()
            },
            &|t| t.project_id == Some(pa.id),
        ),
        check(
            "statuses running|completed",
            TaskFilter {
                statuses: vec![TaskStatus::Running, TaskStatus::Completed],
                ..Default::default()
            },
            &|t| matches!(t.status, TaskStatus::Running | TaskStatus::Completed),
        ),
        check(
            "u2 + pb + pending|failed",
            TaskFilter {
                created_by: Some(u2.id),
                project_id: Some(pb.id),
                statuses: vec![TaskStatus::Pending, TaskStatus::Failed],
                ..Default::default()
            },
            &|t| {
                t.created_by == Some(u2.id)
                    && t.project_id == Some(pb.id)
                    && matches!(t.status, TaskStatus::Pending | TaskStatus::Failed)
            },
        ),
        check(
            "superseded",
            TaskFilter {
                statuses: vec![TaskStatus::Superseded],
                ..Default::default()
            },
            &|_| false,
        ),
        check(
            "unknown creator",
            TaskFilter {
                created_by: Some(UserId::new()),
                ..Default::default()
            },
            &|_| false,
        ),
    ];
    for (what, filter, expected) in cases {
        let (page, total) = ok(s.list_tasks(&filter).await, &format!("list_tasks({what})"));
        assert_eq!(total, expected.len() as u64, "list_tasks({what}): total");
        assert_eq!(
            task_ids(&page),
            task_ids(&expected),
            "list_tasks({what}): wrong rows or order (newest first, ties by id descending)"
        );
        assert_eq!(
            page, expected,
            "list_tasks({what}): rows differ from the stored tasks"
        );
    }
    // A nonsense filter combination still counts correctly.
    let (page, total) = ok(
        s.list_tasks(&TaskFilter {
            created_by: Some(u1.id),
            project_id: Some(pb.id),
            ..Default::default()
        })
        .await,
        "list_tasks(u1 + pb)",
    );
    let expected: Vec<Task> = all
        .iter()
        .filter(|t| t.created_by == Some(u1.id) && t.project_id == Some(pb.id))
        .cloned()
        .collect();
    assert_eq!((page, total), (expected.clone(), expected.len() as u64));
}

/// Paging: `limit` 0 means 50, pages concatenate to the full list without gaps or
/// repeats, an offset past the end gives an empty page with the right total.
pub async fn tasks_list_paging(s: &dyn Store) {
    let u = user(s, "pager").await;
    let other = user(s, "other").await;
    for i in 0..55 {
        task(s, Some(u.id), &format!("p-{i:02}")).await;
    }
    for i in 0..3 {
        task(s, Some(other.id), &format!("o-{i}")).await;
    }
    let mine = TaskFilter {
        created_by: Some(u.id),
        ..Default::default()
    };
    let (default_page, total) = ok(s.list_tasks(&mine).await, "list_tasks(limit 0)");
    assert_eq!(total, 55);
    assert_eq!(default_page.len(), 50, "limit 0 must mean 50");
    let (full, total) = ok(
        s.list_tasks(&TaskFilter {
            limit: 5000,
            ..mine.clone()
        })
        .await,
        "list_tasks(limit 5000)",
    );
    assert_eq!(
        (full.len(), total),
        (55, 55),
        "a limit above the cap still returns every row up to 1000"
    );
    assert_eq!(
        &full[..50],
        &default_page[..],
        "the default page is the first 50 rows"
    );
    let mut expected = full.clone();
    newest_first(&mut expected);
    assert_eq!(
        task_ids(&full),
        task_ids(&expected),
        "newest first, ties by id descending"
    );

    let mut paged = Vec::new();
    for offset in (0..60).step_by(7) {
        let (page, total) = ok(
            s.list_tasks(&TaskFilter {
                limit: 7,
                offset,
                ..mine.clone()
            })
            .await,
            &format!("list_tasks(limit 7, offset {offset})"),
        );
        assert_eq!(total, 55, "total must not depend on paging");
        assert!(page.len() <= 7);
        paged.extend(page);
    }
    assert_eq!(
        task_ids(&paged),
        task_ids(&full),
        "pages must concatenate to the full list"
    );
    let (one, _) = ok(
        s.list_tasks(&TaskFilter {
            limit: 1,
            offset: 54,
            ..mine.clone()
        })
        .await,
        "list_tasks",
    );
    assert_eq!(task_ids(&one), vec![full[54].id]);
    let (none, total) = ok(
        s.list_tasks(&TaskFilter {
            offset: 1_000_000,
            ..mine.clone()
        })
        .await,
        "list_tasks(offset past end)",
    );
    assert!(none.is_empty());
    assert_eq!(total, 55);
    let (_, all_total) = ok(
        s.list_tasks(&TaskFilter {
            limit: 1,
            ..Default::default()
        })
        .await,
        "list_tasks",
    );
    assert_eq!(all_total, 58);
}

/// Jobs keep their pre-assigned id and every field; they are listed oldest first per
/// task; duplicate ids conflict; a job for a task that does not exist is invalid.
pub async fn jobs_round_trip(s: &dyn Store) {
    let u = user(s, "u").await;
    let t1 = task(s, Some(u.id), "t1").await;
    let t2 = task(s, Some(u.id), "t2").await;
    let payload = json!({"job_id": "embedded", "steps": [{"cmd": ["echo", "hi"]}], "timeout_s": 30, "env": {}});
    let id = JobId::new();
    let j = ok(
        s.create_job(NewJob {
            id,
            task_id: t1.id,
            payload: payload.clone(),
        })
        .await,
        "create_job",
    );
    assert_eq!(j.id, id, "the pre-assigned id is kept");
    assert_eq!(j.task_id, t1.id);
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(j.payload, payload);
    assert_eq!(
        (j.node_id, &j.result, j.lease_id, j.lease_expires_at),
        (None, &None, None, None)
    );
    assert_eq!((j.started_at, j.ended_at), (None, None));
    assert_eq!(ok(s.get_job(id).await, "get_job"), j);

    let mut jobs = vec![j.clone()];
    for n in 0..3 {
        jobs.push(ok(
            s.create_job(NewJob {
                id: JobId::new(),
                task_id: t1.id,
                payload: json!({"n": n}),
            })
            .await,
            "create_job",
        ));
    }
    let other = ok(
        s.create_job(NewJob {
            id: JobId::new(),
            task_id: t2.id,
            payload: json!(null),
        })
        .await,
        "create_job",
    );
    assert_eq!(
        other.payload,
        json!(null),
        "a JSON null payload round-trips"
    );
    jobs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    assert_eq!(
        ok(s.list_jobs(t1.id).await, "list_jobs(t1)"),
        jobs,
        "oldest first, ties by id"
    );
    assert_eq!(
        ok(s.list_jobs(t2.id).await, "list_jobs(t2)"),
        vec![other.clone()]
    );
    let t3 = task(s, Some(u.id), "t3").await;
    assert!(ok(s.list_jobs(t3.id).await, "list_jobs(t3)").is_empty());

    fails(
        s.create_job(NewJob {
            id,
            task_id: t1.id,
            payload: json!({}),
        })
        .await,
        CONFLICT,
        "create_job with a taken id",
    );
    fails(
        s.create_job(NewJob {
            id,
            task_id: t2.id,
            payload: json!({}),
        })
        .await,
        CONFLICT,
        "create_job with a taken id on another task",
    );
    fails(
        s.create_job(NewJob {
            id: JobId::new(),
            task_id: TaskId::new(),
            payload: json!({}),
        })
        .await,
        INVALID,
        "create_job for a task that does not exist",
    );
    assert_eq!(
        ok(s.get_job(id).await, "get_job"),
        j,
        "a refused create changed the job"
    );
    assert_eq!(ok(s.list_jobs(t2.id).await, "list_jobs(t2)").len(), 1);
}

/// Updates change only the fields they name; leases are set and cleared; an unknown
/// node is `invalid_input` and changes nothing.
pub async fn jobs_update(s: &dyn Store) {
    let u = user(s, "u").await;
    let t = task(s, Some(u.id), "t").await;
    let node = ok(s.upsert_node("worker-1").await, "upsert_node");
    let job = ok(
        s.create_job(NewJob {
            id: JobId::new(),
            task_id: t.id,
            payload: json!({"a": 1}),
        })
        .await,
        "create_job",
    );

    let lease = uuid::Uuid::new_v4();
    let lease_exp = at("2031-05-06T07:08:09.101112Z");
    let started = at("2031-05-06T07:00:00.000001Z");
    let j1 = ok(
        s.update_job(
            job.id,
            JobUpdate {
                status: Some(JobStatus::Running),
                node_id: Some(node.id),
                lease: Some(Some((lease, lease_exp))),
                started_at: Some(started),
                ..Default::default()
            },
        )
        .await,
        "update_job(dispatch)",
    );
    assert_eq!(j1.status, JobStatus::Running);
    assert_eq!(j1.node_id, Some(node.id));
    assert_eq!(
        (j1.lease_id, j1.lease_expires_at),
        (Some(lease), Some(lease_exp))
    );
    assert_eq!(j1.started_at, Some(started));
    assert_eq!(
        (j1.payload.clone(), j1.result.clone(), j1.ended_at),
        (json!({"a": 1}), None, None)
    );
    assert_eq!(j1.created_at, job.created_at);
    assert!(j1.updated_at >= job.updated_at);
    assert_eq!(ok(s.get_job(job.id).await, "get_job"), j1);

    let noop = ok(
        s.update_job(job.id, JobUpdate::default()).await,
        "update_job(nothing)",
    );
    assert_eq!(
        (
            noop.status,
            noop.node_id,
            noop.lease_id,
            noop.lease_expires_at,
            noop.started_at
        ),
        (
            j1.status,
            j1.node_id,
            j1.lease_id,
            j1.lease_expires_at,
            j1.started_at
        ),
        "an empty update changed fields"
    );

    let result = json!({"exit_code": 0, "stdout": "hi\n", "truncated": false, "ratio": 0.25});
    let j2 = ok(
        s.update_job(
            job.id,
            JobUpdate {
                lease: Some(None),
                result: Some(result.clone()),
                ..Default::default()
            },
        )
        .await,
        "update_job(clear lease, set result)",
    );
    assert_eq!(
        (j2.lease_id, j2.lease_expires_at),
        (None, None),
        "Some(None) clears the lease"
    );
    assert_eq!(j2.result.as_ref(), Some(&result));
    assert_eq!(
        (j2.status, j2.node_id, j2.started_at),
        (JobStatus::Running, Some(node.id), Some(started))
    );
    assert_eq!(ok(s.get_job(job.id).await, "get_job"), j2);

    // Lease expiry is not terminal: the job can be requeued.
    let expired = ok(
        s.update_job(
            job.id,
            JobUpdate {
                status: Some(JobStatus::LeaseExpired),
                ..Default::default()
            },
        )
        .await,
        "update_job(lease_expired)",
    );
    assert_eq!(expired.status, JobStatus::LeaseExpired);
    let requeued = ok(
        s.update_job(
            job.id,
            JobUpdate {
                status: Some(JobStatus::Queued),
                ..Default::default()
            },
        )
        .await,
        "update_job(requeue)",
    );
    assert_eq!(requeued.status, JobStatus::Queued);

    fails(
        s.update_job(
            job.id,
            JobUpdate {
                node_id: Some(NodeId::new()),
                status: Some(JobStatus::Running),
                ..Default::default()
            },
        )
        .await,
        INVALID,
        "update_job with a node that does not exist",
    );
    assert_eq!(
        ok(s.get_job(job.id).await, "get_job"),
        requeued,
        "a refused update changed the job"
    );

    let ended = at("2031-05-06T08:00:00.5Z");
    let done = ok(
        s.update_job(
            job.id,
            JobUpdate {
                status: Some(JobStatus::Completed),
                ended_at: Some(ended),
                ..Default::default()
            },
        )
        .await,
        "update_job(completed)",
    );
    assert_eq!(
        (done.status, done.ended_at),
        (JobStatus::Completed, Some(ended))
    );
    assert_eq!(ok(s.get_job(job.id).await, "get_job"), done);
}

/// A terminal job's status cannot change (conflict, and nothing in that update is
/// applied); setting the same terminal status again and updating other fields is fine.
pub async fn jobs_terminal_status_conflict(s: &dyn Store) {
    let u = user(s, "u").await;
    let t = task(s, Some(u.id), "t").await;
    for terminal in [JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled] {
        let job = ok(
            s.create_job(NewJob {
                id: JobId::new(),
                task_id: t.id,
                payload: json!({}),
            })
            .await,
            "create_job",
        );
        let done = ok(
            s.update_job(
                job.id,
                JobUpdate {
                    status: Some(terminal),
                    ..Default::default()
                },
            )
            .await,
            &format!("update_job({terminal})"),
        );
        for &next in JobStatus::ALL.iter().filter(|&&n| n != terminal) {
            fails(
                s.update_job(
                    job.id,
                    JobUpdate {
                        status: Some(next),
                        result: Some(json!({"sneaky": true})),
                        ended_at: Some(at("2040-01-01T00:00:00Z")),
                        ..Default::default()
                    },
                )
                .await,
                CONFLICT,
                &format!("update_job({terminal} -> {next})"),
            );
            assert_eq!(
                ok(s.get_job(job.id).await, "get_job"),
                done,
                "a refused {terminal} -> {next} change wrote something"
            );
        }
        let same = ok(
            s.update_job(
                job.id,
                JobUpdate {
                    status: Some(terminal),
                    ..Default::default()
                },
            )
            .await,
            &format!("update_job({terminal} -> {terminal})"),
        );
        assert_eq!(same.status, terminal);
        let annotated = ok(
            s.update_job(
                job.id,
                JobUpdate {
                    result: Some(json!({"exit_code": 3})),
                    ..Default::default()
                },
            )
            .await,
            &format!("update_job(result on a {terminal} job)"),
        );
        assert_eq!(
            (annotated.status, annotated.result),
            (terminal, Some(json!({"exit_code": 3})))
        );
    }
}

/// A second put at the same path replaces the artifact (same id and creation time,
/// new content); artifacts are listed by path and belong to their task.
pub async fn artifacts_put_replace_list(s: &dyn Store) {
    let u = user(s, "u").await;
    let t = ok(
        s.create_task(NewTask {
            created_by: Some(u.id),
            name: "t".into(),
            artifacts: vec![artifact("m/attached.bin", "blob://att")],
            ..Default::default()
        })
        .await,
        "create_task",
    );
    let other = task(s, Some(u.id), "other").await;
    let a = ok(
        s.put_artifact(
            t.id,
            NewArtifact {
                path: "out/report.md".into(),
                storage_ref: "blob://r1".into(),
                size_bytes: Some(100),
                content_type: Some("text/markdown".into()),
                checksum_sha256: Some(sha256_hex("one")),
            },
        )
        .await,
        "put_artifact",
    );
    assert_eq!(
        (a.task_id, a.path.as_str(), a.storage_ref.as_str()),
        (t.id, "out/report.md", "blob://r1")
    );
    assert_eq!(
        (a.size_bytes, a.content_type.as_deref()),
        (Some(100), Some("text/markdown"))
    );
    let z = ok(
        s.put_artifact(t.id, artifact("Z-upper.txt", "blob://z"))
            .await,
        "put_artifact",
    );
    ok(
        s.put_artifact(other.id, artifact("out/report.md", "blob://other"))
            .await,
        "put_artifact(other task)",
    );

    let b = ok(
        s.put_artifact(
            t.id,
            NewArtifact {
                path: "out/report.md".into(),
                storage_ref: "blob://r2".into(),
                size_bytes: Some(5_000_000_000),
                content_type: None,
                checksum_sha256: Some(sha256_hex("two")),
            },
        )
        .await,
        "put_artifact(same path again)",
    );
    assert_eq!(b.id, a.id, "replacing an artifact keeps its id");
    assert_eq!(
        b.created_at, a.created_at,
        "replacing an artifact keeps its creation time"
    );
    assert!(b.updated_at >= a.updated_at);
    assert_eq!(
        (
            b.storage_ref.as_str(),
            b.size_bytes,
            b.content_type.as_deref()
        ),
        ("blob://r2", Some(5_000_000_000), None)
    );
    assert_eq!(b.checksum_sha256, Some(sha256_hex("two")));

    let listed = ok(s.list_artifacts(t.id).await, "list_artifacts");
    let paths: Vec<&str> = listed.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(
        paths,
        ["Z-upper.txt", "m/attached.bin", "out/report.md"],
        "one row per path, ordered by path (byte order)"
    );
    assert_eq!(listed[0], z);
    assert_eq!(listed[2], b);
    let others = ok(s.list_artifacts(other.id).await, "list_artifacts(other)");
    assert_eq!(others.len(), 1);
    assert_eq!(
        others[0].storage_ref, "blob://other",
        "another task's artifact at the same path was touched"
    );

    fails(
        s.put_artifact(t.id, artifact("", "x")).await,
        INVALID,
        "put_artifact with a blank path",
    );
    let long = "p".repeat(2049);
    fails(
        s.put_artifact(t.id, artifact(&long, "x")).await,
        INVALID,
        "put_artifact with a 2049-char path",
    );
    assert_eq!(ok(s.list_artifacts(t.id).await, "list_artifacts").len(), 3);
}
