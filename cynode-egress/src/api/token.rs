//! Job-scoped caller tokens: HMAC-SHA256-signed, bound to one task and one job, with an
//! expiry. The orchestrator issues one per dispatched job; the egress service verifies
//! it and refuses calls for any other task or job.
//!
//! Format: `cnj1.<base64url(task uuid ‖ job uuid ‖ expiry unix seconds, big-endian)>.<base64url(HMAC)>`,
//! the MAC covering everything before the last dot. Tokens are opaque to holders.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeZone, Utc};
use cynode_core::{JobId, TaskId};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::Secret;

const PREFIX: &str = "cnj1.";
const PAYLOAD_LEN: usize = 16 + 16 + 8;

/// What a job token grants: calls for this task and job until `expires_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobClaims {
    /// The task calls are attributed to.
    pub task_id: TaskId,
    /// The job holding the token.
    pub job_id: JobId,
    /// End of validity (second precision).
    pub expires_at: DateTime<Utc>,
}

impl JobClaims {
    /// Claims for `task_id`/`job_id` valid for `ttl` from `now`.
    pub fn new(task_id: TaskId, job_id: JobId, now: DateTime<Utc>, ttl: chrono::Duration) -> Self {
        JobClaims {
            task_id,
            job_id,
            expires_at: now + ttl,
        }
    }
}

/// Why a token was refused. Callers map every variant to 401 and never echo the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The signing key is too short or not base64.
    #[error("job token key must be at least 32 bytes of standard base64")]
    BadKey,
    /// Not a job token.
    #[error("malformed job token")]
    Malformed,
    /// Signed with another key, or altered.
    #[error("job token signature mismatch")]
    BadSignature,
    /// Past its expiry.
    #[error("job token expired")]
    Expired,
}

/// Signs and verifies job tokens.
pub struct JobTokenKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for JobTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobTokenKey([REDACTED])")
    }
}

impl JobTokenKey {
    /// A key from raw bytes (at least 32).
    pub fn new(key: &[u8]) -> Result<Self, TokenError> {
        if key.len() < 32 {
            return Err(TokenError::BadKey);
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| TokenError::BadKey)?;
        Ok(JobTokenKey { mac })
    }

    /// A key from standard base64 (as configuration carries it).
    pub fn from_base64(b64: &Secret) -> Result<Self, TokenError> {
        use base64::engine::general_purpose::STANDARD;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(b64.expose().trim())
                .map_err(|_| TokenError::BadKey)?,
        );
        Self::new(&bytes)
    }

    /// A fresh random 32-byte signing key, standard base64, as configuration carries
    /// it (what [`JobTokenKey::from_base64`] reads).
    pub fn generate_base64() -> Secret {
        crate::crypto::CredentialCipher::generate_key()
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }

    /// Issues a token for `claims`.
    pub fn issue(&self, claims: &JobClaims) -> Secret {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..16].copy_from_slice(claims.task_id.as_uuid().as_bytes());
        payload[16..32].copy_from_slice(claims.job_id.as_uuid().as_bytes());
        payload[32..].copy_from_slice(&claims.expires_at.timestamp().to_be_bytes());
        let mut token = String::with_capacity(128);
        token.push_str(PREFIX);
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(token.as_bytes());
        let tag = mac.finalize().into_bytes();
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag));
        Secret::new(token)
    }

    /// Whether `token` looks like a job token (cheap prefix check, no verification).
    pub fn looks_like_job_token(token: &str) -> bool {
        token.starts_with(PREFIX)
    }

    /// Verifies signature and expiry and returns the claims.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<JobClaims, TokenError> {
        let (signed, tag_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let payload_b64 = signed.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;
        if payload.len() != PAYLOAD_LEN {
            return Err(TokenError::Malformed);
        }
        let uuid = |b: &[u8]| -> Result<uuid::Uuid, TokenError> {
            uuid::Uuid::from_slice(b).map_err(|_| TokenError::Malformed)
        };
        let task_id = TaskId(uuid(&payload[..16])?);
        let job_id = JobId(uuid(&payload[16..32])?);
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&payload[32..]);
        let expires_at = Utc
            .timestamp_opt(i64::from_be_bytes(exp), 0)
            .single()
            .ok_or(TokenError::Malformed)?;
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(JobClaims {
            task_id,
            job_id,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_expire_and_tamper() {
        let key = JobTokenKey::new(&[3u8; 32]).unwrap();
        let now = Utc::now();
        let claims = JobClaims::new(
            TaskId::new(),
            JobId::new(),
            now,
            chrono::Duration::minutes(5),
        );
        let token = key.issue(&claims);
        assert!(JobTokenKey::looks_like_job_token(token.expose()));
        let got = key.verify(token.expose(), now).unwrap();
        assert_eq!(got.task_id, claims.task_id);
        assert_eq!(got.job_id, claims.job_id);
        assert_eq!(
            key.verify(token.expose(), now + chrono::Duration::minutes(6)),
            Err(TokenError::Expired)
        );
        let other = JobTokenKey::new(&[4u8; 32]).unwrap();
        assert_eq!(
            other.verify(token.expose(), now),
            Err(TokenError::BadSignature)
        );
        // Swap in another payload under the same signature.
        let forged_claims = JobClaims {
            task_id: TaskId::new(),
            ..claims
        };
        let forged = key.issue(&forged_claims);
        let (payload, _) = forged.expose().rsplit_once('.').unwrap();
        let (_, tag) = token.expose().rsplit_once('.').unwrap();
        assert_eq!(
            key.verify(&format!("{payload}.{tag}"), now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(key.verify("nonsense", now), Err(TokenError::Malformed));
        assert_eq!(key.verify("cnj1.x.y!", now), Err(TokenError::Malformed));
        assert!(JobTokenKey::new(&[0u8; 8]).is_err());
    }

    #[test]
    fn a_generated_key_is_a_usable_base64_key_and_fresh_each_time() {
        let a = JobTokenKey::generate_base64();
        let b = JobTokenKey::generate_base64();
        assert_ne!(a.expose(), b.expose());
        let key = JobTokenKey::from_base64(&a).unwrap();
        let claims = JobClaims::new(
            TaskId::new(),
            JobId::new(),
            Utc::now(),
            chrono::Duration::minutes(1),
        );
        let token = key.issue(&claims);
        assert_eq!(
            key.verify(token.expose(), Utc::now()).unwrap(),
            claims_at_seconds(claims)
        );
        assert_eq!(
            JobTokenKey::from_base64(&b)
                .unwrap()
                .verify(token.expose(), Utc::now()),
            Err(TokenError::BadSignature)
        );
    }

    fn claims_at_seconds(c: JobClaims) -> JobClaims {
        JobClaims {
            expires_at: Utc.timestamp_opt(c.expires_at.timestamp(), 0).unwrap(),
            ..c
        }
    }
}
