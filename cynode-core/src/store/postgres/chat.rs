//! [`ChatStore`]: chat threads and messages.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::audit::insert_audit;
use super::error::db_err;
use super::rows::*;
use crate::model::*;
use crate::store::memory::now;
use crate::store::{ChatStore, ChatTurn, NewChatMessage, validate};
use crate::{Error, MessageId, ProjectId, Result, ThreadId, UserId};

#[async_trait]
impl ChatStore for PgStore {
    async fn create_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
        title: Option<String>,
    ) -> Result<ChatThread> {
        let t = now();
        let row: ThreadRow = sqlx::query_as(concat!(
            "INSERT INTO chat_threads (id, user_id, project_id, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING ",
            thread_columns!()
        ))
        .bind(Uuid::new_v4())
        .bind(user_id.0)
        .bind(project_id.map(|p| p.0))
        .bind(title)
        .bind(t)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.into())
    }

    async fn get_thread(&self, id: ThreadId) -> Result<ChatThread> {
        let row: Option<ThreadRow> = sqlx::query_as(concat!(
            "SELECT ",
            thread_columns!(),
            " FROM chat_threads WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("thread", id))
    }

    async fn list_threads(&self, user_id: UserId, limit: u32) -> Result<Vec<ChatThread>> {
        let rows: Vec<ThreadRow> = sqlx::query_as(concat!(
            "SELECT ",
            thread_columns!(),
            " FROM chat_threads WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
        ))
        .bind(user_id.0)
        .bind(i64::from(validate::limit(limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn append_message(
        &self,
        thread_id: ThreadId,
        role: ChatRole,
        content: String,
        metadata: Option<Value>,
    ) -> Result<ChatMessage> {
        // One statement, so one transaction.
        let msg = NewChatMessage {
            role,
            content,
            metadata,
        };
        append(&self.pool, thread_id, msg, now()).await
    }

    async fn list_messages(&self, thread_id: ThreadId) -> Result<Vec<ChatMessage>> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chat_threads WHERE id = $1)")
                .bind(thread_id.0)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        if !exists {
            return Err(Error::not_found("thread", thread_id));
        }
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM chat_messages WHERE thread_id = $1 ORDER BY seq"
        ))
        .bind(thread_id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(ChatMessage::try_from).collect()
    }

    async fn newest_thread(
        &self,
        user_id: UserId,
        project_id: Option<ProjectId>,
    ) -> Result<Option<ChatThread>> {
        let row: Option<ThreadRow> = sqlx::query_as(concat!(
            "SELECT ",
            thread_columns!(),
            " FROM chat_threads WHERE user_id = $1 AND project_id IS NOT DISTINCT FROM $2 \
             ORDER BY updated_at DESC, id DESC LIMIT 1"
        ))
        .bind(user_id.0)
        .bind(project_id.map(|p| p.0))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(Into::into))
    }

    async fn recent_messages(&self, thread_id: ThreadId, limit: u32) -> Result<Vec<ChatMessage>> {
        // One query on the hot path; only an empty answer asks whether the thread exists.
        let rows: Vec<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM chat_messages WHERE thread_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(thread_id.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        if rows.is_empty() {
            self.get_thread(thread_id).await?;
        }
        let mut v = rows
            .into_iter()
            .map(ChatMessage::try_from)
            .collect::<Result<Vec<_>>>()?;
        v.reverse();
        Ok(v)
    }

    async fn append_turn(&self, turn: ChatTurn) -> Result<Vec<ChatMessage>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let t = now();
        let mut stored = Vec::with_capacity(turn.messages.len());
        if turn.messages.is_empty() {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chat_threads WHERE id = $1)")
                    .bind(turn.thread_id.0)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if !exists {
                return Err(Error::not_found("thread", turn.thread_id));
            }
        }
        for m in turn.messages {
            stored.push(append(&mut *tx, turn.thread_id, m, t).await?);
        }
        if let Some(a) = turn.audit {
            insert_audit(&mut *tx, &AuditRecord::Chat(a)).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(stored)
    }
}

/// Appends one message at time `t` and bumps the thread's `updated_at`, in one
/// statement; `not_found` when the thread does not exist.
async fn append<'c>(
    ex: impl sqlx::PgExecutor<'c>,
    thread_id: ThreadId,
    m: NewChatMessage,
    t: Timestamp,
) -> Result<ChatMessage> {
    let row: Option<MessageRow> = sqlx::query_as(concat!(
        "WITH th AS (UPDATE chat_threads SET updated_at = $3 WHERE id = $2 RETURNING id) \
         INSERT INTO chat_messages (id, thread_id, role, content, metadata, created_at) \
         SELECT $1, th.id, $4, $5, $6, $3 FROM th RETURNING ",
        message_columns!()
    ))
    .bind(MessageId::new().0)
    .bind(thread_id.0)
    .bind(t)
    .bind(m.role.as_str())
    .bind(m.content)
    .bind(m.metadata)
    .fetch_optional(ex)
    .await
    .map_err(db_err)?;
    row.map(ChatMessage::try_from)
        .transpose()?
        .ok_or_else(|| Error::not_found("thread", thread_id))
}
