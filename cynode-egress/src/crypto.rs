//! Secrets in memory and provider credentials at rest.
//!
//! - [`Secret`]: a string that is zeroized when dropped and prints as `[REDACTED]` in
//!   `Debug` and `Display`, so a key cannot slip into a log line by formatting.
//! - [`CredentialCipher`]: authenticated encryption (XChaCha20-Poly1305, 256-bit keys)
//!   of credential secrets before they reach storage. Each ciphertext names the
//!   key-encryption key that sealed it (`kid`), so the master key can be rotated: keep
//!   the old key configured for decryption, make a new one active, and re-seal rows with
//!   [`CredentialCipher::reseal`]. The ciphertext is bound to its row (owner, provider,
//!   name) as associated data, so a ciphertext copied into another row does not decrypt.
//!
//! The master keys come from configuration (env or a secrets manager, read by the
//! binary), never from the database.

use std::{collections::BTreeMap, fmt};

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload, rand_core::RngCore},
};
use serde::{Deserialize, Deserializer};
use zeroize::{Zeroize, Zeroizing};

/// A secret string (API key, token, master key). Zeroized on drop; `Debug` and
/// `Display` print `[REDACTED]`; never serialized. Read it with [`Secret::expose`] at
/// the one place that must send it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The plaintext. Call this only where the value is put on the wire.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut s = String::deserialize(d)?;
        let secret = Secret::new(s.clone());
        s.zeroize();
        Ok(secret)
    }
}

/// Why a credential could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A configured key is not 32 bytes of standard base64, or a kid is empty/duplicated.
    #[error("invalid key configuration: {0}")]
    BadKey(String),
    /// The ciphertext names a key id this process does not hold.
    #[error("unknown key id '{0}'")]
    UnknownKid(String),
    /// The ciphertext is not in this module's envelope format.
    #[error("malformed credential ciphertext")]
    Malformed,
    /// Authentication failed: wrong key, tampered bytes, or a ciphertext from another row.
    #[error("credential ciphertext does not authenticate")]
    Decrypt,
}

/// One key-encryption key as it appears in configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id stored beside each ciphertext (`credential_kid`), e.g. `k2026-01`.
    pub kid: String,
    /// 32 random bytes, standard base64 (see [`CredentialCipher::generate_key`]).
    pub key: Secret,
}

/// Master keys for credential encryption.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoConfig {
    /// The kid new ciphertexts are sealed with; must be one of `keys`.
    pub active_kid: String,
    /// Every key that may still be needed to open stored ciphertexts.
    pub keys: Vec<KeyConfig>,
}

/// What a ciphertext is bound to: its row's identity. Sealing and opening must use the
/// same values.
#[derive(Clone, Copy, Debug)]
pub struct CredentialBinding<'a> {
    /// `user` or `group`.
    pub owner_type: &'a str,
    /// Owner id.
    pub owner_id: uuid::Uuid,
    /// Lower-case provider id.
    pub provider: &'a str,
    /// Credential name.
    pub credential_name: &'a str,
}

impl CredentialBinding<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        aad.extend_from_slice(b"cynode-credential/v1\0");
        for part in [
            self.owner_type,
            &self.owner_id.to_string(),
            self.provider,
            self.credential_name,
        ] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Seals and opens credential secrets with the configured master keys.
pub struct CredentialCipher {
    active: String,
    keys: BTreeMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for CredentialCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCipher")
            .field("active_kid", &self.active)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CredentialCipher {
    /// Builds a cipher from configuration.
    pub fn from_config(config: &CryptoConfig) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        for k in &config.keys {
            if k.kid.trim().is_empty() {
                return Err(CryptoError::BadKey("empty kid".into()));
            }
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(k.key.expose().trim())
                    .map_err(|_| CryptoError::BadKey(format!("key '{}' is not base64", k.kid)))?,
            );
            if bytes.len() != 32 {
                return Err(CryptoError::BadKey(format!(
                    "key '{}' must be 32 bytes",
                    k.kid
                )));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| CryptoError::BadKey(format!("key '{}' must be 32 bytes", k.kid)))?;
            if keys.insert(k.kid.clone(), cipher).is_some() {
                return Err(CryptoError::BadKey(format!("duplicate kid '{}'", k.kid)));
            }
        }
        if !keys.contains_key(&config.active_kid) {
            return Err(CryptoError::BadKey(format!(
                "active kid '{}' is not among the keys",
                config.active_kid
            )));
        }
        Ok(CredentialCipher {
            active: config.active_kid.clone(),
            keys,
        })
    }

    /// A cipher with a single key.
    pub fn single(kid: impl Into<String>, key: &[u8; 32]) -> Self {
        let kid = kid.into();
        let mut keys = BTreeMap::new();
        keys.insert(kid.clone(), XChaCha20Poly1305::new(key.into()));
        CredentialCipher { active: kid, keys }
    }

    /// A fresh random 32-byte key, base64-encoded, for configuration.
    pub fn generate_key() -> Secret {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut_slice());
        Secret::new(STANDARD.encode(key.as_slice()))
    }

    /// The kid new ciphertexts are sealed with.
    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// Encrypts `secret` for the row `binding` with the active key; returns the
    /// ciphertext and the kid to store beside it.
    pub fn seal(
        &self,
        secret: &Secret,
        binding: &CredentialBinding<'_>,
    ) -> Result<(Vec<u8>, String), CryptoError> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| CryptoError::UnknownKid(self.active.clone()))?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = binding.aad();
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok((out, self.active.clone()))
    }

    /// Decrypts a stored ciphertext. `kid` is the stored key id (`None` is accepted only
    /// when exactly one key is configured, for rows written without one).
    pub fn open(
        &self,
        ciphertext: &[u8],
        kid: Option<&str>,
        binding: &CredentialBinding<'_>,
    ) -> Result<Secret, CryptoError> {
        let cipher = match kid {
            Some(kid) => self
                .keys
                .get(kid)
                .ok_or_else(|| CryptoError::UnknownKid(kid.to_string()))?,
            None if self.keys.len() == 1 => {
                self.keys.values().next().ok_or(CryptoError::Malformed)?
            }
            None => return Err(CryptoError::UnknownKid(String::new())),
        };
        if ciphertext.len() < 1 + NONCE_LEN + TAG_LEN || ciphertext[0] != VERSION {
            return Err(CryptoError::Malformed);
        }
        let nonce_bytes: [u8; NONCE_LEN] = ciphertext[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        let nonce = XNonce::from(nonce_bytes);
        let aad = binding.aad();
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &ciphertext[1 + NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Decrypt)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| CryptoError::Malformed)?;
        Ok(Secret::new(text))
    }

    /// Whether a row sealed with `kid` should be re-sealed with the active key.
    pub fn needs_reseal(&self, kid: Option<&str>) -> bool {
        kid != Some(self.active.as_str())
    }

    /// Opens with the stored key and seals again with the active one (master-key
    /// rotation). Returns the new ciphertext and kid.
    pub fn reseal(
        &self,
        ciphertext: &[u8],
        kid: Option<&str>,
        binding: &CredentialBinding<'_>,
    ) -> Result<(Vec<u8>, String), CryptoError> {
        let secret = self.open(ciphertext, kid, binding)?;
        self.seal(&secret, binding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str) -> CredentialBinding<'_> {
        CredentialBinding {
            owner_type: "user",
            owner_id: uuid::Uuid::nil(),
            provider: "openai",
            credential_name: name,
        }
    }

    #[test]
    fn seal_open_roundtrip_and_binding() {
        let c = CredentialCipher::single("k1", &[7u8; 32]);
        let secret = Secret::new("sk-test-0123456789abcdefghij");
        let (ct, kid) = c.seal(&secret, &binding("default")).unwrap();
        assert_eq!(kid, "k1");
        assert!(
            !ct.windows(secret.expose().len())
                .any(|w| w == secret.expose().as_bytes())
        );
        assert_eq!(
            c.open(&ct, Some("k1"), &binding("default")).unwrap(),
            secret
        );
        // Bound to the row: another name does not open.
        assert_eq!(
            c.open(&ct, Some("k1"), &binding("other")),
            Err(CryptoError::Decrypt)
        );
        // Tampering is detected.
        let mut bad = ct.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            c.open(&bad, Some("k1"), &binding("default")),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            c.open(&ct[..10], Some("k1"), &binding("default")),
            Err(CryptoError::Malformed)
        );
        assert_eq!(
            c.open(&ct, Some("k9"), &binding("default")),
            Err(CryptoError::UnknownKid("k9".into()))
        );
        // Two seals of the same secret differ (random nonce).
        let (ct2, _) = c.seal(&secret, &binding("default")).unwrap();
        assert_ne!(ct, ct2);
    }

    #[test]
    fn rotation_reseals_with_the_active_key() {
        let k1 = CredentialCipher::generate_key();
        let k2 = CredentialCipher::generate_key();
        let old = CredentialCipher::from_config(&CryptoConfig {
            active_kid: "k1".into(),
            keys: vec![KeyConfig {
                kid: "k1".into(),
                key: k1.clone(),
            }],
        })
        .unwrap();
        let secret = Secret::new("sk-rotate-me");
        let (ct, kid) = old.seal(&secret, &binding("a")).unwrap();
        let new = CredentialCipher::from_config(&CryptoConfig {
            active_kid: "k2".into(),
            keys: vec![
                KeyConfig {
                    kid: "k1".into(),
                    key: k1,
                },
                KeyConfig {
                    kid: "k2".into(),
                    key: k2,
                },
            ],
        })
        .unwrap();
        assert!(new.needs_reseal(Some(&kid)));
        let (ct2, kid2) = new.reseal(&ct, Some(&kid), &binding("a")).unwrap();
        assert_eq!(kid2, "k2");
        assert!(!new.needs_reseal(Some(&kid2)));
        assert_eq!(new.open(&ct2, Some("k2"), &binding("a")).unwrap(), secret);
        // The old process cannot open the re-sealed row.
        assert_eq!(
            old.open(&ct2, Some("k2"), &binding("a")),
            Err(CryptoError::UnknownKid("k2".into()))
        );
    }

    #[test]
    fn bad_key_configs_are_refused() {
        let cfg = |active: &str, keys: Vec<(&str, &str)>| CryptoConfig {
            active_kid: active.into(),
            keys: keys
                .into_iter()
                .map(|(k, v)| KeyConfig {
                    kid: k.into(),
                    key: Secret::new(v),
                })
                .collect(),
        };
        assert!(matches!(
            CredentialCipher::from_config(&cfg("k", vec![("k", "c2hvcnQ=")])),
            Err(CryptoError::BadKey(_))
        ));
        assert!(matches!(
            CredentialCipher::from_config(&cfg("k", vec![("k", "!!")])),
            Err(CryptoError::BadKey(_))
        ));
        let good = CredentialCipher::generate_key();
        assert!(matches!(
            CredentialCipher::from_config(&cfg("x", vec![("k", good.expose())])),
            Err(CryptoError::BadKey(_))
        ));
        assert!(CredentialCipher::from_config(&cfg("k", vec![("k", good.expose())])).is_ok());
    }

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert!(!format!("{s:?}").contains("very"));
        let parsed: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(parsed.expose(), "abc");
    }
}
