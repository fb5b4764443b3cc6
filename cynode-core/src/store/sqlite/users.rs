//! Users, passwords, projects and refresh sessions.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::{RowExt, SqliteStore, db, exists, is_unique_violation, stored, ts};
use crate::model::*;
use crate::store::memory::now;
use crate::store::{UserStore, validate};
use crate::{Error, ProjectId, Result, SessionId, UserId};

fn user_row(r: &SqliteRow) -> Result<User> {
    Ok(User {
        id: r.id("id")?,
        handle: r.text("handle")?,
        email: r.opt_text("email")?,
        is_active: r.flag("is_active")?,
        external_source: r.opt_text("external_source")?,
        external_id: r.opt_text("external_id")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn project_row(r: &SqliteRow) -> Result<Project> {
    Ok(Project {
        id: r.id("id")?,
        slug: r.text("slug")?,
        display_name: r.text("display_name")?,
        description: r.opt_text("description")?,
        is_active: r.flag("is_active")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn session_row(r: &SqliteRow) -> Result<RefreshSession> {
    Ok(RefreshSession {
        id: r.id("id")?,
        user_id: r.id("user_id")?,
        token_hash: r.blob("refresh_token_hash")?,
        token_kid: r.opt_text("refresh_token_kid")?,
        is_active: r.flag("is_active")?,
        expires_at: r.time("expires_at")?,
        last_used_at: r.opt_time("last_used_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// The slug of a user's default project.
fn default_slug(id: UserId) -> String {
    format!("default-{id}")
}

async fn user_exists(conn: &mut SqliteConnection, id: UserId, action: &str) -> Result<bool> {
    exists(
        conn,
        "SELECT 1 FROM users WHERE id = ?1",
        id.to_string(),
        action,
    )
    .await
}

async fn insert_project(conn: &mut SqliteConnection, new: NewProject) -> Result<Project> {
    validate::text("project slug", &new.slug, 255)?;
    let t = now();
    let p = Project {
        id: ProjectId::new(),
        slug: new.slug,
        display_name: new.display_name,
        description: new.description,
        is_active: true,
        created_at: t,
        updated_at: t,
    };
    sqlx::query(
        "INSERT INTO projects (id, slug, display_name, description, is_active, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
    )
    .bind(p.id.to_string())
    .bind(&p.slug)
    .bind(&p.display_name)
    .bind(&p.description)
    .bind(ts(t))
    .execute(conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("project slug '{}' already exists", p.slug))
        } else {
            db("create the project")(e)
        }
    })?;
    Ok(p)
}

/// Inserts the user, its default project and its password in the caller's transaction.
async fn insert_user(conn: &mut SqliteConnection, new: NewUser) -> Result<User> {
    const ACTION: &str = "create the user";
    let taken = sqlx::query("SELECT 1 FROM users WHERE handle = ?1")
        .bind(&new.handle)
        .fetch_optional(&mut *conn);
    if taken.await.map_err(db(ACTION))?.is_some() {
        return Err(Error::conflict(format!("handle '{}' is taken", new.handle)));
    }
    if let Some(e) = &new.email {
        let taken = sqlx::query("SELECT 1 FROM users WHERE email = ?1")
            .bind(e)
            .fetch_optional(&mut *conn);
        if taken.await.map_err(db(ACTION))?.is_some() {
            return Err(Error::conflict(format!("e-mail '{e}' is taken")));
        }
    }
    let t = now();
    let user = User {
        id: UserId::new(),
        handle: new.handle,
        email: new.email,
        is_active: true,
        external_source: None,
        external_id: None,
        created_at: t,
        updated_at: t,
    };
    sqlx::query(
        "INSERT INTO users (id, handle, email, is_active, created_at, updated_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?4)",
    )
    .bind(user.id.to_string())
    .bind(&user.handle)
    .bind(&user.email)
    .bind(ts(t))
    .execute(&mut *conn)
    .await
    .map_err(db(ACTION))?;
    insert_project(
        &mut *conn,
        NewProject {
            slug: default_slug(user.id),
            display_name: "Default Project".into(),
            description: None,
        },
    )
    .await?;
    if let Some(pw) = new.password {
        upsert_password(&mut *conn, user.id, pw).await?;
    }
    Ok(user)
}

async fn upsert_password(conn: &mut SqliteConnection, id: UserId, pw: PasswordHash) -> Result<()> {
    let t = ts(now());
    sqlx::query(
        "INSERT INTO password_credentials (id, user_id, password_hash, hash_alg, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (user_id) DO UPDATE
             SET password_hash = excluded.password_hash,
                 hash_alg = excluded.hash_alg,
                 updated_at = excluded.updated_at",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(id.to_string())
    .bind(pw.hash)
    .bind(pw.alg)
    .bind(t)
    .execute(conn)
    .await
    .map_err(db("store the password"))?;
    Ok(())
}

async fn insert_session(
    conn: &mut SqliteConnection,
    new: NewRefreshSession,
) -> Result<RefreshSession> {
    const ACTION: &str = "create the session";
    // The user is a reference of the new row: a dangling one is invalid input.
    if !user_exists(&mut *conn, new.user_id, ACTION).await? {
        return Err(Error::invalid(format!(
            "user {} does not exist",
            new.user_id
        )));
    }
    let t = now();
    let s = RefreshSession {
        id: SessionId::new(),
        user_id: new.user_id,
        token_hash: new.token_hash,
        token_kid: new.token_kid,
        is_active: true,
        expires_at: stored(new.expires_at),
        last_used_at: None,
        created_at: t,
        updated_at: t,
    };
    sqlx::query(
        "INSERT INTO refresh_sessions
             (id, user_id, refresh_token_hash, refresh_token_kid, is_active, expires_at,
              last_used_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, NULL, ?6, ?6)",
    )
    .bind(s.id.to_string())
    .bind(s.user_id.to_string())
    .bind(s.token_hash.clone())
    .bind(&s.token_kid)
    .bind(ts(s.expires_at))
    .bind(ts(t))
    .execute(conn)
    .await
    .map_err(db(ACTION))?;
    Ok(s)
}

impl SqliteStore {
    async fn fetch_user(&self, id: UserId) -> Result<User> {
        let row = sqlx::query(
            "SELECT id, handle, email, is_active, external_source, external_id, created_at, updated_at
             FROM users WHERE id = ?1",
        )
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("read the user"))?;
        row.as_ref()
            .map(user_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("user", id))
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, new: NewUser) -> Result<User> {
        validate::handle(&new.handle)?;
        if new.handle == validate::SYSTEM_HANDLE {
            return Err(Error::invalid("the handle 'system' is reserved"));
        }
        let mut tx = self.write("create the user").await?;
        let user = insert_user(&mut tx, new).await?;
        tx.commit().await.map_err(db("create the user"))?;
        Ok(user)
    }

    async fn ensure_system_user(&self) -> Result<User> {
        const ACTION: &str = "create the system user";
        let mut tx = self.write(ACTION).await?;
        let found = sqlx::query(
            "SELECT id, handle, email, is_active, external_source, external_id, created_at, updated_at
             FROM users WHERE handle = ?1",
        )
        .bind(validate::SYSTEM_HANDLE)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        if let Some(r) = found {
            return user_row(&r);
        }
        let user = insert_user(
            &mut tx,
            NewUser {
                handle: validate::SYSTEM_HANDLE.into(),
                ..Default::default()
            },
        )
        .await?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        self.fetch_user(id).await
    }

    async fn get_user_by_handle(&self, handle: &str) -> Result<User> {
        let row = sqlx::query(
            "SELECT id, handle, email, is_active, external_source, external_id, created_at, updated_at
             FROM users WHERE handle = ?1",
        )
        .bind(handle)
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the user"))?;
        row.as_ref()
            .map(user_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("user", handle))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, handle, email, is_active, external_source, external_id, created_at, updated_at
             FROM users ORDER BY handle",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db("list users"))?;
        rows.iter().map(user_row).collect()
    }

    async fn set_user_active(&self, id: UserId, active: bool) -> Result<User> {
        const ACTION: &str = "update the user";
        let mut tx = self.write(ACTION).await?;
        let row = sqlx::query(
            "UPDATE users SET is_active = ?2, updated_at = ?3 WHERE id = ?1
             RETURNING id, handle, email, is_active, external_source, external_id, created_at, updated_at",
        )
        .bind(id.to_string())
        .bind(active)
        .bind(ts(now()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        let user = row
            .as_ref()
            .map(user_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("user", id))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(user)
    }

    async fn set_password(&self, id: UserId, hash: PasswordHash) -> Result<()> {
        const ACTION: &str = "store the password";
        let mut tx = self.write(ACTION).await?;
        if !user_exists(&mut tx, id, ACTION).await? {
            return Err(Error::not_found("user", id));
        }
        upsert_password(&mut tx, id, hash).await?;
        tx.commit().await.map_err(db(ACTION))
    }

    async fn get_password(&self, id: UserId) -> Result<Option<PasswordHash>> {
        const ACTION: &str = "read the password";
        let mut tx = self.read(ACTION).await?;
        if !user_exists(&mut tx, id, ACTION).await? {
            return Err(Error::not_found("user", id));
        }
        let row = sqlx::query(
            "SELECT password_hash, hash_alg FROM password_credentials WHERE user_id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        row.map(|r| {
            Ok(PasswordHash {
                hash: r.blob("password_hash")?,
                alg: r.text("hash_alg")?,
            })
        })
        .transpose()
    }

    async fn default_project(&self, id: UserId) -> Result<Project> {
        const ACTION: &str = "read the default project";
        let mut tx = self.read(ACTION).await?;
        if !user_exists(&mut tx, id, ACTION).await? {
            return Err(Error::not_found("user", id));
        }
        let row = sqlx::query(
            "SELECT id, slug, display_name, description, is_active, created_at, updated_at
             FROM projects WHERE slug = ?1",
        )
        .bind(default_slug(id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        row.as_ref()
            .map(project_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("default project of user", id))
    }

    async fn create_project(&self, new: NewProject) -> Result<Project> {
        validate::text("project display name", &new.display_name, 255)?;
        validate::text("project slug", &new.slug, 255)?;
        let mut tx = self.write("create the project").await?;
        let p = insert_project(&mut tx, new).await?;
        tx.commit().await.map_err(db("create the project"))?;
        Ok(p)
    }

    async fn get_project(&self, id: ProjectId) -> Result<Project> {
        let row = sqlx::query(
            "SELECT id, slug, display_name, description, is_active, created_at, updated_at
             FROM projects WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the project"))?;
        row.as_ref()
            .map(project_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("project", id))
    }

    async fn get_project_by_slug(&self, slug: &str) -> Result<Project> {
        let row = sqlx::query(
            "SELECT id, slug, display_name, description, is_active, created_at, updated_at
             FROM projects WHERE slug = ?1",
        )
        .bind(slug)
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the project"))?;
        row.as_ref()
            .map(project_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("project", slug))
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(
            "SELECT id, slug, display_name, description, is_active, created_at, updated_at
             FROM projects ORDER BY slug",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db("list projects"))?;
        rows.iter().map(project_row).collect()
    }

    async fn create_session(&self, new: NewRefreshSession) -> Result<RefreshSession> {
        let mut tx = self.write("create the session").await?;
        let s = insert_session(&mut tx, new).await?;
        tx.commit().await.map_err(db("create the session"))?;
        Ok(s)
    }

    async fn find_active_session(
        &self,
        token_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<RefreshSession>> {
        let row = sqlx::query(
            "SELECT id, user_id, refresh_token_hash, refresh_token_kid, is_active, expires_at,
                    last_used_at, created_at, updated_at
             FROM refresh_sessions
             -- the unary plus keeps the planner on the (selective) token-hash index
             WHERE refresh_token_hash = ?1 AND +is_active = 1 AND +expires_at > ?2
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(token_hash.to_vec())
        .bind(ts(now))
        .fetch_optional(&self.reader)
        .await
        .map_err(db("look up the session"))?;
        row.as_ref().map(session_row).transpose()
    }

    async fn get_session(&self, id: SessionId) -> Result<RefreshSession> {
        let row = sqlx::query(
            "SELECT id, user_id, refresh_token_hash, refresh_token_kid, is_active, expires_at,
                    last_used_at, created_at, updated_at
             FROM refresh_sessions WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the session"))?;
        row.as_ref()
            .map(session_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("session", id))
    }

    async fn rotate_session(
        &self,
        old: SessionId,
        new: NewRefreshSession,
        at: Timestamp,
    ) -> Result<RefreshSession> {
        const ACTION: &str = "rotate the session";
        let mut tx = self.write(ACTION).await?;
        let row = sqlx::query(
            "SELECT user_id, is_active, expires_at FROM refresh_sessions WHERE id = ?1",
        )
        .bind(old.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?
        .ok_or_else(|| Error::not_found("session", old))?;
        let owner: UserId = row.id("user_id")?;
        if !row.flag("is_active")? || row.int("expires_at")? <= ts(at) {
            return Err(Error::conflict("refresh session is no longer active"));
        }
        if owner != new.user_id {
            return Err(Error::invalid(
                "a rotated session must belong to the same user",
            ));
        }
        let created = insert_session(&mut tx, new).await?;
        sqlx::query(
            "UPDATE refresh_sessions SET is_active = 0, last_used_at = ?2, updated_at = ?3
             WHERE id = ?1",
        )
        .bind(old.to_string())
        .bind(ts(at))
        .bind(ts(now()))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(created)
    }

    async fn revoke_session(&self, id: SessionId) -> Result<()> {
        const ACTION: &str = "revoke the session";
        let mut tx = self.write(ACTION).await?;
        if !exists(
            &mut tx,
            "SELECT 1 FROM refresh_sessions WHERE id = ?1",
            id.to_string(),
            ACTION,
        )
        .await?
        {
            return Err(Error::not_found("session", id));
        }
        sqlx::query("UPDATE refresh_sessions SET is_active = 0, updated_at = ?2 WHERE id = ?1 AND is_active = 1")
            .bind(id.to_string())
            .bind(ts(now()))
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))
    }

    async fn revoke_user_sessions(&self, user_id: UserId) -> Result<u64> {
        const ACTION: &str = "revoke the user's sessions";
        let mut tx = self.write(ACTION).await?;
        if !user_exists(&mut tx, user_id, ACTION).await? {
            return Err(Error::not_found("user", user_id));
        }
        let done = sqlx::query(
            "UPDATE refresh_sessions SET is_active = 0, updated_at = ?2 WHERE user_id = ?1 AND is_active = 1",
        )
        .bind(user_id.to_string())
        .bind(ts(now()))
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(done.rows_affected())
    }
}
