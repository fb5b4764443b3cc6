//! Cases for [`PreferenceStore`](crate::store::PreferenceStore): scoped entries with
//! optimistic versions.

use serde_json::{Value, json};

use super::support::*;
use crate::model::*;
use crate::store::Store;

/// Versions start at 1 and grow by one per write; `Some(0)` creates only when absent;
/// a stale expected version is a conflict that changes nothing; deletes check the
/// version too; the value type follows the value; JSON `null` is a value.
pub async fn preferences_versions(s: &dyn Store) {
    let u = user(s, "u").await;
    let scope = Scope::User(u.id);
    let key = "output.format";
    fails(
        s.get_preference(scope, key).await,
        NOT_FOUND,
        "get_preference(missing)",
    );
    fails(
        s.put_preference(scope, key, json!("x"), Some(3), None)
            .await,
        CONFLICT,
        "put_preference(missing, expected version 3)",
    );
    fails(
        s.get_preference(scope, key).await,
        NOT_FOUND,
        "a refused create stored the entry",
    );

    let v1 = ok(
        s.put_preference(scope, key, json!("markdown"), Some(0), Some("alice"))
            .await,
        "put_preference(create, Some(0))",
    );
    assert_eq!(
        (v1.scope, v1.key.as_str(), &v1.value, v1.value_type.as_str()),
        (scope, key, &json!("markdown"), "string")
    );
    assert_eq!(v1.version, 1, "versions start at 1");
    assert_eq!(v1.updated_by.as_deref(), Some("alice"));
    assert_eq!(ok(s.get_preference(scope, key).await, "get_preference"), v1);

    fails(
        s.put_preference(scope, key, json!("json"), Some(0), None)
            .await,
        CONFLICT,
        "put_preference(create, Some(0)) when it exists",
    );
    assert_eq!(
        ok(s.get_preference(scope, key).await, "get_preference"),
        v1,
        "a refused write changed the entry"
    );

    let v2 = ok(
        s.put_preference(scope, key, json!(42), None, None).await,
        "put_preference(unconditional)",
    );
    assert_eq!(
        (v2.id, v2.version, &v2.value, v2.value_type.as_str()),
        (v1.id, 2, &json!(42), "number")
    );
    assert_eq!(v2.updated_by, None, "updated_by is replaced, not kept");
    assert!(v2.updated_at >= v1.updated_at);
    fails(
        s.put_preference(scope, key, json!(true), Some(1), None)
            .await,
        CONFLICT,
        "put_preference(stale version 1)",
    );
    assert_eq!(ok(s.get_preference(scope, key).await, "get_preference"), v2);
    let v3 = ok(
        s.put_preference(scope, key, json!(true), Some(2), Some("bob"))
            .await,
        "put_preference(version 2)",
    );
    assert_eq!((v3.version, v3.value_type.as_str()), (3, "boolean"));

    let typed: [(Value, &str); 5] = [
        (
            json!({"nested": {"list": [1, 2.5, "x", null]}, "empty": {}}),
            "object",
        ),
        (json!([1, "two", {"three": 3}]), "array"),
        (json!(-0.125), "number"),
        (json!(""), "string"),
        (Value::Null, "null"),
    ];
    let mut version = 3;
    for (value, ty) in typed {
        let e = ok(
            s.put_preference(scope, key, value.clone(), Some(version), None)
                .await,
            &format!("put_preference({ty})"),
        );
        version += 1;
        assert_eq!(
            (&e.value, e.value_type.as_str(), e.version),
            (&value, ty, version)
        );
        assert_eq!(
            ok(s.get_preference(scope, key).await, "get_preference"),
            e,
            "{ty} value must round-trip"
        );
    }
    assert_eq!(version, 8);

    fails(
        s.delete_preference(scope, key, Some(7)).await,
        CONFLICT,
        "delete_preference(stale version)",
    );
    assert_eq!(
        ok(s.get_preference(scope, key).await, "get_preference").version,
        8,
        "a refused delete deleted"
    );
    ok(
        s.delete_preference(scope, key, Some(8)).await,
        "delete_preference(current version)",
    );
    fails(
        s.get_preference(scope, key).await,
        NOT_FOUND,
        "get_preference after delete",
    );
    fails(
        s.delete_preference(scope, key, None).await,
        NOT_FOUND,
        "delete_preference(missing)",
    );

    // Re-created after a delete, it starts again at version 1.
    let again = ok(
        s.put_preference(scope, key, json!(1), Some(0), None).await,
        "put_preference(re-create)",
    );
    assert_eq!(again.version, 1);
    ok(
        s.delete_preference(scope, key, None).await,
        "delete_preference(unconditional)",
    );
    fails(
        s.get_preference(scope, key).await,
        NOT_FOUND,
        "get_preference after unconditional delete",
    );

    fails(
        s.put_preference(scope, "", json!(1), None, None).await,
        INVALID,
        "put_preference with a blank key",
    );
    fails(
        s.put_preference(scope, "   ", json!(1), None, None).await,
        INVALID,
        "put_preference with a blank key",
    );
}

/// Each scope (system, user, group, project, task) holds its own entries; the system
/// scope keeps one entry per key (no duplicate rows for the id-less scope); keys are
/// case-sensitive; listing filters by a literal prefix and orders by key.
pub async fn preferences_scopes_and_listing(s: &dyn Store) {
    let u = user(s, "u").await;
    let p = project(s, "p").await;
    let t = task(s, Some(u.id), "t").await;
    let group = uuid::Uuid::new_v4();
    let scopes = [
        Scope::System,
        Scope::User(u.id),
        Scope::Group(group),
        Scope::Project(p.id),
        Scope::Task(t.id),
    ];
    for (i, &scope) in scopes.iter().enumerate() {
        ok(
            s.put_preference(scope, "shared.key", json!(i), Some(0), None)
                .await,
            &format!("put_preference({scope:?})"),
        );
    }
    for (i, &scope) in scopes.iter().enumerate() {
        let e = ok(
            s.get_preference(scope, "shared.key").await,
            &format!("get_preference({scope:?})"),
        );
        assert_eq!(
            (e.scope, &e.value, e.version),
            (scope, &json!(i), 1),
            "scopes must not share entries"
        );
    }
    // System scope: a second write updates the one row instead of adding another.
    let sys2 = ok(
        s.put_preference(Scope::System, "shared.key", json!("v2"), None, None)
            .await,
        "put_preference(system)",
    );
    assert_eq!(
        sys2.version, 2,
        "the system-scope entry must be updated, not duplicated"
    );
    fails(
        s.put_preference(Scope::System, "shared.key", json!("v3"), Some(0), None)
            .await,
        CONFLICT,
        "put_preference(system, Some(0)) when it exists",
    );
    let sys_list = ok(
        s.list_preferences(Scope::System, "").await,
        "list_preferences(system)",
    );
    assert_eq!(sys_list, vec![sys2], "exactly one system-scope row per key");
    // Another user's scope is empty.
    let v = user(s, "v").await;
    assert!(
        ok(
            s.list_preferences(Scope::User(v.id), "").await,
            "list_preferences(other user)"
        )
        .is_empty()
    );

    let scope = Scope::User(u.id);
    for key in ["b.two", "a.one", "a_b", "aXb", "a%c", "Key", "key", "b"] {
        ok(
            s.put_preference(scope, key, json!(key), None, None).await,
            &format!("put_preference({key})"),
        );
    }
    let keys = |v: Vec<PreferenceEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(
        keys(ok(
            s.list_preferences(scope, "").await,
            "list_preferences(all)"
        )),
        [
            "Key",
            "a%c",
            "a.one",
            "aXb",
            "a_b",
            "b",
            "b.two",
            "key",
            "shared.key"
        ],
        "list_preferences must return every key of the scope ordered by key (byte order)"
    );
    assert_eq!(
        keys(ok(
            s.list_preferences(scope, "a.").await,
            "list_preferences(a.)"
        )),
        ["a.one"]
    );
    assert_eq!(
        keys(ok(
            s.list_preferences(scope, "a_").await,
            "list_preferences(a_)"
        )),
        ["a_b"],
        "'_' in a prefix is a literal character, not a wildcard"
    );
    assert_eq!(
        keys(ok(
            s.list_preferences(scope, "a%").await,
            "list_preferences(a%)"
        )),
        ["a%c"],
        "'%' in a prefix is a literal character, not a wildcard"
    );
    assert_eq!(
        keys(ok(
            s.list_preferences(scope, "b").await,
            "list_preferences(b)"
        )),
        ["b", "b.two"]
    );
    assert_eq!(
        keys(ok(
            s.list_preferences(scope, "K").await,
            "list_preferences(K)"
        )),
        ["Key"],
        "prefixes are case-sensitive"
    );
    assert!(
        ok(
            s.list_preferences(scope, "zzz").await,
            "list_preferences(zzz)"
        )
        .is_empty()
    );
    assert_eq!(
        ok(s.get_preference(scope, "Key").await, "get_preference(Key)").value,
        json!("Key")
    );
    assert_eq!(
        ok(s.get_preference(scope, "key").await, "get_preference(key)").value,
        json!("key")
    );
    fails(
        s.get_preference(scope, "KEY").await,
        NOT_FOUND,
        "get_preference is case-sensitive",
    );

    ok(
        s.delete_preference(Scope::Group(group), "shared.key", Some(1))
            .await,
        "delete_preference(group)",
    );
    fails(
        s.get_preference(Scope::Group(group), "shared.key").await,
        NOT_FOUND,
        "deleted",
    );
    assert_eq!(
        ok(
            s.get_preference(Scope::Project(p.id), "shared.key").await,
            "get_preference(project)"
        )
        .value,
        json!(3),
        "deleting in one scope touched another"
    );
}
