//! Cases for [`UserStore`](crate::store::UserStore) and [`StoreAdmin`](crate::store::StoreAdmin):
//! users, passwords, projects and refresh sessions.

use super::support::*;
use crate::model::*;
use crate::store::Store;
use crate::{ProjectId, SessionId, UserId};

/// `ping` answers and `backend` is a short lower-case name.
pub async fn admin_ping_and_backend_name(s: &dyn Store) {
    ok(s.ping().await, "ping");
    let name = s.backend();
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "backend() must be a short lower-case name, got {name:?}"
    );
}

/// Every field of a user survives the round trip; lookups by id and handle agree;
/// passwords are stored, replaced and absent when never set; every user has its default
/// project; users can be disabled and enabled; users are listed by handle.
pub async fn users_create_round_trip(s: &dyn Store) {
    let pw = PasswordHash {
        hash: b"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_vec(),
        alg: "argon2id".into(),
    };
    let alice = ok(
        s.create_user(NewUser {
            handle: "alice".into(),
            email: Some("alice@example.com".into()),
            password: Some(pw.clone()),
        })
        .await,
        "create_user(alice)",
    );
    assert_eq!(alice.handle, "alice");
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    assert!(alice.is_active, "a new user is active");
    assert_eq!(alice.external_source, None);
    assert_eq!(alice.external_id, None);
    assert!(
        alice.updated_at >= alice.created_at,
        "updated_at precedes created_at: {alice:?}"
    );

    let bob = ok(
        s.create_user(NewUser {
            handle: "Bob.the-builder_2".into(),
            email: None,
            password: None,
        })
        .await,
        "create_user(Bob.the-builder_2)",
    );
    assert_eq!(bob.email, None);
    assert_ne!(alice.id, bob.id);

    assert_eq!(
        ok(s.get_user(alice.id).await, "get_user(alice)"),
        alice,
        "get_user round trip"
    );
    assert_eq!(
        ok(s.get_user(bob.id).await, "get_user(bob)"),
        bob,
        "get_user round trip"
    );
    assert_eq!(
        ok(s.get_user_by_handle("alice").await, "get_user_by_handle"),
        alice
    );
    assert_eq!(
        ok(
            s.get_user_by_handle("Bob.the-builder_2").await,
            "get_user_by_handle"
        ),
        bob
    );
    fails(
        s.get_user_by_handle("ALICE").await,
        NOT_FOUND,
        "get_user_by_handle is an exact match",
    );

    // Ordered by handle, byte-wise: upper case sorts before lower case.
    let handles: Vec<String> = ok(s.list_users().await, "list_users")
        .into_iter()
        .map(|u| u.handle)
        .collect();
    assert_eq!(
        handles,
        ["Bob.the-builder_2", "alice"],
        "list_users must order by handle (byte order)"
    );

    assert_eq!(
        ok(s.get_password(alice.id).await, "get_password(alice)"),
        Some(pw)
    );
    assert_eq!(
        ok(s.get_password(bob.id).await, "get_password(bob)"),
        None,
        "no password set yet"
    );
    let bcrypt = PasswordHash {
        hash: b"$2b$12$abcdefghijklmnopqrstuu1234567890123456789012345678901".to_vec(),
        alg: "bcrypt".into(),
    };
    ok(
        s.set_password(bob.id, bcrypt.clone()).await,
        "set_password(bob)",
    );
    assert_eq!(
        ok(s.get_password(bob.id).await, "get_password(bob)"),
        Some(bcrypt.clone())
    );
    let replaced = PasswordHash {
        hash: vec![0, 1, 2, 254, 255],
        alg: "argon2id".into(),
    };
    ok(
        s.set_password(alice.id, replaced.clone()).await,
        "set_password(alice) replaces",
    );
    assert_eq!(
        ok(s.get_password(alice.id).await, "get_password(alice)"),
        Some(replaced)
    );
    assert_eq!(
        ok(s.get_password(bob.id).await, "get_password(bob)"),
        Some(bcrypt),
        "other user's password untouched"
    );

    let pa = ok(s.default_project(alice.id).await, "default_project(alice)");
    let pb = ok(s.default_project(bob.id).await, "default_project(bob)");
    assert_eq!(
        pa.slug,
        format!("default-{}", alice.id),
        "default project slug"
    );
    assert_eq!(
        pb.slug,
        format!("default-{}", bob.id),
        "default project slug"
    );
    assert_eq!(pa.display_name, "Default Project");
    assert!(pa.is_active);
    assert_eq!(ok(s.get_project(pa.id).await, "get_project(default)"), pa);
    assert_eq!(
        ok(s.default_project(alice.id).await, "default_project again"),
        pa,
        "stable"
    );

    let off = ok(
        s.set_user_active(bob.id, false).await,
        "set_user_active(false)",
    );
    assert!(!off.is_active);
    assert!(
        off.updated_at >= bob.updated_at,
        "updated_at went backwards"
    );
    assert_eq!(
        (off.handle.as_str(), off.email.as_deref(), off.created_at),
        (bob.handle.as_str(), bob.email.as_deref(), bob.created_at),
        "disabling changes nothing else"
    );
    assert_eq!(ok(s.get_user(bob.id).await, "get_user after disable"), off);
    let on = ok(
        s.set_user_active(bob.id, true).await,
        "set_user_active(true)",
    );
    assert!(on.is_active);
    assert_eq!(ok(s.get_user(bob.id).await, "get_user after enable"), on);
    assert_eq!(
        ok(s.get_user(alice.id).await, "get_user(alice)"),
        alice,
        "other user untouched"
    );
}

/// Every lookup or change of a user, project or session that does not exist is
/// `not_found`; a session for a user that does not exist is `invalid_input`.
pub async fn users_unknown_ids_not_found(s: &dyn Store) {
    let real = user(s, "real").await;
    let u = UserId::new();
    fails(s.get_user(u).await, NOT_FOUND, "get_user(unknown)");
    fails(
        s.get_user_by_handle("nobody").await,
        NOT_FOUND,
        "get_user_by_handle(unknown)",
    );
    fails(
        s.set_user_active(u, false).await,
        NOT_FOUND,
        "set_user_active(unknown)",
    );
    let pw = PasswordHash {
        hash: b"x".to_vec(),
        alg: "bcrypt".into(),
    };
    fails(
        s.set_password(u, pw).await,
        NOT_FOUND,
        "set_password(unknown)",
    );
    fails(s.get_password(u).await, NOT_FOUND, "get_password(unknown)");
    fails(
        s.default_project(u).await,
        NOT_FOUND,
        "default_project(unknown)",
    );
    fails(
        s.get_project(ProjectId::new()).await,
        NOT_FOUND,
        "get_project(unknown)",
    );
    fails(
        s.get_project_by_slug("nope").await,
        NOT_FOUND,
        "get_project_by_slug(unknown)",
    );
    fails(
        s.get_session(SessionId::new()).await,
        NOT_FOUND,
        "get_session(unknown)",
    );
    fails(
        s.revoke_session(SessionId::new()).await,
        NOT_FOUND,
        "revoke_session(unknown)",
    );
    fails(
        s.revoke_user_sessions(u).await,
        NOT_FOUND,
        "revoke_user_sessions(unknown)",
    );
    let new = NewRefreshSession {
        user_id: real.id,
        token_hash: b"tok".to_vec(),
        token_kid: None,
        expires_at: at("2100-01-01T00:00:00Z"),
    };
    fails(
        s.rotate_session(SessionId::new(), new.clone(), at("2050-01-01T00:00:00Z"))
            .await,
        NOT_FOUND,
        "rotate_session(unknown old session)",
    );
    fails(
        s.create_session(NewRefreshSession {
            user_id: u,
            ..new.clone()
        })
        .await,
        INVALID,
        "create_session for a user that does not exist (dangling reference)",
    );
    assert_eq!(
        ok(
            s.find_active_session(b"tok", at("2050-01-01T00:00:00Z"))
                .await,
            "find_active_session"
        ),
        None,
        "no session may have been stored by the failed calls"
    );
    assert_eq!(
        ok(
            s.revoke_user_sessions(real.id).await,
            "revoke_user_sessions"
        ),
        0
    );
}

/// Malformed and reserved handles are `invalid_input` and store nothing; the longest
/// valid handle (64 characters) is accepted.
pub async fn users_invalid_handles(s: &dyn Store) {
    let long = "a".repeat(65);
    let bad = [
        "",
        " ",
        "has space",
        "a/b",
        "tab\t",
        "ünïcödé",
        "semi;colon",
        long.as_str(),
        "system",
    ];
    for h in bad {
        fails(
            s.create_user(NewUser {
                handle: h.into(),
                ..Default::default()
            })
            .await,
            INVALID,
            &format!("create_user({h:?})"),
        );
    }
    assert!(
        ok(s.list_users().await, "list_users").is_empty(),
        "a rejected user was stored"
    );
    assert!(
        ok(s.list_projects().await, "list_projects").is_empty(),
        "a rejected user left a project"
    );
    let max = "Z".repeat(64);
    let u = user(s, &max).await;
    assert_eq!(u.handle, max);
    user(s, "a.b_c-9").await;
}

/// Duplicate handles and duplicate e-mails are conflicts; any number of users may have
/// no e-mail.
pub async fn users_duplicates_conflict(s: &dyn Store) {
    ok(
        s.create_user(NewUser {
            handle: "dup".into(),
            email: Some("dup@example.com".into()),
            password: None,
        })
        .await,
        "create_user(dup)",
    );
    fails(
        s.create_user(NewUser {
            handle: "dup".into(),
            email: Some("other@example.com".into()),
            password: None,
        })
        .await,
        CONFLICT,
        "create_user with a taken handle",
    );
    fails(
        s.create_user(NewUser {
            handle: "dup2".into(),
            email: Some("dup@example.com".into()),
            password: None,
        })
        .await,
        CONFLICT,
        "create_user with a taken e-mail",
    );
    user(s, "no-mail-1").await;
    user(s, "no-mail-2").await;
    let handles: Vec<String> = ok(s.list_users().await, "list_users")
        .into_iter()
        .map(|u| u.handle)
        .collect();
    assert_eq!(handles, ["dup", "no-mail-1", "no-mail-2"]);
    assert_eq!(
        ok(s.list_projects().await, "list_projects").len(),
        3,
        "one default project per user"
    );
}

/// A user whose creation fails (duplicate e-mail) leaves no user, no default project and
/// no password behind, and does not block the handle afterwards.
pub async fn users_create_is_atomic(s: &dyn Store) {
    ok(
        s.create_user(NewUser {
            handle: "first".into(),
            email: Some("shared@example.com".into()),
            password: None,
        })
        .await,
        "create_user(first)",
    );
    let users_before = ok(s.list_users().await, "list_users");
    let projects_before = ok(s.list_projects().await, "list_projects");
    fails(
        s.create_user(NewUser {
            handle: "second".into(),
            email: Some("shared@example.com".into()),
            password: Some(PasswordHash {
                hash: b"h".to_vec(),
                alg: "argon2id".into(),
            }),
        })
        .await,
        CONFLICT,
        "create_user with a taken e-mail",
    );
    fails(
        s.get_user_by_handle("second").await,
        NOT_FOUND,
        "the failed user must not exist",
    );
    assert_eq!(
        ok(s.list_users().await, "list_users"),
        users_before,
        "users changed by a failed create"
    );
    assert_eq!(
        ok(s.list_projects().await, "list_projects"),
        projects_before,
        "a failed create_user left a project behind"
    );
    let second = ok(
        s.create_user(NewUser {
            handle: "second".into(),
            email: Some("second@example.com".into()),
            password: None,
        })
        .await,
        "create_user(second) after the failure",
    );
    assert_eq!(
        ok(s.get_password(second.id).await, "get_password"),
        None,
        "stale password left behind"
    );
    assert_eq!(ok(s.list_projects().await, "list_projects").len(), 2);
}

/// `ensure_system_user` creates the reserved user once and then returns the same one;
/// `create_user` can never create it.
pub async fn users_system_user(s: &dyn Store) {
    let sys = ok(s.ensure_system_user().await, "ensure_system_user");
    assert_eq!(sys.handle, "system");
    assert!(sys.is_active);
    assert_eq!(
        ok(s.ensure_system_user().await, "ensure_system_user again"),
        sys,
        "must be idempotent"
    );
    fails(
        s.create_user(NewUser {
            handle: "system".into(),
            ..Default::default()
        })
        .await,
        INVALID,
        "create_user(system) when it exists",
    );
    assert_eq!(
        ok(
            s.get_user_by_handle("system").await,
            "get_user_by_handle(system)"
        ),
        sys
    );
    let users = ok(s.list_users().await, "list_users");
    assert_eq!(users, vec![sys.clone()], "exactly one system user");
    let p = ok(s.default_project(sys.id).await, "default_project(system)");
    assert_eq!(p.slug, format!("default-{}", sys.id));
}

/// Projects round-trip every field, are found by id and slug (exact), listed by slug
/// (byte order, default projects included); duplicate slugs conflict; blank slugs and
/// titles are invalid.
pub async fn projects_round_trip(s: &dyn Store) {
    let u = user(s, "owner").await;
    let zeta = ok(
        s.create_project(NewProject {
            slug: "zeta".into(),
            display_name: "Zeta — the last".into(),
            description: Some("# Zeta\n\nMarkdown *body* with \"quotes\".\n".into()),
        })
        .await,
        "create_project(zeta)",
    );
    assert_eq!(zeta.slug, "zeta");
    assert_eq!(zeta.display_name, "Zeta — the last");
    assert_eq!(
        zeta.description.as_deref(),
        Some("# Zeta\n\nMarkdown *body* with \"quotes\".\n")
    );
    assert!(zeta.is_active);
    let alpha = ok(
        s.create_project(NewProject {
            slug: "Alpha".into(),
            display_name: "A".into(),
            description: None,
        })
        .await,
        "create_project(Alpha)",
    );
    assert_eq!(alpha.description, None);
    assert_eq!(ok(s.get_project(zeta.id).await, "get_project"), zeta);
    assert_eq!(ok(s.get_project(alpha.id).await, "get_project"), alpha);
    assert_eq!(
        ok(s.get_project_by_slug("zeta").await, "get_project_by_slug"),
        zeta
    );
    fails(
        s.get_project_by_slug("ZETA").await,
        NOT_FOUND,
        "get_project_by_slug is exact",
    );
    let default = ok(s.default_project(u.id).await, "default_project");
    let listed = ok(s.list_projects().await, "list_projects");
    assert_eq!(
        listed,
        vec![alpha.clone(), default.clone(), zeta.clone()],
        "list_projects must order by slug (byte order)"
    );

    fails(
        s.create_project(NewProject {
            slug: "zeta".into(),
            display_name: "Again".into(),
            description: None,
        })
        .await,
        CONFLICT,
        "create_project with a taken slug",
    );
    fails(
        s.create_project(NewProject {
            slug: default.slug.clone(),
            display_name: "X".into(),
            description: None,
        })
        .await,
        CONFLICT,
        "create_project with a default project's slug",
    );
    fails(
        s.create_project(NewProject {
            slug: "  ".into(),
            display_name: "Blank".into(),
            description: None,
        })
        .await,
        INVALID,
        "create_project with a blank slug",
    );
    fails(
        s.create_project(NewProject {
            slug: "untitled".into(),
            display_name: "".into(),
            description: None,
        })
        .await,
        INVALID,
        "create_project with a blank display name",
    );
    assert_eq!(
        ok(s.list_projects().await, "list_projects"),
        listed,
        "a rejected project was stored"
    );
}

fn session(user: UserId, hash: &[u8], kid: Option<&str>, expires: &str) -> NewRefreshSession {
    NewRefreshSession {
        user_id: user,
        token_hash: hash.to_vec(),
        token_kid: kid.map(str::to_string),
        expires_at: at(expires),
    }
}

/// Sessions round-trip every field; `find_active_session` matches on the token hash and
/// honours the expiry against the `now` it is given (not the wall clock).
pub async fn sessions_round_trip_and_expiry(s: &dyn Store) {
    let u = user(s, "sam").await;
    // Expiry deliberately in the past of the wall clock: only `now` arguments count.
    let exp = "2001-02-03T04:05:06.789012Z";
    let a = ok(
        s.create_session(session(u.id, &[0, 1, 2, 255, 0], Some("kid-1"), exp))
            .await,
        "create_session",
    );
    assert_eq!(a.user_id, u.id);
    assert_eq!(a.token_hash, vec![0, 1, 2, 255, 0]);
    assert_eq!(a.token_kid.as_deref(), Some("kid-1"));
    assert!(a.is_active);
    assert_eq!(
        a.expires_at,
        at(exp),
        "expires_at must round-trip to the microsecond"
    );
    assert_eq!(a.last_used_at, None);
    assert_eq!(ok(s.get_session(a.id).await, "get_session"), a);

    let before = plus_us(at(exp), -1);
    assert_eq!(
        ok(
            s.find_active_session(&[0, 1, 2, 255, 0], before).await,
            "find_active_session"
        ),
        Some(a.clone()),
        "a session is active until its expiry"
    );
    assert_eq!(
        ok(
            s.find_active_session(&[0, 1, 2, 255, 0], at(exp)).await,
            "find_active_session"
        ),
        None,
        "a session is expired at exactly expires_at"
    );
    assert_eq!(
        ok(
            s.find_active_session(&[0, 1, 2, 255, 0], at("2030-01-01T00:00:00Z"))
                .await,
            "find_active_session"
        ),
        None,
        "a session is expired after expires_at"
    );
    assert_eq!(
        ok(
            s.find_active_session(&[0, 1, 2, 255], before).await,
            "find_active_session"
        ),
        None,
        "token hashes must match exactly (prefix given)"
    );

    let b = ok(
        s.create_session(session(u.id, b"second", None, "2100-01-01T00:00:00Z"))
            .await,
        "create_session",
    );
    assert_eq!(b.token_kid, None);
    assert_eq!(ok(s.get_session(b.id).await, "get_session"), b);
    assert_eq!(
        ok(
            s.find_active_session(b"second", at("2099-12-31T23:59:59.999999Z"))
                .await,
            "find_active_session"
        ),
        Some(b)
    );
}

/// Rotation replaces an active session by a new one and deactivates the old one (with
/// its last use recorded); rotating an inactive, expired or foreign session is refused
/// and stores nothing.
pub async fn sessions_rotation(s: &dyn Store) {
    let u = user(s, "rot").await;
    let other = user(s, "other").await;
    let old = ok(
        s.create_session(session(u.id, b"A", Some("k"), "2100-01-01T00:00:00Z"))
            .await,
        "create_session",
    );
    let t = at("2050-06-07T08:09:10.111213Z");
    let new = ok(
        s.rotate_session(
            old.id,
            session(u.id, b"B", Some("k2"), "2101-01-01T00:00:00Z"),
            t,
        )
        .await,
        "rotate_session",
    );
    assert_ne!(new.id, old.id);
    assert!(new.is_active);
    assert_eq!(
        (
            new.user_id,
            new.token_hash.as_slice(),
            new.token_kid.as_deref()
        ),
        (u.id, &b"B"[..], Some("k2"))
    );
    assert_eq!(new.expires_at, at("2101-01-01T00:00:00Z"));
    assert_eq!(ok(s.get_session(new.id).await, "get_session(new)"), new);
    let old_now = ok(s.get_session(old.id).await, "get_session(old)");
    assert!(!old_now.is_active, "the rotated session must be inactive");
    assert_eq!(
        old_now.last_used_at,
        Some(t),
        "rotation records the old session's last use"
    );
    assert_eq!(ok(s.find_active_session(b"A", t).await, "find(A)"), None);
    assert_eq!(
        ok(s.find_active_session(b"B", t).await, "find(B)"),
        Some(new.clone())
    );

    // Reuse of the old token: conflict, and the would-be session is not stored.
    fails(
        s.rotate_session(old.id, session(u.id, b"C", None, "2101-01-01T00:00:00Z"), t)
            .await,
        CONFLICT,
        "rotate_session of an inactive session",
    );
    assert_eq!(
        ok(s.find_active_session(b"C", t).await, "find(C)"),
        None,
        "a refused rotation stored a session"
    );

    // A session of another user cannot be the replacement.
    fails(
        s.rotate_session(
            new.id,
            session(other.id, b"F", None, "2101-01-01T00:00:00Z"),
            t,
        )
        .await,
        INVALID,
        "rotate_session to a different user",
    );
    assert_eq!(ok(s.find_active_session(b"F", t).await, "find(F)"), None);
    assert!(
        ok(s.get_session(new.id).await, "get_session").is_active,
        "a refused rotation deactivated the session"
    );

    // An expired session cannot be rotated.
    let expired = ok(
        s.create_session(session(other.id, b"E", None, "2040-01-01T00:00:00Z"))
            .await,
        "create_session(expired)",
    );
    fails(
        s.rotate_session(
            expired.id,
            session(other.id, b"D", None, "2101-01-01T00:00:00Z"),
            t,
        )
        .await,
        CONFLICT,
        "rotate_session of an expired session",
    );
    assert_eq!(ok(s.find_active_session(b"D", t).await, "find(D)"), None);
    assert_eq!(
        ok(s.get_session(expired.id).await, "get_session(expired)"),
        expired,
        "unchanged"
    );

    assert_eq!(
        ok(s.revoke_user_sessions(u.id).await, "revoke_user_sessions"),
        1,
        "exactly one active session (the rotated-in one) must exist"
    );
}

/// Revoking one session deactivates it (idempotently); revoking a user's sessions
/// counts only the active ones and leaves other users' sessions alone.
pub async fn sessions_revoke(s: &dyn Store) {
    let u = user(s, "rev").await;
    let w = user(s, "keep").await;
    let exp = "2100-01-01T00:00:00Z";
    let now = at("2050-01-01T00:00:00Z");
    let s1 = ok(
        s.create_session(session(u.id, b"s1", None, exp)).await,
        "create_session",
    );
    let s2 = ok(
        s.create_session(session(u.id, b"s2", None, exp)).await,
        "create_session",
    );
    let s3 = ok(
        s.create_session(session(u.id, b"s3", None, exp)).await,
        "create_session",
    );
    let w1 = ok(
        s.create_session(session(w.id, b"w1", None, exp)).await,
        "create_session",
    );

    ok(s.revoke_session(s1.id).await, "revoke_session");
    let r1 = ok(s.get_session(s1.id).await, "get_session");
    assert!(!r1.is_active, "revoked session still active");
    assert_eq!(
        (r1.token_hash.as_slice(), r1.expires_at),
        (&b"s1"[..], s1.expires_at)
    );
    assert_eq!(
        ok(s.find_active_session(b"s1", now).await, "find(s1)"),
        None
    );
    ok(
        s.revoke_session(s1.id).await,
        "revoke_session of an inactive session is not an error",
    );

    assert_eq!(
        ok(s.revoke_user_sessions(u.id).await, "revoke_user_sessions"),
        2,
        "s2 and s3 were active"
    );
    assert_eq!(
        ok(
            s.revoke_user_sessions(u.id).await,
            "revoke_user_sessions again"
        ),
        0
    );
    for id in [s2.id, s3.id] {
        assert!(!ok(s.get_session(id).await, "get_session").is_active);
    }
    assert_eq!(
        ok(s.get_session(w1.id).await, "get_session(other user)"),
        w1,
        "other user's session changed"
    );
    assert_eq!(
        ok(s.find_active_session(b"w1", now).await, "find(w1)"),
        Some(w1)
    );
}
