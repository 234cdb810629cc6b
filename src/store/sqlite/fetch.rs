//! How the shared directory loader (`store::load`) and log readers (`store::log_rows`) read SQLite: `?1` placeholders, rowid order,
//! and the change log's cursor from `sqlite_sequence`.

use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::db_error;
use crate::domain::ports::{ChangeCursor, StoreError};
use crate::store::load::{Cells, Fetch, Scope, corrupt};
use crate::store::log_rows::LogCells;

pub(super) struct SqliteFetch<'t>(pub &'t mut Transaction<'static, Sqlite>);

impl Cells for SqliteRow {
    fn text(&self, column: &str) -> Result<&str, StoreError> {
        self.try_get(column).map_err(corrupt)
    }

    fn opt_text(&self, column: &str) -> Result<Option<&str>, StoreError> {
        self.try_get(column).map_err(corrupt)
    }
}

impl LogCells for SqliteRow {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(corrupt)
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column).map_err(corrupt)
    }
}

fn cursor_value(seq: i64) -> Result<ChangeCursor, StoreError> {
    u64::try_from(seq).map_err(corrupt)
}

impl Fetch for SqliteFetch<'_> {
    type Row = SqliteRow;

    async fn each<T: Send>(
        &mut self,
        sql: &str,
        column: &str,
        scope: Scope<'_>,
        mut convert: impl FnMut(&SqliteRow) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let condition = match scope {
            Scope::All => "1".to_owned(),
            Scope::One(_) => format!("{column} = ?1"),
        };
        let sql = sql.replace("{where}", &condition).replace("{insertion}", "rowid");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Scope::One(key) = scope {
            query = query.bind(key);
        }
        let mut rows = query.fetch(&mut **self.0);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(db_error)? {
            out.push(convert(&row)?);
        }
        Ok(out)
    }

    async fn cursor(&mut self) -> Result<ChangeCursor, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'directory_changes'")
            .fetch_optional(&mut **self.0)
            .await
            .map_err(db_error)?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }

    async fn pruned_through(&mut self) -> Result<ChangeCursor, StoreError> {
        let through: i64 = sqlx::query_scalar("SELECT through FROM directory_changes_pruned WHERE id = 1")
            .fetch_one(&mut **self.0)
            .await
            .map_err(db_error)?;
        cursor_value(through)
    }

    async fn changes_after(&mut self, after: ChangeCursor) -> Result<Vec<(ChangeCursor, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT seq, kind, key FROM directory_changes WHERE seq > ?1 ORDER BY seq")
            .bind(i64::try_from(after).map_err(corrupt)?)
            .fetch_all(&mut **self.0)
            .await
            .map_err(db_error)?;
        rows.iter().map(|row| Ok((cursor_value(row.get("seq"))?, row.get("kind"), row.get("key")))).collect()
    }
}
