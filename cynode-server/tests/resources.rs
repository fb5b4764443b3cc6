//! The resource routes (skills, preferences, settings, nodes, credentials, audit,
//! projects) and their error cases through `tower::ServiceExt::oneshot`, on the
//! in-memory store and on SQLite.

mod common;
mod resources_cases;

macro_rules! on_backends {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::resources_cases::$case(crate::common::memory()).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::resources_cases::$case(crate::common::sqlite().await).await
                }
            )*
        }
    };
}

on_backends!(
    skills_routes,
    prefs_routes,
    settings_routes,
    nodes_routes,
    creds_routes,
    audit_routes,
    projects_routes,
    resource_routes_require_a_token,
);
