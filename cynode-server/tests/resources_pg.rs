//! The resource routes on PostgreSQL 18 + pgvector (`CYNODE_TEST_PG_URL`). Each test
//! creates its own database and drops it at the end.

mod common;
mod resources_cases;

use common::pg::on_fresh_database;

macro_rules! on_postgres {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            on_fresh_database(resources_cases::$case).await
        }
    )*};
}

on_postgres!(
    skills_routes,
    prefs_routes,
    settings_routes,
    nodes_routes,
    creds_routes,
    audit_routes,
    projects_routes,
    resource_routes_require_a_token,
);
