//! Registry adapters: SQLite (the default, one file) and the in-memory snapshot that request
//! paths read instead of the database.
//!
//! Adapters implement the ports in `domain::ports`; they hold no business rules beyond what the
//! schema itself enforces (uniqueness, foreign keys).

pub mod sign_in_writer;
pub mod snapshot;
pub mod sqlite;

pub use snapshot::DirectorySnapshot;
pub use sqlite::SqliteRegistry;
