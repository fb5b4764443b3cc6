//! [`CredentialStore`]: encrypted API credentials for the egress service.

use async_trait::async_trait;

use super::PgStore;
use super::error::db_err;
use super::rows::*;
use crate::model::*;
use crate::store::memory::now;
use crate::store::{CredentialStore, validate};
use crate::{CredentialId, Error, Result};

#[async_trait]
impl CredentialStore for PgStore {
    async fn create_credential(&self, new: NewApiCredential) -> Result<ApiCredential> {
        let provider = validate::provider(&new.provider)?;
        validate::text("credential name", &new.credential_name, 255)?;
        if new.ciphertext.is_empty() {
            return Err(Error::invalid("credential ciphertext must not be empty"));
        }
        let t = now();
        let row: CredentialRow = sqlx::query_as(concat!(
            "INSERT INTO api_credentials (id, owner_type, owner_id, provider, credential_type, \
             credential_name, credential_ciphertext, credential_kid, is_active, expires_at, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9, $10, $10) \
             RETURNING ",
            credential_columns!()
        ))
        .bind(CredentialId::new().0)
        .bind(&new.owner_type)
        .bind(new.owner_id)
        .bind(&provider)
        .bind(&new.credential_type)
        .bind(&new.credential_name)
        .bind(&new.ciphertext)
        .bind(&new.kid)
        .bind(new.expires_at)
        .bind(t)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match db_err(e) {
            Error::Conflict(_) => Error::conflict(format!(
                "a credential named '{}' for {provider} already exists",
                new.credential_name
            )),
            other => other,
        })?;
        Ok(row.into())
    }

    async fn get_credential(&self, id: CredentialId) -> Result<ApiCredential> {
        let row: Option<CredentialRow> = sqlx::query_as(concat!(
            "SELECT ",
            credential_columns!(),
            " FROM api_credentials WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("credential", id))
    }

    async fn list_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
    ) -> Result<Vec<ApiCredential>> {
        let rows: Vec<CredentialRow> = sqlx::query_as(concat!(
            "SELECT ",
            credential_columns!(),
            " FROM api_credentials WHERE owner_type = $1 AND owner_id = $2 \
              ORDER BY provider, credential_name"
        ))
        .bind(owner_type)
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn usable_credentials(
        &self,
        owner_type: &str,
        owner_id: uuid::Uuid,
        provider: &str,
        at: Timestamp,
    ) -> Result<Vec<ApiCredential>> {
        let rows: Vec<CredentialRow> = sqlx::query_as(concat!(
            "SELECT ",
            credential_columns!(),
            " FROM api_credentials \
              WHERE owner_type = $1 AND owner_id = $2 AND provider = $3 \
                AND is_active AND (expires_at IS NULL OR expires_at > $4) \
              ORDER BY created_at DESC, id DESC"
        ))
        .bind(owner_type)
        .bind(owner_id)
        .bind(provider.to_ascii_lowercase())
        .bind(at)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn set_credential_active(&self, id: CredentialId, active: bool) -> Result<ApiCredential> {
        let row: Option<CredentialRow> = sqlx::query_as(concat!(
            "UPDATE api_credentials SET is_active = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            credential_columns!()
        ))
        .bind(id.0)
        .bind(active)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(Into::into)
            .ok_or_else(|| Error::not_found("credential", id))
    }

    async fn delete_credential(&self, id: CredentialId) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_credentials WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("credential", id));
        }
        Ok(())
    }
}
