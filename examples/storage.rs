//! Open the embedded SQLite store, create a user and a task, and read it back.
//!
//! `cargo run -p cynode-examples --example storage`

use cynode_core::model::{NewTask, NewUser, TaskFilter};
use cynode_core::store::{StoreConfig, open};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("cynode-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = open(&StoreConfig::Sqlite {
        path: dir.join("cynode.db"),
    })
    .await?;

    let alice = store
        .create_user(NewUser {
            handle: "alice".into(),
            ..Default::default()
        })
        .await?;
    let task = store
        .create_task(NewTask {
            created_by: Some(alice.id),
            name: "hello".into(),
            prompt: Some("Say hello".into()),
            ..Default::default()
        })
        .await?;
    let (tasks, total) = store
        .list_tasks(&TaskFilter {
            created_by: Some(alice.id),
            ..Default::default()
        })
        .await?;
    eprintln!(
        "created task {} ({}); alice has {total} task(s): {:?}",
        task.name, task.id, tasks[0].status
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
