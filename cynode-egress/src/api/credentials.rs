//! Storing and opening provider credentials: the secret is sealed before it reaches
//! [`CredentialStore::create_credential`] and opened only in the egress call path.

use cynode_core::{
    Error,
    model::{ApiCredential, NewApiCredential, Timestamp},
    store::CredentialStore,
};

use crate::crypto::{CredentialBinding, CredentialCipher, CryptoError, Secret};

/// A credential to store, with its plaintext secret.
#[derive(Clone, Debug)]
pub struct NewCredential {
    /// `user` or `group`.
    pub owner_type: String,
    /// Owner id.
    pub owner_id: uuid::Uuid,
    /// Provider id (stored trimmed and lower-case).
    pub provider: String,
    /// `api_key`, `oauth_token` or `bearer_token`.
    pub credential_type: String,
    /// Label, unique per owner and provider.
    pub credential_name: String,
    /// The secret; sealed before storage, never stored or logged in plain text.
    pub secret: Secret,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

fn binding(c: &ApiCredential) -> CredentialBinding<'_> {
    CredentialBinding {
        owner_type: &c.owner_type,
        owner_id: c.owner_id,
        provider: &c.provider,
        credential_name: &c.credential_name,
    }
}

/// Seals `new.secret` with the cipher's active key and stores the credential. The
/// returned row carries only ciphertext.
pub async fn store_credential(
    store: &dyn CredentialStore,
    cipher: &CredentialCipher,
    new: NewCredential,
) -> cynode_core::Result<ApiCredential> {
    if new.secret.is_empty() {
        return Err(Error::invalid("secret must not be empty"));
    }
    let provider = new.provider.trim().to_ascii_lowercase();
    let (ciphertext, kid) = cipher
        .seal(
            &new.secret,
            &CredentialBinding {
                owner_type: &new.owner_type,
                owner_id: new.owner_id,
                provider: &provider,
                credential_name: &new.credential_name,
            },
        )
        .map_err(|e| Error::Internal {
            message: "credential could not be sealed".into(),
            source: Some(Box::new(e)),
        })?;
    store
        .create_credential(NewApiCredential {
            owner_type: new.owner_type,
            owner_id: new.owner_id,
            provider,
            credential_type: new.credential_type,
            credential_name: new.credential_name,
            ciphertext,
            kid: Some(kid),
            expires_at: new.expires_at,
        })
        .await
}

/// Opens a stored credential's secret. Only the egress call path should need this.
pub fn open_credential(
    cipher: &CredentialCipher,
    credential: &ApiCredential,
) -> Result<Secret, CryptoError> {
    cipher.open(
        &credential.ciphertext,
        credential.kid.as_deref(),
        &binding(credential),
    )
}

/// Picks the credential to use among usable ones: the named one when `name` is given,
/// else the first by `credential_name` (deterministic).
pub(crate) fn choose(mut usable: Vec<ApiCredential>, name: Option<&str>) -> Option<ApiCredential> {
    usable.sort_by(|a, b| {
        a.credential_name
            .cmp(&b.credential_name)
            .then(a.created_at.cmp(&b.created_at))
    });
    match name {
        Some(n) => usable.into_iter().find(|c| c.credential_name == n),
        None => usable.into_iter().next(),
    }
}
