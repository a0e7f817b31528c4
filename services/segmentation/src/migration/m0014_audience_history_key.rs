//! Audience history keyed by audience and id. A member selected at an audience's creation has
//! no history row while they stay (the member row holds the entry: time and cause); when they
//! leave, the entry is written with the customer's id as its id, so the id a reader saw
//! before does not change. Those ids repeat across audiences, hence the audience in the key.
use sea_orm_migration::prelude::*;

use super::m0009_audiences::{AudienceHistory, history_indexes, history_table};

pub(super) struct AudienceHistoryKey;

impl MigrationName for AudienceHistoryKey {
    fn name(&self) -> &str {
        "m0014_audience_history_key"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AudienceHistoryKey {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        rekey(m, &[AudienceHistory::AudienceId, AudienceHistory::Id]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        rekey(m, &[AudienceHistory::Id]).await
    }
}

async fn rekey(m: &SchemaManager<'_>, key: &[AudienceHistory]) -> Result<(), DbErr> {
    let db = m.get_connection();
    match m.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let columns: Vec<String> = key
                .iter()
                .map(|k| format!("\"{}\"", k.to_string()))
                .collect();
            db.execute_unprepared(&format!(
                "ALTER TABLE \"audience_history\" DROP CONSTRAINT \"audience_history_pkey\", \
                 ADD PRIMARY KEY ({})",
                columns.join(", ")
            ))
            .await?;
        }
        // SQLite cannot change a primary key: the table is copied into a new one. One batch,
        // so one connection: another pooled connection's cached schema could still show the
        // old table and indexes.
        _ => {
            let mut batch = vec![
                history_table(Alias::new("audience_history_next"), key)
                    .to_string(SqliteQueryBuilder),
                "INSERT INTO \"audience_history_next\" SELECT \"id\", \"partner_id\", \
                 \"audience_id\", \"customer_id\", \"change\", \"at\", \"cause\", \
                 \"audience_display_name\" FROM \"audience_history\""
                    .to_owned(),
                "DROP TABLE \"audience_history\"".to_owned(),
                "ALTER TABLE \"audience_history_next\" RENAME TO \"audience_history\"".to_owned(),
            ];
            batch.extend(
                history_indexes()
                    .iter()
                    .map(|i| i.to_string(SqliteQueryBuilder)),
            );
            db.execute_unprepared(&batch.join(";\n")).await?;
        }
    }
    Ok(())
}
