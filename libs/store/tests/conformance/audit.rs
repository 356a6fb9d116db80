use sqlx::Connection;
use vexil_store::{AuditQuery, Store};

use crate::conformance;
use crate::helpers::*;

conformance!(every_write_is_audited_with_before_and_after, the_audit_log_pages_by_cursor);

async fn every_write_is_audited_with_before_and_after(store: Store) {
    with_flag(&store).await;
    store.toggle_flag(&actor(), &project(), &flag_key("checkout"), &env("production"), true).await.unwrap();
    let records = store
        .list_audit(&AuditQuery { flag: Some("checkout".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["flag.toggle", "flag.create"]);
    let toggle = &records[0];
    assert_eq!(toggle.before.as_ref().unwrap()["on"], false);
    assert_eq!(toggle.after.as_ref().unwrap()["on"], true);
    assert_eq!(
        (toggle.actor_token_id.as_deref(), toggle.request_id.as_deref()),
        (Some("tok1"), Some("req-1"))
    );
    assert_eq!(toggle.environment.as_deref(), Some("production"));
    let verification = store.verify_audit().await.unwrap();
    assert!(verification.ok, "{verification:?}");
    // project.create + 2 × environment.create + flag.create + flag.toggle
    assert_eq!(verification.records, 5);
}

async fn the_audit_log_pages_by_cursor(store: Store) {
    store.create_project(&actor(), &project(), "", "").await.unwrap();
    for i in 0..5 {
        store.create_flag(&actor(), &project(), boolean_flag(&format!("f{i}"))).await.unwrap();
    }
    let first = store.list_audit(&AuditQuery { limit: 3, ..Default::default() }).await.unwrap();
    assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [8, 7, 6]);
    let next = store
        .list_audit(&AuditQuery { limit: 3, before_seq: Some(first[2].seq), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(next.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 4, 3]);
    let other = store
        .list_audit(&AuditQuery { projects: Some(vec!["other".into()]), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(other.is_empty());
    let since_future = store
        .list_audit(&AuditQuery {
            since: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(since_future.is_empty());
}

#[tokio::test]
async fn postgres_refuses_to_change_audit_rows_and_the_chain_detects_a_superuser_who_does() {
    let (store, url) = postgres_with_url().await;
    with_flag(&store).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    for statement in [
        "update audit.records set actor_name = 'mallory'",
        "delete from audit.records where seq = 2",
        "truncate audit.records",
    ] {
        let err = sqlx::query(statement).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    assert!(store.verify_audit().await.unwrap().ok);

    // A superuser can bypass the triggers; the hash chain still tells.
    sqlx::query("set session_replication_role = replica").execute(&mut conn).await.unwrap();
    sqlx::query("update audit.records set actor_name = 'mallory' where seq = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert!(!verification.ok);
    assert_eq!(verification.first_broken_seq, Some(2), "{verification:?}");
    assert!(verification.problem.unwrap().contains("altered"));
}

#[tokio::test]
async fn postgres_detects_deleted_audit_records_in_the_middle_and_at_the_end() {
    let (store, url) = postgres_with_url().await;
    with_flag(&store).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("set session_replication_role = replica").execute(&mut conn).await.unwrap();
    let newest: i64 =
        sqlx::query_scalar("select max(seq) from audit.records").fetch_one(&mut conn).await.unwrap();
    sqlx::query("delete from audit.records where seq = $1").bind(newest).execute(&mut conn).await.unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert!(!verification.ok, "removing the newest record must be detected");
    assert!(verification.problem.unwrap().contains("newest"));

    sqlx::query("delete from audit.records where seq = 2").execute(&mut conn).await.unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert_eq!((verification.ok, verification.first_broken_seq), (false, Some(2)), "{verification:?}");
    assert!(verification.problem.unwrap().contains("missing"));
}

#[tokio::test]
async fn postgres_audit_records_land_in_monthly_partitions() {
    let (store, url) = postgres_with_url().await;
    with_flag(&store).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let partition: String = sqlx::query_scalar("select tableoid::regclass::text from audit.records limit 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let this_month = time::OffsetDateTime::now_utc();
    assert_eq!(
        partition,
        format!("audit.records_{:04}_{:02}", this_month.year(), u8::from(this_month.month()))
    );
    let ahead: i64 =
        sqlx::query_scalar("select count(*) from pg_inherits where inhparent = 'audit.records'::regclass")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    // Last month, this month, three ahead, and the default.
    assert!(ahead >= 6, "{ahead} partitions");
}

#[tokio::test]
async fn sqlite_refuses_to_change_audit_rows_and_the_chain_detects_tampering() {
    let (store, url) = sqlite_with_url().await;
    with_flag(&store).await;
    drop(store);
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let err =
        sqlx::query("update audit_records set actor_name = 'mallory'").execute(&mut conn).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    sqlx::query("drop trigger audit_records_no_update").execute(&mut conn).await.unwrap();
    sqlx::query("update audit_records set after = '{}' where seq = 3").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert_eq!((verification.ok, verification.first_broken_seq), (false, Some(3)), "{verification:?}");
}
