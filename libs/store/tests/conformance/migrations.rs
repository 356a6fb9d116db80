//! Migrations that convert stored data. A database that has applied only the migrations before one,
//! holding rows written the way the store wrote them then, must read right once the store migrates it.

use std::time::Duration;

use prost::Message;
use sqlx::postgres::PgListener;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;
use vexil_proto::{ChangeEvent, ChangeKind, ItemKind, SdkKey};
use vexil_store::Store;

use crate::helpers::*;

/// The last migration before the change log stored `kind` and `item` as the protobuf enums' numbers.
const BEFORE_CHANGE_LOG_ENUMS: i64 = 20261121000001;

/// A change-log row as the store wrote it before `change_log_enums`: `kind` and `item` as names.
struct OldRow {
    environment_id: i64,
    environment: &'static str,
    revision: i64,
    kind: &'static str,
    item: &'static str,
    key: &'static str,
    payload: Vec<u8>,
    sent: bool,
}

/// When the old rows were committed (whole seconds, so both backends keep it exactly).
fn committed_at() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
}

fn flag_payload() -> Vec<u8> {
    br#"{"flag":{"key":"checkout"},"config":{"on":true}}"#.to_vec()
}

fn key_payload() -> Vec<u8> {
    SdkKey { id: "key-1".into(), kind: "server".into(), secret_sha256: vec![7; 32], expires_at_ms: 0 }
        .encode_to_vec()
}

/// Environment `production` of project `shop` (at revision 4): one delivered row, three waiting; and a
/// deleted environment's final row, waiting.
fn old_rows(production: i64) -> Vec<OldRow> {
    let row = |revision, kind, item, key, payload, sent| OldRow {
        environment_id: production,
        environment: "production",
        revision,
        kind,
        item,
        key,
        payload,
        sent,
    };
    vec![
        row(1, "upsert", "flag", "checkout", flag_payload(), true),
        row(2, "upsert", "sdk_key", "key-1", key_payload(), false),
        row(3, "delete", "segment", "beta", Vec::new(), false),
        row(4, "upsert", "flag", "checkout", flag_payload(), false),
        OldRow {
            environment_id: production + 1_000,
            environment: "staging",
            revision: 7,
            kind: "delete",
            item: "environment",
            key: "staging",
            payload: Vec::new(),
            sent: false,
        },
    ]
}

/// Writes the project, its environment and [`old_rows`] through `$pool` (the statements are the same
/// on both backends); evaluates to the environment's id.
macro_rules! write_the_old_way {
    ($pool:expr) => {{
        let pool = $pool;
        let at = committed_at();
        let project: i64 = sqlx::query_scalar(
            "insert into projects (key, name, description, created_at, updated_at) \
             values ('shop', 'Shop', '', $1, $1) returning id",
        )
        .bind(at)
        .fetch_one(pool)
        .await
        .unwrap();
        let production: i64 = sqlx::query_scalar(
            "insert into environments (project_id, key, name, revision, created_at, updated_at) \
             values ($1, 'production', 'production', 4, $2, $2) returning id",
        )
        .bind(project)
        .bind(at)
        .fetch_one(pool)
        .await
        .unwrap();
        for row in old_rows(production) {
            sqlx::query(
                "insert into change_log (environment_id, project, environment, revision, kind, item, key, \
                 payload, committed_at, sent_at) values ($1, 'shop', $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(row.environment_id)
            .bind(row.environment)
            .bind(row.revision)
            .bind(row.kind)
            .bind(row.item)
            .bind(row.key)
            .bind(row.payload)
            .bind(at)
            .bind(row.sent.then_some(at))
            .execute(pool)
            .await
            .unwrap();
        }
        production
    }};
}

/// A row the store would never write: the next revision of `production`, taken already.
const DUPLICATE_REVISION: &str = "insert into change_log (environment_id, project, environment, revision, \
     kind, item, key, payload, committed_at) values ($1, 'shop', 'production', 5, 1, 1, 'again', $2, $3)";

fn event(revision: u64, kind: ChangeKind, item: ItemKind, key: &str, payload: Vec<u8>) -> ChangeEvent {
    ChangeEvent {
        environment_id: 0, // filled in by the caller
        project: "shop".into(),
        environment: String::new(),
        revision,
        kind: kind.into(),
        item: item.into(),
        key: key.into(),
        payload,
        committed_at_ms: committed_at().unix_timestamp() * 1_000,
    }
}

/// The relay gets the waiting old rows as the events they were, in order; then a new write continues
/// the environment's log after them.
async fn old_rows_are_relayed_as_the_events_they_were(store: &Store, production: i64) {
    let pending = store.pending_changes(10).await.unwrap();
    let events = |environment_id: i64| {
        pending.iter().find(|p| p.environment_id == environment_id).map(|p| p.events.clone())
    };
    let in_production =
        |e: ChangeEvent| ChangeEvent { environment_id: production, environment: "production".into(), ..e };
    assert_eq!(
        events(production).expect("production has waiting rows"),
        [
            in_production(event(2, ChangeKind::Upsert, ItemKind::SdkKey, "key-1", key_payload())),
            in_production(event(3, ChangeKind::Delete, ItemKind::Segment, "beta", Vec::new())),
            in_production(event(4, ChangeKind::Upsert, ItemKind::Flag, "checkout", flag_payload())),
        ]
    );
    let staging = ChangeEvent {
        environment_id: production + 1_000,
        environment: "staging".into(),
        ..event(7, ChangeKind::Delete, ItemKind::Environment, "staging", Vec::new())
    };
    assert_eq!(events(production + 1_000).expect("the deleted environment's final row"), [staging]);
    assert_eq!(store.unsent_count().await.unwrap(), 4, "the delivered row stays delivered");

    store.create_flag(&actor(), &project(), boolean_flag("fresh")).await.unwrap();
    let pending = store.pending_changes(10).await.unwrap();
    let production_now = pending.iter().find(|p| p.environment_id == production).unwrap();
    let last = production_now.events.last().unwrap();
    assert_eq!(
        (last.revision, last.kind(), last.item(), last.key.as_str()),
        (5, ChangeKind::Upsert, ItemKind::Flag, "fresh")
    );
    store.mark_sent(production, 5).await.unwrap();
    assert_eq!(store.unsent_count().await.unwrap(), 1, "only the deleted environment's row waits");
}

#[tokio::test]
async fn postgres_change_log_rows_written_with_names_are_relayed_after_the_enum_migration() {
    let db = vexil_testkit::TestDatabase::create().await;
    let pool = PgPool::connect(db.url()).await.unwrap();
    sqlx::migrate!("../../migrations/postgres").run_to(BEFORE_CHANGE_LOG_ENUMS, &pool).await.unwrap();
    let production = write_the_old_way!(&pool);

    let store = Store::connect(db.url()).await.unwrap();
    store.migrate().await.unwrap();
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen("vexil_change_log").await.unwrap();
    old_rows_are_relayed_as_the_events_they_were(&store, production).await;

    // The rebuilt columns kept the table's trigger, unique constraint and index of waiting rows.
    let notified = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert!(matches!(notified, Ok(Ok(_))), "a commit to the change log still notifies: {notified:?}");
    let duplicate = sqlx::query(DUPLICATE_REVISION)
        .bind(production)
        .bind(Vec::<u8>::new())
        .bind(committed_at())
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(duplicate.as_database_error().is_some_and(|e| e.is_unique_violation()), "{duplicate}");
    let index: String = sqlx::query_scalar(
        "select indexdef from pg_indexes where tablename = 'change_log' and indexname = 'change_log_unsent'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(index.contains("WHERE (sent_at IS NULL)"), "{index}");
}

#[tokio::test]
async fn sqlite_change_log_rows_written_with_names_are_relayed_after_the_enum_migration() {
    let dir = std::env::temp_dir().join(format!("vexil-migrate-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/vexil.db", dir.display());
    let options = url.parse::<SqliteConnectOptions>().unwrap().create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate!("../../migrations/sqlite").run_to(BEFORE_CHANGE_LOG_ENUMS, &pool).await.unwrap();
    let production = write_the_old_way!(&pool);
    // A delivered row pruned before the migration had the highest id: ids must run on past it rather
    // than hand it out again.
    sqlx::query(
        "insert into change_log (environment_id, project, environment, revision, kind, item, key, \
         payload, committed_at, sent_at) values ($1, 'shop', 'gone', 1, 'delete', 'environment', 'gone', \
         x'', $2, $2)",
    )
    .bind(production + 2_000)
    .bind(committed_at())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("delete from change_log where environment_id = $1")
        .bind(production + 2_000)
        .execute(&pool)
        .await
        .unwrap();
    let pruned_id: i64 = sqlx::query_scalar("select seq from sqlite_sequence where name = 'change_log'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    old_rows_are_relayed_as_the_events_they_were(&store, production).await;
    drop(store);

    let pool = SqlitePool::connect(&url).await.unwrap();
    let fresh_id: i64 =
        sqlx::query_scalar("select id from change_log where environment_id = $1 and revision = 5")
            .bind(production)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(fresh_id > pruned_id, "id {fresh_id} handed out again (a pruned row had {pruned_id})");
    let duplicate = sqlx::query(DUPLICATE_REVISION)
        .bind(production)
        .bind(Vec::<u8>::new())
        .bind(committed_at())
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(duplicate.as_database_error().is_some_and(|e| e.is_unique_violation()), "{duplicate}");
    let index: String = sqlx::query_scalar(
        "select sql from sqlite_master where type = 'index' and name = 'change_log_unsent'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(index.contains("where sent_at is null"), "{index}");
}
