use serde_json::{Value, json};
use vexil_model::{EnvironmentKey, Flag, FlagConfigSpec, FlagKey, ProjectKey};
use vexil_store::{Actor, Store};

/// A store on a fresh, uniquely named PostgreSQL database, migrated.
pub async fn postgres() -> Store {
    postgres_with_url().await.0
}

/// The same, with the database's URL for tests that go behind the store's back.
pub async fn postgres_with_url() -> (Store, String) {
    let db = vexil_testkit::TestDatabase::create().await;
    let store = Store::connect(db.url()).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    (store, db.url().to_owned())
}

/// A store on a fresh SQLite file, migrated.
pub async fn sqlite() -> Store {
    sqlite_with_url().await.0
}

/// The same, with the database's URL.
pub async fn sqlite_with_url() -> (Store, String) {
    let dir = std::env::temp_dir().join(format!("vexil-store-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/vexil.db", dir.display());
    let store = Store::connect(&url).await.expect("open sqlite");
    store.migrate().await.expect("migrate");
    (store, url)
}

/// Runs an async test body against both backends: `conformance!(name)` expects `async fn name(store: Store)`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::helpers::postgres().await).await;
            }
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::helpers::sqlite().await).await;
            }
        }
    )*};
}

pub fn actor() -> Actor {
    Actor { token_id: Some("tok1".into()), name: "tester".into(), request_id: Some("req-1".into()) }
}

pub fn project() -> ProjectKey {
    ProjectKey::parse("shop").unwrap()
}

pub fn env(key: &str) -> EnvironmentKey {
    EnvironmentKey::parse(key).unwrap()
}

pub fn flag_key(key: &str) -> FlagKey {
    FlagKey::parse(key).unwrap()
}

pub fn boolean_flag(key: &str) -> Flag {
    Flag::parse(
        serde_json::from_value(json!({"key": key, "kind": "boolean",
            "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]}))
        .unwrap(),
    )
    .unwrap()
}

pub fn config(value: Value) -> FlagConfigSpec {
    serde_json::from_value(value).unwrap()
}

/// A store with project `shop` (development, production) and a boolean flag `checkout`.
pub async fn with_flag(store: &Store) {
    store.create_project(&actor(), &project(), "Shop", "").await.unwrap();
    store.create_flag(&actor(), &project(), boolean_flag("checkout")).await.unwrap();
}
