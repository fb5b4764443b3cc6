//! Chat threads and messages.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;

use super::audit::insert_audit;
use super::{RowExt, SqliteStore, db, exists, opt_json_text, ts};
use crate::model::*;
use crate::store::memory::now;
use crate::store::{ChatStore, ChatTurn, NewChatMessage, validate};
use crate::{Error, MessageId, ProjectId, Result, ThreadId, UserId};

fn thread_row(r: &SqliteRow) -> Result<ChatThread> {
    Ok(ChatThread {
        id: r.id("id")?,
        user_id: r.id("user_id")?,
        project_id: r.opt_id("project_id")?,
        title: r.opt_text("title")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn message_row(r: &SqliteRow) -> Result<ChatMessage> {
    Ok(ChatMessage {
        id: r.id("id")?,
        thread_id: r.id("thread_id")?,
        role: r.parsed("role")?,
        content: r.text("content")?,
        metadata: r.opt_json("metadata")?,
        created_at: r.time("created_at")?,
    })
}

#[async_trait]
impl ChatStore for SqliteStore {
    async fn create_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
        title: Option<String>,
    ) -> Result<ChatThread> {
        const ACTION: &str = "create the chat thread";
        let mut tx = self.write(ACTION).await?;
        if !exists(
            &mut tx,
            "SELECT 1 FROM users WHERE id = ?1",
            user_id.to_string(),
            ACTION,
        )
        .await?
        {
            return Err(Error::invalid(format!("user {user_id} does not exist")));
        }
        if let Some(p) = project_id
            && !exists(
                &mut tx,
                "SELECT 1 FROM projects WHERE id = ?1",
                p.to_string(),
                ACTION,
            )
            .await?
        {
            return Err(Error::invalid(format!("project {p} does not exist")));
        }
        let t = now();
        let th = ChatThread {
            id: ThreadId::new(),
            user_id,
            project_id,
            title,
            created_at: t,
            updated_at: t,
        };
        sqlx::query(
            "INSERT INTO chat_threads (id, user_id, project_id, title, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(th.id.to_string())
        .bind(user_id.to_string())
        .bind(project_id.map(|p| p.to_string()))
        .bind(&th.title)
        .bind(ts(t))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(th)
    }

    async fn get_thread(&self, id: ThreadId) -> Result<ChatThread> {
        let row = sqlx::query(
            "SELECT id, user_id, project_id, title, created_at, updated_at FROM chat_threads WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the chat thread"))?;
        row.as_ref()
            .map(thread_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("thread", id))
    }

    async fn list_threads(&self, user_id: UserId, limit: u32) -> Result<Vec<ChatThread>> {
        let rows = sqlx::query(
            "SELECT id, user_id, project_id, title, created_at, updated_at FROM chat_threads
             WHERE user_id = ?1 ORDER BY updated_at DESC, id DESC LIMIT ?2",
        )
        .bind(user_id.to_string())
        .bind(i64::from(validate::limit(limit)))
        .fetch_all(&self.reader)
        .await
        .map_err(db("list chat threads"))?;
        rows.iter().map(thread_row).collect()
    }

    async fn append_message(
        &self,
        thread_id: ThreadId,
        role: ChatRole,
        content: String,
        metadata: Option<Value>,
    ) -> Result<ChatMessage> {
        const ACTION: &str = "append the chat message";
        let mut tx = self.write(ACTION).await?;
        let msg = NewChatMessage {
            role,
            content,
            metadata,
        };
        let mut stored = append(&mut tx, thread_id, vec![msg], ACTION).await?;
        tx.commit().await.map_err(db(ACTION))?;
        stored
            .pop()
            .ok_or_else(|| Error::internal("no message was stored"))
    }

    async fn list_messages(&self, thread_id: ThreadId) -> Result<Vec<ChatMessage>> {
        const ACTION: &str = "list chat messages";
        let mut tx = self.read(ACTION).await?;
        if !exists(
            &mut tx,
            "SELECT 1 FROM chat_threads WHERE id = ?1",
            thread_id.to_string(),
            ACTION,
        )
        .await?
        {
            return Err(Error::not_found("thread", thread_id));
        }
        // Creation order; the rowid keeps it stable for messages with the same time.
        let rows = sqlx::query(
            "SELECT id, thread_id, role, content, metadata, created_at FROM chat_messages
             WHERE thread_id = ?1 ORDER BY created_at, rowid",
        )
        .bind(thread_id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        rows.iter().map(message_row).collect()
    }

    async fn newest_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
    ) -> Result<Option<ChatThread>> {
        // `IS` matches a NULL project too; the (user_id, updated_at DESC, id DESC) index
        // gives the rows newest first.
        let row = sqlx::query(
            "SELECT id, user_id, project_id, title, created_at, updated_at FROM chat_threads
             WHERE user_id = ?1 AND project_id IS ?2
             ORDER BY updated_at DESC, id DESC LIMIT 1",
        )
        .bind(user_id.to_string())
        .bind(project_id.map(|p| p.to_string()))
        .fetch_optional(&self.reader)
        .await
        .map_err(db("find the newest chat thread"))?;
        row.as_ref().map(thread_row).transpose()
    }

    async fn recent_messages(&self, thread_id: ThreadId, limit: u32) -> Result<Vec<ChatMessage>> {
        const ACTION: &str = "read recent chat messages";
        // One query on the hot path; only an empty answer asks whether the thread exists.
        let rows = sqlx::query(
            "SELECT id, thread_id, role, content, metadata, created_at FROM chat_messages
             WHERE thread_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )
        .bind(thread_id.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db(ACTION))?;
        if rows.is_empty() {
            self.get_thread(thread_id).await?;
        }
        let mut v = rows.iter().map(message_row).collect::<Result<Vec<_>>>()?;
        v.reverse();
        Ok(v)
    }

    async fn append_turn(&self, turn: ChatTurn) -> Result<Vec<ChatMessage>> {
        const ACTION: &str = "store the chat turn";
        let mut tx = self.write(ACTION).await?;
        let stored = append(&mut tx, turn.thread_id, turn.messages, ACTION).await?;
        if let Some(a) = turn.audit {
            insert_audit(&mut tx, &AuditRecord::Chat(a), ACTION).await?;
        }
        tx.commit().await.map_err(db(ACTION))?;
        Ok(stored)
    }
}

/// Appends messages to a thread inside the caller's write transaction and bumps the
/// thread's `updated_at`; `not_found` when the thread does not exist (nothing written).
/// The bump goes first, so an unknown thread is found before any insert; the messages
/// then go in with one statement.
async fn append(
    tx: &mut sqlx::SqliteConnection,
    thread_id: ThreadId,
    messages: Vec<NewChatMessage>,
    action: &str,
) -> Result<Vec<ChatMessage>> {
    let t = now();
    let found = if messages.is_empty() {
        exists(
            tx,
            "SELECT 1 FROM chat_threads WHERE id = ?1",
            thread_id.to_string(),
            action,
        )
        .await?
    } else {
        sqlx::query("UPDATE chat_threads SET updated_at = ?2 WHERE id = ?1")
            .bind(thread_id.to_string())
            .bind(ts(t))
            .execute(&mut *tx)
            .await
            .map_err(db(action))?
            .rows_affected()
            > 0
    };
    if !found {
        return Err(Error::not_found("thread", thread_id));
    }
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<ChatMessage> = messages
        .into_iter()
        .map(|m| ChatMessage {
            id: MessageId::new(),
            thread_id,
            role: m.role,
            content: m.content,
            metadata: m.metadata,
            created_at: t,
        })
        .collect();
    let mut insert = sqlx::QueryBuilder::new(
        "INSERT INTO chat_messages (id, thread_id, role, content, metadata, created_at) ",
    );
    insert.push_values(&stored, |mut row, m| {
        row.push_bind(m.id.to_string())
            .push_bind(thread_id.to_string())
            .push_bind(m.role.as_str())
            .push_bind(m.content.clone())
            .push_bind(opt_json_text(&m.metadata))
            .push_bind(ts(t));
    });
    insert.build().execute(&mut *tx).await.map_err(db(action))?;
    Ok(stored)
}
