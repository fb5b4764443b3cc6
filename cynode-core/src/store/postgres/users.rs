//! [`UserStore`]: users, passwords, projects and refresh sessions.

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::PgStore;
use super::error::{db_err, missing_parent};
use super::rows::*;
use crate::model::*;
use crate::store::memory::now;
use crate::store::{UserStore, validate};
use crate::{Error, ProjectId, Result, SessionId, UserId};

/// Slug of a user's default project.
fn default_slug(id: UserId) -> String {
    format!("default-{id}")
}

async fn insert_project(conn: &mut PgConnection, new: NewProject) -> Result<Project> {
    validate::text("project slug", &new.slug, 255)?;
    let t = now();
    let row: ProjectRow = sqlx::query_as(concat!(
        "INSERT INTO projects (id, slug, display_name, description, is_active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, true, $5, $5) RETURNING ",
        project_columns!()
    ))
    .bind(Uuid::new_v4())
    .bind(&new.slug)
    .bind(&new.display_name)
    .bind(&new.description)
    .bind(t)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(row.into())
}

/// Inserts a user, its default project and optional password in the caller's
/// transaction.
async fn insert_user(conn: &mut PgConnection, new: NewUser) -> Result<User> {
    let t = now();
    let id = UserId::new();
    let row: UserRow = sqlx::query_as(concat!(
        "INSERT INTO users (id, handle, email, is_active, created_at, updated_at) \
         VALUES ($1, $2, $3, true, $4, $4) RETURNING ",
        user_columns!()
    ))
    .bind(id.0)
    .bind(&new.handle)
    .bind(&new.email)
    .bind(t)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    insert_project(
        conn,
        NewProject {
            slug: default_slug(id),
            display_name: "Default Project".into(),
            description: None,
        },
    )
    .await?;
    if let Some(pw) = new.password {
        upsert_password(conn, id, &pw).await?;
    }
    Ok(row.into())
}

async fn upsert_password(conn: &mut PgConnection, id: UserId, pw: &PasswordHash) -> Result<()> {
    let t = now();
    sqlx::query(
        "INSERT INTO password_credentials (id, user_id, password_hash, hash_alg, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (user_id) DO UPDATE \
         SET password_hash = EXCLUDED.password_hash, hash_alg = EXCLUDED.hash_alg, \
             updated_at = EXCLUDED.updated_at",
    )
    .bind(Uuid::new_v4())
    .bind(id.0)
    .bind(&pw.hash)
    .bind(&pw.alg)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(|e| missing_parent(e, "password_credentials_user_fkey", "user", id))?;
    Ok(())
}

async fn insert_session(
    conn: &mut PgConnection,
    new: &NewRefreshSession,
) -> Result<RefreshSession> {
    let t = now();
    let row: SessionRow = sqlx::query_as(concat!(
        "INSERT INTO refresh_sessions (id, user_id, refresh_token_hash, refresh_token_kid, \
         is_active, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, true, $5, $6, $6) RETURNING ",
        session_columns!()
    ))
    .bind(Uuid::new_v4())
    .bind(new.user_id.0)
    .bind(&new.token_hash)
    .bind(&new.token_kid)
    .bind(new.expires_at)
    .bind(t)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(row.into())
}

async fn user_exists(pool: &PgPool, id: UserId) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(id.0)
        .fetch_one(pool)
        .await
        .map_err(db_err)
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: NewUser) -> Result<User> {
        validate::handle(&new.handle)?;
        if new.handle == validate::SYSTEM_HANDLE {
            return Err(Error::invalid("the handle 'system' is reserved"));
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let user = insert_user(&mut tx, new).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(user)
    }

    async fn ensure_system_user(&self) -> Result<User> {
        if let Some(u) = self.find_user_by_handle(validate::SYSTEM_HANDLE).await? {
            return Ok(u);
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let created = insert_user(
            &mut tx,
            NewUser {
                handle: validate::SYSTEM_HANDLE.into(),
                ..Default::default()
            },
        )
        .await;
        match created {
            Ok(u) => {
                tx.commit().await.map_err(db_err)?;
                Ok(u)
            }
            // Created concurrently by another caller: return theirs.
            Err(Error::Conflict(_)) => {
                drop(tx);
                self.get_user_by_handle(validate::SYSTEM_HANDLE).await
            }
            Err(e) => Err(e),
        }
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("user", id))
    }

    async fn get_user_by_handle(&self, handle: &str) -> Result<User> {
        self.find_user_by_handle(handle)
            .await?
            .ok_or_else(|| Error::not_found("user", handle))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY handle"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn set_user_active(&self, id: UserId, active: bool) -> Result<User> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "UPDATE users SET is_active = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(active)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("user", id))
    }

    async fn set_password(&self, id: UserId, hash: PasswordHash) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        upsert_password(&mut conn, id, &hash).await
    }

    async fn get_password(&self, id: UserId) -> Result<Option<PasswordHash>> {
        let row: Option<(Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
            "SELECT p.password_hash, p.hash_alg FROM users u \
             LEFT JOIN password_credentials p ON p.user_id = u.id WHERE u.id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            None => Err(Error::not_found("user", id)),
            Some((Some(hash), Some(alg))) => Ok(Some(PasswordHash { hash, alg })),
            Some(_) => Ok(None),
        }
    }

    async fn default_project(&self, id: UserId) -> Result<Project> {
        if !user_exists(&self.pool, id).await? {
            return Err(Error::not_found("user", id));
        }
        let row: Option<ProjectRow> = sqlx::query_as(concat!(
            "SELECT ",
            project_columns!(),
            " FROM projects WHERE slug = $1"
        ))
        .bind(default_slug(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("default project of user", id))
    }

    async fn create_project(&self, new: NewProject) -> Result<Project> {
        validate::text("project display name", &new.display_name, 255)?;
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        insert_project(&mut conn, new).await
    }

    async fn get_project(&self, id: ProjectId) -> Result<Project> {
        let row: Option<ProjectRow> = sqlx::query_as(concat!(
            "SELECT ",
            project_columns!(),
            " FROM projects WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("project", id))
    }

    async fn get_project_by_slug(&self, slug: &str) -> Result<Project> {
        let row: Option<ProjectRow> = sqlx::query_as(concat!(
            "SELECT ",
            project_columns!(),
            " FROM projects WHERE slug = $1"
        ))
        .bind(slug)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("project", slug))
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows: Vec<ProjectRow> = sqlx::query_as(concat!(
            "SELECT ",
            project_columns!(),
            " FROM projects ORDER BY slug"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn create_session(&self, new: NewRefreshSession) -> Result<RefreshSession> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        insert_session(&mut conn, &new).await
    }

    async fn find_active_session(
        &self,
        token_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<RefreshSession>> {
        let row: Option<SessionRow> = sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM refresh_sessions \
             WHERE refresh_token_hash = $1 AND is_active AND expires_at > $2 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(Into::into))
    }

    async fn get_session(&self, id: SessionId) -> Result<RefreshSession> {
        let row: Option<SessionRow> = sqlx::query_as(concat!(
            "SELECT ",
            session_columns!(),
            " FROM refresh_sessions WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("session", id))
    }

    async fn rotate_session(
        &self,
        old: SessionId,
        new: NewRefreshSession,
        at: Timestamp,
    ) -> Result<RefreshSession> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Lock the old session: of two concurrent rotations, the second sees it inactive.
        let current: Option<(Uuid, bool, Timestamp)> = sqlx::query_as(
            "SELECT user_id, is_active, expires_at FROM refresh_sessions WHERE id = $1 FOR UPDATE",
        )
        .bind(old.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let (user_id, active, expires_at) =
            current.ok_or_else(|| Error::not_found("session", old))?;
        if !active || expires_at <= at {
            return Err(Error::conflict("refresh session is no longer active"));
        }
        if user_id != new.user_id.0 {
            return Err(Error::invalid(
                "a rotated session must belong to the same user",
            ));
        }
        let created = insert_session(&mut tx, &new).await?;
        sqlx::query(
            "UPDATE refresh_sessions SET is_active = false, last_used_at = $2, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(old.0)
        .bind(at)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(created)
    }

    async fn revoke_session(&self, id: SessionId) -> Result<()> {
        // The EXISTS sees the snapshot before the update, so it answers "did it exist".
        let exists: bool = sqlx::query_scalar(
            "WITH u AS (UPDATE refresh_sessions SET is_active = false, updated_at = $2 \
                        WHERE id = $1 AND is_active RETURNING id) \
             SELECT EXISTS (SELECT 1 FROM refresh_sessions WHERE id = $1)",
        )
        .bind(id.0)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        if exists {
            Ok(())
        } else {
            Err(Error::not_found("session", id))
        }
    }

    async fn revoke_user_sessions(&self, user_id: UserId) -> Result<u64> {
        let (exists, n): (bool, i64) = sqlx::query_as(
            "WITH u AS (UPDATE refresh_sessions SET is_active = false, updated_at = $2 \
                        WHERE user_id = $1 AND is_active RETURNING id) \
             SELECT EXISTS (SELECT 1 FROM users WHERE id = $1), (SELECT count(*) FROM u)",
        )
        .bind(user_id.0)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        if !exists {
            return Err(Error::not_found("user", user_id));
        }
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl PgStore {
    async fn find_user_by_handle(&self, handle: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE handle = $1"
        ))
        .bind(handle)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(Into::into))
    }
}
