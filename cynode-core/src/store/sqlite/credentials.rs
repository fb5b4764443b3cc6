//! Encrypted API credentials.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;

use super::{RowExt, SqliteStore, db, is_unique_violation, stored, ts};
use crate::model::*;
use crate::store::memory::now;
use crate::store::{CredentialStore, validate};
use crate::{CredentialId, Error, Result};

fn credential_row(r: &SqliteRow) -> Result<ApiCredential> {
    Ok(ApiCredential {
        id: r.id("id")?,
        owner_type: r.text("owner_type")?,
        owner_id: r.id("owner_id")?,
        provider: r.text("provider")?,
        credential_type: r.text("credential_type")?,
        credential_name: r.text("credential_name")?,
        ciphertext: r.blob("credential_ciphertext")?,
        kid: r.opt_text("credential_kid")?,
        is_active: r.flag("is_active")?,
        expires_at: r.opt_time("expires_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn create_credential(&self, new: NewApiCredential) -> Result<ApiCredential> {
        const ACTION: &str = "store the credential";
        let provider = validate::provider(&new.provider)?;
        validate::text("credential name", &new.credential_name, 255)?;
        if new.ciphertext.is_empty() {
            return Err(Error::invalid("credential ciphertext must not be empty"));
        }
        let t = now();
        let c = ApiCredential {
            id: CredentialId::new(),
            owner_type: new.owner_type,
            owner_id: new.owner_id,
            provider,
            credential_type: new.credential_type,
            credential_name: new.credential_name,
            ciphertext: new.ciphertext,
            kid: new.kid,
            is_active: true,
            expires_at: new.expires_at.map(stored),
            created_at: t,
            updated_at: t,
        };
        let mut tx = self.write(ACTION).await?;
        sqlx::query(
            "INSERT INTO api_credentials
                 (id, owner_type, owner_id, provider, credential_type, credential_name,
                  credential_ciphertext, credential_kid, is_active, expires_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?10)",
        )
        .bind(c.id.to_string())
        .bind(&c.owner_type)
        .bind(c.owner_id.to_string())
        .bind(&c.provider)
        .bind(&c.credential_type)
        .bind(&c.credential_name)
        .bind(c.ciphertext.clone())
        .bind(&c.kid)
        .bind(c.expires_at.map(ts))
        .bind(ts(t))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!(
                    "a credential named '{}' for {} already exists",
                    c.credential_name, c.provider
                ))
            } else {
                db(ACTION)(e)
            }
        })?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(c)
    }

    async fn get_credential(&self, id: CredentialId) -> Result<ApiCredential> {
        let row = sqlx::query(
            "SELECT id, owner_type, owner_id, provider, credential_type, credential_name,
                    credential_ciphertext, credential_kid, is_active, expires_at, created_at, updated_at
             FROM api_credentials WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db("read the credential"))?;
        row.as_ref()
            .map(credential_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("credential", id))
    }

    async fn list_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
    ) -> Result<Vec<ApiCredential>> {
        let rows = sqlx::query(
            "SELECT id, owner_type, owner_id, provider, credential_type, credential_name,
                    credential_ciphertext, credential_kid, is_active, expires_at, created_at, updated_at
             FROM api_credentials WHERE owner_type = ?1 AND owner_id = ?2
             ORDER BY provider, credential_name",
        )
        .bind(owner_type)
        .bind(owner_id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db("list credentials"))?;
        rows.iter().map(credential_row).collect()
    }

    async fn usable_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
        provider: &str,
        at: Timestamp,
    ) -> Result<Vec<ApiCredential>> {
        let rows = sqlx::query(
            "SELECT id, owner_type, owner_id, provider, credential_type, credential_name,
                    credential_ciphertext, credential_kid, is_active, expires_at, created_at, updated_at
             FROM api_credentials
             WHERE owner_type = ?1 AND owner_id = ?2 AND provider = ?3
               AND is_active = 1 AND (expires_at IS NULL OR expires_at > ?4)
             ORDER BY created_at DESC, id DESC",
        )
        .bind(owner_type)
        .bind(owner_id.to_string())
        .bind(provider.to_ascii_lowercase())
        .bind(ts(at))
        .fetch_all(&self.reader)
        .await
        .map_err(db("list usable credentials"))?;
        rows.iter().map(credential_row).collect()
    }

    async fn set_credential_active(&self, id: CredentialId, active: bool) -> Result<ApiCredential> {
        const ACTION: &str = "update the credential";
        let mut tx = self.write(ACTION).await?;
        let row = sqlx::query(
            "UPDATE api_credentials SET is_active = ?2, updated_at = ?3 WHERE id = ?1
             RETURNING id, owner_type, owner_id, provider, credential_type, credential_name,
                       credential_ciphertext, credential_kid, is_active, expires_at, created_at, updated_at",
        )
        .bind(id.to_string())
        .bind(active)
        .bind(ts(now()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        let c = row
            .as_ref()
            .map(credential_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("credential", id))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(c)
    }

    async fn delete_credential(&self, id: CredentialId) -> Result<()> {
        const ACTION: &str = "delete the credential";
        let mut tx = self.write(ACTION).await?;
        let done = sqlx::query("DELETE FROM api_credentials WHERE id = ?1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("credential", id));
        }
        tx.commit().await.map_err(db(ACTION))
    }
}
