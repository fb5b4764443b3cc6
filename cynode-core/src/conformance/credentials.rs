//! Cases for [`CredentialStore`](crate::store::CredentialStore): encrypted API
//! credentials of users and groups.

use super::support::*;
use crate::CredentialId;
use crate::model::*;
use crate::store::Store;

fn cred(owner: uuid::Uuid, provider: &str, name: &str) -> NewApiCredential {
    NewApiCredential {
        owner_type: "user".into(),
        owner_id: owner,
        provider: provider.into(),
        credential_type: "api_key".into(),
        credential_name: name.into(),
        ciphertext: vec![1, 2, 3],
        kid: None,
        expires_at: None,
    }
}

/// Credentials round-trip every field, with the ciphertext byte for byte and the
/// provider lower-cased; an owner's credentials are listed by provider then name;
/// they can be disabled, enabled and deleted; unknown ids are `not_found`.
pub async fn credentials_round_trip(s: &dyn Store) {
    let u = user(s, "u").await;
    let owner = u.id.as_uuid();
    let secret: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    let exp = at("2031-02-03T04:05:06.070809Z");
    let a = ok(
        s.create_credential(NewApiCredential {
            owner_type: "user".into(),
            owner_id: owner,
            provider: "OpenAI".into(),
            credential_type: "api_key".into(),
            credential_name: "Work key ✓".into(),
            ciphertext: secret.clone(),
            kid: Some("kek-2030".into()),
            expires_at: Some(exp),
        })
        .await,
        "create_credential",
    );
    assert_eq!((a.owner_type.as_str(), a.owner_id), ("user", owner));
    assert_eq!(a.provider, "openai", "the provider is stored lower-case");
    assert_eq!(
        (a.credential_type.as_str(), a.credential_name.as_str()),
        ("api_key", "Work key ✓")
    );
    assert_eq!(
        a.ciphertext, secret,
        "ciphertext must round-trip byte for byte"
    );
    assert_eq!(
        (a.kid.as_deref(), a.expires_at),
        (Some("kek-2030"), Some(exp))
    );
    assert!(a.is_active);
    assert_eq!(ok(s.get_credential(a.id).await, "get_credential"), a);

    let b = ok(
        s.create_credential(cred(owner, "anthropic", "zeta")).await,
        "create_credential",
    );
    assert_eq!((&b.kid, b.expires_at), (&None, None));
    let c = ok(
        s.create_credential(cred(owner, "anthropic", "Alpha")).await,
        "create_credential",
    );
    let group = ok(
        s.create_credential(NewApiCredential {
            owner_type: "group".into(),
            ..cred(owner, "openai", "team")
        })
        .await,
        "create_credential(group with the same uuid)",
    );
    let listed = ok(s.list_credentials("user", owner).await, "list_credentials");
    assert_eq!(
        listed,
        vec![c.clone(), b.clone(), a.clone()],
        "ordered by provider, then name (byte order)"
    );
    assert_eq!(
        ok(
            s.list_credentials("group", owner).await,
            "list_credentials(group)"
        ),
        vec![group]
    );
    assert!(
        ok(
            s.list_credentials("user", uuid::Uuid::new_v4()).await,
            "list_credentials(nobody)"
        )
        .is_empty()
    );

    let off = ok(
        s.set_credential_active(a.id, false).await,
        "set_credential_active(false)",
    );
    assert!(!off.is_active);
    assert_eq!(
        (off.ciphertext.as_slice(), off.created_at),
        (secret.as_slice(), a.created_at)
    );
    assert!(off.updated_at >= a.updated_at);
    assert_eq!(ok(s.get_credential(a.id).await, "get_credential"), off);
    let on = ok(
        s.set_credential_active(a.id, true).await,
        "set_credential_active(true)",
    );
    assert!(on.is_active);

    ok(s.delete_credential(b.id).await, "delete_credential");
    fails(
        s.get_credential(b.id).await,
        NOT_FOUND,
        "get_credential after delete",
    );
    fails(
        s.delete_credential(b.id).await,
        NOT_FOUND,
        "delete_credential twice",
    );
    assert_eq!(
        ok(s.list_credentials("user", owner).await, "list_credentials").len(),
        2
    );
    let unknown = CredentialId::new();
    fails(
        s.get_credential(unknown).await,
        NOT_FOUND,
        "get_credential(unknown)",
    );
    fails(
        s.set_credential_active(unknown, true).await,
        NOT_FOUND,
        "set_credential_active(unknown)",
    );
    fails(
        s.delete_credential(unknown).await,
        NOT_FOUND,
        "delete_credential(unknown)",
    );
}

/// The same owner, provider (in any case) and name twice is a conflict; blank
/// providers and names and empty ciphertexts are `invalid_input`.
pub async fn credentials_conflict_and_invalid(s: &dyn Store) {
    let owner = uuid::Uuid::new_v4();
    ok(
        s.create_credential(cred(owner, "openai", "main")).await,
        "create_credential",
    );
    fails(
        s.create_credential(cred(owner, "openai", "main")).await,
        CONFLICT,
        "create_credential(duplicate)",
    );
    fails(
        s.create_credential(cred(owner, "OPENAI", "main")).await,
        CONFLICT,
        "create_credential(duplicate, provider in upper case)",
    );
    ok(
        s.create_credential(cred(owner, "openai", "Main")).await,
        "names are case-sensitive",
    );
    ok(
        s.create_credential(cred(owner, "anthropic", "main")).await,
        "same name, other provider",
    );
    ok(
        s.create_credential(cred(uuid::Uuid::new_v4(), "openai", "main"))
            .await,
        "same name, other owner",
    );
    fails(
        s.create_credential(cred(owner, "", "x")).await,
        INVALID,
        "create_credential with a blank provider",
    );
    fails(
        s.create_credential(cred(owner, " ", "x")).await,
        INVALID,
        "create_credential with a blank provider",
    );
    fails(
        s.create_credential(cred(owner, "openai", "")).await,
        INVALID,
        "create_credential with a blank name",
    );
    fails(
        s.create_credential(NewApiCredential {
            ciphertext: vec![],
            ..cred(owner, "openai", "empty")
        })
        .await,
        INVALID,
        "create_credential with an empty ciphertext",
    );
    assert_eq!(
        ok(s.list_credentials("user", owner).await, "list_credentials").len(),
        3,
        "a refused credential was stored"
    );
}

/// Usable = active and unexpired at the given `now` (expiry is exclusive), for the
/// provider in any case, newest first; disabled, expired, other providers' and other
/// owners' credentials never appear.
pub async fn credentials_usable(s: &dyn Store) {
    let owner = uuid::Uuid::new_v4();
    let forever = ok(
        s.create_credential(cred(owner, "openai", "forever")).await,
        "create_credential",
    );
    tick().await;
    let expiring = ok(
        s.create_credential(NewApiCredential {
            expires_at: Some(at("2030-01-01T00:00:00Z")),
            ..cred(owner, "OpenAI", "expiring")
        })
        .await,
        "create_credential",
    );
    tick().await;
    let disabled = ok(
        s.create_credential(cred(owner, "openai", "disabled")).await,
        "create_credential",
    );
    ok(
        s.set_credential_active(disabled.id, false).await,
        "set_credential_active(false)",
    );
    ok(
        s.create_credential(cred(owner, "anthropic", "other-provider"))
            .await,
        "create_credential",
    );
    ok(
        s.create_credential(cred(uuid::Uuid::new_v4(), "openai", "other-owner"))
            .await,
        "create_credential",
    );
    ok(
        s.create_credential(NewApiCredential {
            owner_type: "group".into(),
            ..cred(owner, "openai", "group")
        })
        .await,
        "create_credential(group)",
    );

    let ids = |v: Vec<ApiCredential>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let before = at("2029-12-31T23:59:59.999999Z");
    assert_eq!(
        ids(ok(
            s.usable_credentials("user", owner, "openai", before).await,
            "usable_credentials"
        )),
        vec![expiring.id, forever.id],
        "active and unexpired, newest first"
    );
    assert_eq!(
        ids(ok(
            s.usable_credentials("user", owner, "OpenAI", before).await,
            "usable_credentials(OpenAI)"
        )),
        vec![expiring.id, forever.id],
        "the provider is matched case-insensitively"
    );
    assert_eq!(
        ids(ok(
            s.usable_credentials("user", owner, "openai", at("2030-01-01T00:00:00Z"))
                .await,
            "usable_credentials"
        )),
        vec![forever.id],
        "a credential is expired at exactly expires_at"
    );
    // Only the `now` argument counts, not the wall clock.
    assert_eq!(
        ids(ok(
            s.usable_credentials("user", owner, "openai", at("1999-01-01T00:00:00Z"))
                .await,
            "usable_credentials"
        )),
        vec![expiring.id, forever.id]
    );
    ok(
        s.set_credential_active(disabled.id, true).await,
        "set_credential_active(true)",
    );
    assert_eq!(
        ids(ok(
            s.usable_credentials("user", owner, "openai", before).await,
            "usable_credentials"
        )),
        vec![disabled.id, expiring.id, forever.id],
        "re-enabled credentials are usable again"
    );
    assert!(
        ok(
            s.usable_credentials("user", owner, "mistral", before).await,
            "usable_credentials(mistral)"
        )
        .is_empty()
    );
    assert!(
        ok(
            s.usable_credentials("user", uuid::Uuid::new_v4(), "openai", before)
                .await,
            "usable_credentials(nobody)"
        )
        .is_empty()
    );
    let usable = ok(
        s.usable_credentials("user", owner, "openai", before).await,
        "usable_credentials",
    );
    for c in &usable {
        assert!(
            c.is_usable(before),
            "usable_credentials returned an unusable credential: {c:?}"
        );
        assert_eq!(c, &ok(s.get_credential(c.id).await, "get_credential"));
    }
}
