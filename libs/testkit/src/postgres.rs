//! Fresh PostgreSQL databases for tests.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use crate::postgres_admin_url;

/// How long to wait for the admin server to accept a connection before failing the test.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// A fresh, uniquely named PostgreSQL database (`vexil_test_<uuid>`) created on the admin server
/// ([`postgres_admin_url`]).
///
/// Databases are left behind on drop: creating one costs a few milliseconds, dropping one with
/// open connections needs care, and a leftover database is useful for a post-mortem. Tests that
/// want to clean up call [`TestDatabase::drop_database`].
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a new, empty database with `CREATE DATABASE` on the admin server.
    ///
    /// # Panics
    ///
    /// With a message naming the server when it is unreachable or refuses: tests fail loudly rather
    /// than skip.
    pub async fn create() -> TestDatabase {
        let admin_url = postgres_admin_url();
        let name = format!("vexil_test_{}", Uuid::new_v4().simple());

        let mut admin = connect_admin(&admin_url).await;
        // The name is generated above from a UUID, so quoting it is enough.
        sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| {
                panic!("vexil-testkit: CREATE DATABASE {name} failed on {}: {error}", redact(&admin_url))
            });
        // Closing only says goodbye politely; the database exists whether or not it succeeds.
        let _ = admin.close().await;

        let url = with_database(&admin_url, &name);
        TestDatabase { name, url, admin_url }
    }

    /// The full URL to the new database, for `PgPool::connect` or a service's settings.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing any connections still open to it (`WITH (FORCE)`).
    ///
    /// # Panics
    ///
    /// When the admin server is unreachable or the drop fails.
    pub async fn drop_database(self) {
        let mut admin = connect_admin(&self.admin_url).await;
        sqlx::raw_sql(AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name)))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "vexil-testkit: DROP DATABASE {} failed on {}: {error}",
                    self.name,
                    redact(&self.admin_url)
                )
            });
        let _ = admin.close().await;
    }
}

/// Connects to the admin server, or panics with a message that says what to do about it.
async fn connect_admin(admin_url: &str) -> PgConnection {
    let hint = "start PostgreSQL (`source scripts/services.sh` does) or set VEXIL_TEST_DATABASE_URL";
    match tokio::time::timeout(CONNECT_DEADLINE, PgConnection::connect(admin_url)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => panic!(
            "vexil-testkit: cannot connect to the PostgreSQL admin server {}: {error}; {hint}",
            redact(admin_url)
        ),
        Err(_) => panic!(
            "vexil-testkit: no answer from the PostgreSQL admin server {} within {CONNECT_DEADLINE:?}; {hint}",
            redact(admin_url)
        ),
    }
}

/// `url` with its database (the path) replaced by `database`, keeping any query string.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// `url` with any password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..].find(['/', '?']).map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => {
                format!("{}{user}:***@{host}{}", &url[..authority_start], &url[authority_end..])
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, PgConnection};

    use super::{TestDatabase, redact, with_database};
    use crate::postgres_admin_url;

    #[test]
    fn the_database_replaces_the_path_of_the_admin_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "vexil_test_1"),
            "postgres://postgres@127.0.0.1:5432/vexil_test_1"
        );
    }

    #[test]
    fn the_query_string_of_the_admin_url_is_kept() {
        assert_eq!(
            with_database("postgres://u:p@db:5432/postgres?sslmode=disable", "t"),
            "postgres://u:p@db:5432/t?sslmode=disable"
        );
    }

    #[test]
    fn an_admin_url_without_a_path_gets_one() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432", "t"),
            "postgres://postgres@127.0.0.1:5432/t"
        );
        assert_eq!(
            with_database("postgres://localhost?host=/run/pg", "t"),
            "postgres://localhost/t?host=/run/pg"
        );
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        assert_eq!(redact("postgres://u:secret@db:5432/postgres"), "postgres://u:***@db:5432/postgres");
        assert_eq!(redact("postgres://u@db/postgres"), "postgres://u@db/postgres");
    }

    #[tokio::test]
    async fn a_test_database_is_new_empty_and_reachable_at_its_url() {
        let database = TestDatabase::create().await;

        let mut connection =
            PgConnection::connect(database.url()).await.expect("connect to the test database");
        let one: i32 = sqlx::query_scalar("select 1").fetch_one(&mut connection).await.expect("select 1");
        let current: String =
            sqlx::query_scalar("select current_database()").fetch_one(&mut connection).await.expect("name");
        let tables: i64 = sqlx::query_scalar("select count(*) from pg_tables where schemaname = 'public'")
            .fetch_one(&mut connection)
            .await
            .expect("count tables");
        connection.close().await.expect("close");

        assert_eq!(one, 1);
        assert_eq!(current, database.name());
        assert!(database.name().starts_with("vexil_test_"));
        assert_eq!(tables, 0);
        database.drop_database().await;
    }

    #[tokio::test]
    async fn two_test_databases_have_different_names() {
        let first = TestDatabase::create().await;
        let second = TestDatabase::create().await;

        assert_ne!(first.name(), second.name());
        first.drop_database().await;
        second.drop_database().await;
    }

    #[tokio::test]
    async fn drop_database_removes_it_even_with_a_connection_open() {
        let database = TestDatabase::create().await;
        let name = database.name().to_owned();
        let open = PgConnection::connect(database.url()).await.expect("connect to the test database");

        database.drop_database().await;

        let mut admin =
            PgConnection::connect(&postgres_admin_url()).await.expect("connect to the admin server");
        let still_there: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await
                .expect("look the database up");
        assert!(!still_there, "{name} still exists");
        drop(open);
    }
}
