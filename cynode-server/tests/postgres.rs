//! The gateway cases that touch the most storage, on PostgreSQL 18 + pgvector
//! (`CYNODE_TEST_PG_URL`). Each test creates its own database and drops it at the end.

mod common;

use common::pg::on_fresh_database;

macro_rules! on_postgres {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            on_fresh_database(common::cases::$case).await
        }
    )*};
}

on_postgres!(
    login_success_and_failures,
    refresh_rotation_and_reuse,
    logout,
    users_me_and_admin_revocation,
    task_create,
    task_list_paging_and_filters,
    task_get_result_cancel_logs,
);
