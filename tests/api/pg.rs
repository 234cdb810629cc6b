//! Throwaway PostgreSQL databases for the tests that need one: `scripts/test` starts a real server
//! (`scripts/postgres`) and names it in `TEST_POSTGRES_URL`; each test gets a database of its own.

use sqlx::Connection;

/// The admin URL of the test server, or `None` (with a note) when no server was started.
pub fn server() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("TEST_POSTGRES_URL is not set: run scripts/test, which starts a throwaway PostgreSQL");
            None
        }
    }
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> Option<String> {
    let server = server()?;
    let name = format!("ficus_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server).await.expect("the test PostgreSQL server answers");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}
