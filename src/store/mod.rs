//! Registry adapters: SQLite (the default, one file), PostgreSQL (several replicas sharing one
//! database) and the in-memory snapshot that request paths read instead of either. The two
//! databases share the directory loader (`load`) and the log row readers (`log_rows`).
//!
//! Adapters implement the ports in `domain::ports`; they hold no business rules beyond what the
//! schema itself enforces (uniqueness, foreign keys).

pub(crate) mod faults;
mod load;
mod log_rows;
pub mod postgres;
pub mod sign_in_writer;
pub mod snapshot;
pub mod sqlite;

pub use postgres::PostgresRegistry;
pub use snapshot::DirectorySnapshot;
pub use sqlite::SqliteRegistry;
