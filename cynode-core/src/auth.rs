//! Authentication primitives shared by the gateway, the control plane and the CLI:
//! argon2id password hashing, HS256 JSON Web Tokens with a key id, refresh-token
//! hashing, and the idempotent creation of the first admin.
//!
//! Everything here is synchronous and takes the current time as an argument, so callers
//! decide where the CPU-heavy hashing runs and tests control the clock.
//!
//! Password hashes are PHC strings
//! (`$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>`, unpadded standard base64), so
//! hashes written by the reference bootstrap verify here and the other way round.
//!
//! ```
//! use cynode_core::auth::{JwtKey, JwtKeys, TokenKind, issue_access_token};
//! use cynode_core::UserId;
//!
//! let keys = JwtKeys::new(JwtKey::new("k1", b"a long random secret".to_vec()));
//! let now = chrono::Utc::now();
//! let user = UserId::new();
//! let (token, _) = issue_access_token(&keys, user, "alice", now, std::time::Duration::from_secs(900));
//! let claims = keys.verify(&token, TokenKind::Access, now).unwrap();
//! assert_eq!(claims.user_id, user.to_string());
//! ```

use std::fmt;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    PasswordHash as PhcHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{AuditRecord, AuthAudit, NewUser, PasswordHash, Timestamp, User};
use crate::store::Store;
use crate::{AuditId, Error, Result, UserId};

// ---------------------------------------------------------------- passwords

/// The `hash_alg` value stored with argon2id hashes.
pub const ARGON2ID: &str = "argon2id";

/// Argon2id cost parameters. The default is the reference's: 64 MiB of memory, 3
/// iterations, parallelism 2, a 16-byte salt and a 32-byte key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordParams {
    /// Memory cost in KiB (default 65536 = 64 MiB).
    pub memory_kib: u32,
    /// Iterations (default 3).
    pub iterations: u32,
    /// Lanes (default 2).
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 2,
        }
    }
}

impl PasswordParams {
    /// The cheapest parameters argon2 accepts (8 KiB, 1 iteration, 1 lane). Only for
    /// tests, where the cost of the default would dominate the run time.
    pub fn insecure_fast_for_tests() -> Self {
        Self {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| Error::invalid(format!("invalid argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashes a password with argon2id and a fresh random 16-byte salt. CPU- and
/// memory-heavy by design (about 64 MiB with the default parameters): run it off the
/// async executor.
pub fn hash_password(password: &str, params: &PasswordParams) -> Result<PasswordHash> {
    let argon2 = params.argon2()?;
    let salt = SaltString::generate(&mut OsRng);
    let phc = argon2
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Internal {
            message: "password hashing failed".into(),
            source: Some(e.to_string().into()),
        })?;
    Ok(PasswordHash {
        hash: phc.to_string().into_bytes(),
        alg: ARGON2ID.into(),
    })
}

/// Checks a password against a stored hash, in constant time with respect to the
/// password. The cost parameters are read from the stored PHC string.
///
/// Returns `Ok(false)` for a wrong password and an [`Error::Internal`] when the stored
/// hash is not an argon2id PHC string this code can read (a data problem, not a wrong
/// password).
pub fn verify_password(password: &str, stored: &PasswordHash) -> Result<bool> {
    if stored.alg != ARGON2ID {
        return Err(Error::internal(format!(
            "unsupported password hash algorithm '{}'",
            stored.alg
        )));
    }
    let text = std::str::from_utf8(&stored.hash)
        .map_err(|_| Error::internal("stored password hash is not UTF-8"))?;
    let parsed = PhcHash::new(text).map_err(|e| Error::Internal {
        message: "stored password hash is malformed".into(),
        source: Some(e.to_string().into()),
    })?;
    if parsed.algorithm.as_str() != ARGON2ID {
        return Err(Error::internal("stored password hash is not argon2id"));
    }
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(Error::Internal {
            message: "password verification failed".into(),
            source: Some(e.to_string().into()),
        }),
    }
}

// ---------------------------------------------------------------- tokens

/// The `iss` claim of every token.
pub const ISSUER: &str = "cynodeai";

/// Longest token accepted for verification; anything longer is rejected unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a token may be used for (`token_type` claim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A user's access token: sent as `Authorization: Bearer` on API calls.
    Access,
    /// A user's refresh token: exchanged for a new token pair.
    Refresh,
    /// A worker node's token.
    Node,
}

impl TokenKind {
    /// The claim value.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::Node => "node",
        }
    }
}

/// The claims of user and node tokens (wire names as in the API contract).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, always [`ISSUER`].
    pub iss: String,
    /// Subject: the user (or node) id.
    pub sub: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds; the token is invalid from this second on.
    pub exp: i64,
    /// Random token id (makes every token unique).
    pub jti: String,
    /// Kind of token.
    pub token_type: TokenKind,
    /// The user id (access and refresh tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// The user handle (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// Node id (node tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Node slug (node tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_slug: Option<String>,
}

impl Claims {
    /// The `user_id` claim as a typed id, if it is a UUID.
    pub fn user(&self) -> Option<UserId> {
        self.user_id.parse().ok()
    }
}

/// One HMAC-SHA256 signing key and its key id (`kid` header). The secret never
/// appears in `Debug` output.
#[derive(Clone)]
pub struct JwtKey {
    kid: String,
    secret: Vec<u8>,
}

impl JwtKey {
    /// A key with an id and a secret. Use at least 32 random bytes in production.
    pub fn new(kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            kid: kid.into(),
            secret: secret.into(),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The signing key plus older keys still accepted for verification (key rotation):
/// new tokens are signed with the current key; a token is verified with the key its
/// `kid` names, or with the current key when it carries no `kid`.
#[derive(Clone, Debug)]
pub struct JwtKeys {
    current: JwtKey,
    previous: Vec<JwtKey>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

fn bad_token(why: &str) -> Error {
    Error::invalid(format!("invalid token: {why}"))
}

impl JwtKeys {
    /// Keys with one current key and no previous ones.
    pub fn new(current: JwtKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds a previous key, still accepted for verification.
    pub fn with_previous(mut self, key: JwtKey) -> Self {
        self.previous.push(key);
        self
    }

    /// The id of the key new tokens are signed with.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    /// Signs claims as an HS256 JWT under the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
            kid: Some(self.current.kid.clone()),
        };
        // Serializing these plain structs cannot fail.
        let h = serde_json::to_vec(&header).unwrap_or_default();
        let c = serde_json::to_vec(claims).unwrap_or_default();
        let mut out = URL_SAFE_NO_PAD.encode(h);
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(c));
        let mut mac = self.current.mac();
        mac.update(out.as_bytes());
        let sig = mac.finalize().into_bytes();
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        out
    }

    /// Verifies a token: HS256 only, a known key, a valid signature (compared in
    /// constant time), issuer [`ISSUER`], the expected kind, and `now` before `exp`.
    /// Every failure is an [`Error::InvalidInput`] whose message says why (for logs;
    /// callers show one generic message).
    pub fn verify(&self, token: &str, expected: TokenKind, now: Timestamp) -> Result<Claims> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad_token("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_token("not three segments"));
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad_token("malformed header"))?;
        if header.alg != "HS256" {
            return Err(bad_token("algorithm is not HS256"));
        }
        let key = match header.kid.as_deref() {
            None => &self.current,
            Some(kid) => std::iter::once(&self.current)
                .chain(&self.previous)
                .find(|k| k.kid == kid)
                .ok_or_else(|| bad_token("unknown key id"))?,
        };
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad_token("malformed signature"))?;
        let mut mac = key.mac();
        mac.update(&token.as_bytes()[..h.len() + 1 + c.len()]);
        mac.verify_slice(&sig)
            .map_err(|_| bad_token("bad signature"))?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad_token("malformed claims"))?;
        if claims.iss != ISSUER {
            return Err(bad_token("wrong issuer"));
        }
        if claims.token_type != expected {
            return Err(bad_token("wrong token type"));
        }
        if now.timestamp() >= claims.exp {
            return Err(bad_token("expired"));
        }
        Ok(claims)
    }
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4).max(1)
}

/// Issues an access token for a user; returns the token and its claims.
pub fn issue_access_token(
    keys: &JwtKeys,
    user: UserId,
    handle: &str,
    now: Timestamp,
    ttl: Duration,
) -> (String, Claims) {
    let iat = now.timestamp();
    let claims = Claims {
        iss: ISSUER.into(),
        sub: user.to_string(),
        iat,
        exp: iat.saturating_add(ttl_secs(ttl)),
        jti: uuid::Uuid::new_v4().to_string(),
        token_type: TokenKind::Access,
        user_id: user.to_string(),
        handle: Some(handle.to_string()),
        node_id: None,
        node_slug: None,
    };
    (keys.sign(&claims), claims)
}

/// A freshly issued refresh token and what the server stores about it.
#[derive(Clone)]
pub struct IssuedRefreshToken {
    /// The token handed to the client (never stored).
    pub token: String,
    /// Its SHA-256 digest: the session's lookup key.
    pub hash: Vec<u8>,
    /// The key id it was signed under.
    pub kid: String,
    /// Its expiry.
    pub expires_at: Timestamp,
}

impl fmt::Debug for IssuedRefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedRefreshToken")
            .field("token", &"<redacted>")
            .field("kid", &self.kid)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Issues a refresh token for a user: a signed JWT of kind `refresh` with a random
/// `jti`, so two tokens are never equal.
pub fn issue_refresh_token(
    keys: &JwtKeys,
    user: UserId,
    now: Timestamp,
    ttl: Duration,
) -> IssuedRefreshToken {
    let iat = now.timestamp();
    let exp = iat.saturating_add(ttl_secs(ttl));
    let claims = Claims {
        iss: ISSUER.into(),
        sub: user.to_string(),
        iat,
        exp,
        jti: uuid::Uuid::new_v4().to_string(),
        token_type: TokenKind::Refresh,
        user_id: user.to_string(),
        handle: None,
        node_id: None,
        node_slug: None,
    };
    let token = keys.sign(&claims);
    IssuedRefreshToken {
        hash: hash_refresh_token(&token),
        kid: keys.current_kid().to_string(),
        expires_at: chrono::DateTime::from_timestamp(exp, 0).unwrap_or(now),
        token,
    }
}

/// The SHA-256 digest under which a refresh token's session is stored.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

// ---------------------------------------------------------------- bootstrap

/// Ensures the first admin account exists: creates user `handle` with `password`
/// (argon2id, default parameters) unless a user with that handle already exists, in
/// which case it is returned unchanged (its password is not touched). Safe to call on
/// every start, and from several processes at once.
pub async fn bootstrap_admin(store: &dyn Store, handle: &str, password: &str) -> Result<User> {
    bootstrap_admin_with(store, handle, password, &PasswordParams::default()).await
}

/// [`bootstrap_admin`] with explicit hashing parameters.
pub async fn bootstrap_admin_with(
    store: &dyn Store,
    handle: &str,
    password: &str,
    params: &PasswordParams,
) -> Result<User> {
    match store.get_user_by_handle(handle).await {
        Ok(u) => return Ok(u),
        Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    if password.is_empty() {
        return Err(Error::invalid(
            "the bootstrap admin password must not be empty",
        ));
    }
    let hash = hash_password(password, params)?;
    let user = match store
        .create_user(NewUser {
            handle: handle.into(),
            email: None,
            password: Some(hash),
        })
        .await
    {
        Ok(u) => u,
        // Someone else created it between our look-up and our insert.
        Err(Error::Conflict(_)) => return store.get_user_by_handle(handle).await,
        Err(e) => return Err(e),
    };
    store
        .record_audit(AuditRecord::Auth(AuthAudit {
            id: AuditId::new(),
            event_type: "user_created".into(),
            user_id: Some(user.id),
            subject_handle: Some(user.handle.clone()),
            success: true,
            ip_address: None,
            user_agent: None,
            reason: Some("bootstrap admin".into()),
            created_at: chrono::Utc::now(),
        }))
        .await?;
    Ok(user)
}

// ---------------------------------------------------------------- node tokens

/// What a verified node JWT says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedNode {
    /// The node's id (`sub` = `node_id`).
    pub node_id: crate::NodeId,
    /// The node's slug.
    pub node_slug: String,
    /// All claims.
    pub claims: Claims,
}

/// Issues a node JWT (node protocol §2.4): `iss` `cynodeai`, `sub` = `node_id` = the
/// node's id, `iat`, `exp` = `iat` + `ttl`, random `jti`, `token_type` `node`,
/// `node_slug`. Returns the token and its expiry.
pub fn issue_node_token(
    keys: &JwtKeys,
    node_id: crate::NodeId,
    node_slug: &str,
    now: Timestamp,
    ttl: Duration,
) -> (String, Timestamp) {
    let iat = now.timestamp();
    let exp = iat.saturating_add(ttl_secs(ttl));
    let claims = Claims {
        iss: ISSUER.into(),
        sub: node_id.to_string(),
        iat,
        exp,
        jti: uuid::Uuid::new_v4().to_string(),
        token_type: TokenKind::Node,
        user_id: String::new(),
        handle: None,
        node_id: Some(node_id.to_string()),
        node_slug: Some(node_slug.to_string()),
    };
    (
        keys.sign(&claims),
        chrono::DateTime::from_timestamp(exp, 0).unwrap_or(now),
    )
}

/// Verifies a node JWT: everything [`JwtKeys::verify`] checks with
/// [`TokenKind::Node`], plus a UUID `node_id` equal to `sub` and a non-empty
/// `node_slug`. User tokens are refused (wrong token type). Failures are
/// [`Error::InvalidInput`] with a reason for logs.
pub fn verify_node_token(keys: &JwtKeys, token: &str, now: Timestamp) -> Result<AuthenticatedNode> {
    let claims = keys.verify(token, TokenKind::Node, now)?;
    let node_id: crate::NodeId = claims
        .node_id
        .as_deref()
        .filter(|id| *id == claims.sub)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| bad_token("node_id missing or not the subject"))?;
    let node_slug = claims
        .node_slug
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad_token("node_slug missing"))?;
    Ok(AuthenticatedNode {
        node_id,
        node_slug,
        claims,
    })
}

#[cfg(test)]
mod node_token_tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(JwtKey::new("k1", b"node-secret".to_vec()))
    }

    #[test]
    fn node_token_carries_exactly_the_spec_claims() {
        let now = chrono::Utc::now();
        let id = crate::NodeId::new();
        let (tok, exp) = issue_node_token(&keys(), id, "node-01", now, Duration::from_secs(60));
        assert_eq!(exp.timestamp(), now.timestamp() + 60);
        let payload = tok.split('.').nth(1).expect("claims");
        let v: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        let mut names: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "exp",
                "iat",
                "iss",
                "jti",
                "node_id",
                "node_slug",
                "sub",
                "token_type"
            ]
        );
        assert_eq!(v["token_type"], "node");
        assert_eq!(v["sub"], id.to_string());
        let who = verify_node_token(&keys(), &tok, now).expect("valid");
        assert_eq!((who.node_id, who.node_slug.as_str()), (id, "node-01"));
    }

    #[test]
    fn expired_forged_and_user_tokens_are_refused() {
        let now = chrono::Utc::now();
        let id = crate::NodeId::new();
        let (tok, _) = issue_node_token(&keys(), id, "n", now, Duration::from_secs(10));
        let later = now + chrono::Duration::seconds(10);
        assert!(verify_node_token(&keys(), &tok, later).is_err(), "expired");
        let other = JwtKeys::new(JwtKey::new("k1", b"other".to_vec()));
        assert!(verify_node_token(&other, &tok, now).is_err(), "forged");
        let (user_tok, _) = issue_access_token(
            &keys(),
            UserId::new(),
            "alice",
            now,
            Duration::from_secs(60),
        );
        assert!(verify_node_token(&keys(), &user_tok, now).is_err(), "user");
        // A node token whose node_id differs from sub is refused.
        let mut c = keys().verify(&tok, TokenKind::Node, now).expect("claims");
        c.node_id = Some(crate::NodeId::new().to_string());
        assert!(verify_node_token(&keys(), &keys().sign(&c), now).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditStore, UserStore};

    fn keys() -> JwtKeys {
        JwtKeys::new(JwtKey::new("k2", b"secret-two".to_vec()))
            .with_previous(JwtKey::new("k1", b"secret-one".to_vec()))
    }

    fn now() -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    #[test]
    fn default_hash_has_the_reference_encoding_and_verifies() {
        let h = hash_password("admin123", &PasswordParams::default()).expect("hash");
        let s = String::from_utf8(h.hash.clone()).expect("utf8");
        assert!(s.starts_with("$argon2id$v=19$m=65536,t=3,p=2$"), "{s}");
        let parts: Vec<&str> = s.split('$').collect();
        // salt: 16 bytes -> 22 chars; key: 32 bytes -> 43 chars, unpadded.
        assert_eq!(parts[4].len(), 22);
        assert_eq!(parts[5].len(), 43);
        assert_eq!(h.alg, "argon2id");
        assert!(verify_password("admin123", &h).expect("verify"));
        assert!(!verify_password("admin124", &h).expect("verify"));
    }

    #[test]
    fn same_password_gets_different_salts() {
        let p = PasswordParams::insecure_fast_for_tests();
        let a = hash_password("pw", &p).expect("a");
        let b = hash_password("pw", &p).expect("b");
        assert_ne!(a.hash, b.hash);
        assert!(verify_password("pw", &a).expect("a") && verify_password("pw", &b).expect("b"));
    }

    #[test]
    fn a_hash_from_another_implementation_verifies() {
        // Made by argon2-cffi (the C reference implementation) with the reference
        // encoding: argon2id, v=19, 16-byte salt, 32-byte key, unpadded base64.
        let foreign = PasswordHash {
            hash: b"$argon2id$v=19$m=64,t=3,p=2$BoXTgCIh1nxGJC/hERGN2Q$r4QKX+q8u3gp49Y1qnJZVf5DcE+bu1exBYhONlEHIRM"
                .to_vec(),
            alg: "argon2id".into(),
        };
        assert!(verify_password("correct horse", &foreign).expect("verify"));
        assert!(!verify_password("correct horse!", &foreign).expect("verify"));
    }

    #[test]
    fn unreadable_or_foreign_hashes_are_internal_errors() {
        let bad = PasswordHash {
            hash: b"not a phc string".to_vec(),
            alg: "argon2id".into(),
        };
        assert_eq!(
            verify_password("x", &bad).expect_err("bad").kind(),
            "internal"
        );
        let bcrypt = PasswordHash {
            hash: b"$2b$10$abc".to_vec(),
            alg: "bcrypt".into(),
        };
        assert_eq!(
            verify_password("x", &bcrypt).expect_err("bcrypt").kind(),
            "internal"
        );
        let argon2i = PasswordHash {
            hash: b"$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A"
                .to_vec(),
            alg: "argon2id".into(),
        };
        assert_eq!(
            verify_password("x", &argon2i).expect_err("argon2i").kind(),
            "internal"
        );
    }

    #[test]
    fn invalid_params_are_invalid_input() {
        let p = PasswordParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0,
        };
        assert_eq!(
            hash_password("x", &p).expect_err("params").kind(),
            "invalid_input"
        );
    }

    #[test]
    fn access_token_round_trip_has_the_contract_claims() {
        let k = keys();
        let u = UserId::new();
        let (t, c) = issue_access_token(&k, u, "alice", now(), Duration::from_secs(900));
        assert_eq!(c.exp - c.iat, 900);
        let got = k.verify(&t, TokenKind::Access, now()).expect("valid");
        assert_eq!(got, c);
        assert_eq!(got.user(), Some(u));
        // The raw payload has exactly the contract's claim names.
        let payload = t.split('.').nth(1).expect("payload");
        let v: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("obj")
            .keys()
            .map(|s| s.as_str())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "exp",
                "handle",
                "iat",
                "iss",
                "jti",
                "sub",
                "token_type",
                "user_id"
            ]
        );
        assert_eq!(v["token_type"], "access");
        let header = t.split('.').next().expect("header");
        let h: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
        assert_eq!(h, serde_json::json!({"alg":"HS256","typ":"JWT","kid":"k2"}));
    }

    #[test]
    fn tokens_expire_at_exp() {
        let k = keys();
        let (t, _) = issue_access_token(&k, UserId::new(), "a", now(), Duration::from_secs(60));
        let just_before = now() + chrono::Duration::seconds(59);
        let at_exp = now() + chrono::Duration::seconds(60);
        assert!(k.verify(&t, TokenKind::Access, just_before).is_ok());
        let e = k
            .verify(&t, TokenKind::Access, at_exp)
            .expect_err("expired");
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn wrong_kind_key_signature_or_shape_is_rejected() {
        let k = keys();
        let r = issue_refresh_token(&k, UserId::new(), now(), Duration::from_secs(60));
        assert!(k.verify(&r.token, TokenKind::Refresh, now()).is_ok());
        assert!(k.verify(&r.token, TokenKind::Access, now()).is_err());

        let other = JwtKeys::new(JwtKey::new("k2", b"another secret".to_vec()));
        assert!(other.verify(&r.token, TokenKind::Refresh, now()).is_err());

        // A token signed with the previous key still verifies; an unknown kid does not.
        let old = JwtKeys::new(JwtKey::new("k1", b"secret-one".to_vec()));
        let (t_old, _) =
            issue_access_token(&old, UserId::new(), "a", now(), Duration::from_secs(60));
        assert!(k.verify(&t_old, TokenKind::Access, now()).is_ok());
        let stranger = JwtKeys::new(JwtKey::new("k9", b"secret-one".to_vec()));
        let (t9, _) = issue_access_token(
            &stranger,
            UserId::new(),
            "a",
            now(),
            Duration::from_secs(60),
        );
        assert!(k.verify(&t9, TokenKind::Access, now()).is_err());

        // Tampered payload.
        let (t, _) = issue_access_token(&k, UserId::new(), "a", now(), Duration::from_secs(60));
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let forged = serde_json::json!({"iss":"cynodeai","sub":"x","iat":0,"exp":i64::MAX,
            "jti":"j","token_type":"access","user_id":"x","handle":"admin"});
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        assert!(
            k.verify(&parts.join("."), TokenKind::Access, now())
                .is_err()
        );

        // alg=none and garbage.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let t_none = format!("{none_header}.{}.", parts[1]);
        assert!(k.verify(&t_none, TokenKind::Access, now()).is_err());
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "...",
            "€.€.€",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(
                k.verify(junk, TokenKind::Access, now()).is_err(),
                "{junk:.20}"
            );
        }
    }

    #[test]
    fn refresh_tokens_are_unique_and_hashed() {
        let k = keys();
        let u = UserId::new();
        let a = issue_refresh_token(&k, u, now(), Duration::from_secs(3600));
        let b = issue_refresh_token(&k, u, now(), Duration::from_secs(3600));
        assert_ne!(a.token, b.token);
        assert_ne!(a.hash, b.hash);
        assert_eq!(a.hash, hash_refresh_token(&a.token));
        assert_eq!(a.hash.len(), 32);
        assert_eq!(a.kid, "k2");
        assert_eq!(a.expires_at, now() + chrono::Duration::seconds(3600));
        assert!(!format!("{a:?}").contains(&a.token));
        assert!(!format!("{k:?}").contains("secret-two"));
    }

    #[tokio::test]
    async fn bootstrap_admin_is_idempotent_and_keeps_the_password() {
        let store = crate::store::MemoryStore::new();
        let p = PasswordParams::insecure_fast_for_tests();
        let a = bootstrap_admin_with(&store, "admin", "admin123", &p)
            .await
            .expect("first");
        let b = bootstrap_admin_with(&store, "admin", "other", &p)
            .await
            .expect("second");
        assert_eq!(a.id, b.id);
        let stored = store.get_password(a.id).await.expect("get").expect("set");
        assert!(verify_password("admin123", &stored).expect("verify"));
        assert!(!verify_password("other", &stored).expect("verify"));
        let audit = store
            .list_audit(&crate::model::AuditFilter {
                kind: crate::model::AuditKind::Auth,
                user_id: Some(a.id),
                since: None,
                limit: 10,
            })
            .await
            .expect("audit");
        assert_eq!(audit.len(), 1, "one user_created event: {audit:?}");
        let e = bootstrap_admin_with(&store, "root", "", &p)
            .await
            .expect_err("empty");
        assert_eq!(e.kind(), "invalid_input");
    }
}
