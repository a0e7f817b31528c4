//! Database connections: PostgreSQL (one schema per service) or SQLite, chosen by URL, and
//! the tables every service has (outbox, consumed events, idempotency keys).
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use secrecy::ExposeSecret;

use crate::config::Settings;

/// Connects, retrying for up to 30 s (the database may start after the service), and for
/// PostgreSQL creates the service's schema and puts it first on the search path.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database.url.expose_secret().to_owned();
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite {
        ensure_sqlite_dir(&url)?;
    }
    let schema = settings.schema();
    if !is_sqlite
        && !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        anyhow::bail!("database.schema must be [A-Za-z0-9_]+, got {schema:?}");
    }
    let mut opts = ConnectOptions::new(url.clone());
    opts.max_connections(settings.database.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        // Well inside a call's deadline: a database that is down (or a pool that is full)
        // answers UNAVAILABLE rather than running the caller into DEADLINE_EXCEEDED.
        .acquire_timeout(Duration::from_millis(
            (settings.server.request_timeout_ms / 2).clamp(250, 5_000),
        ))
        .sqlx_logging(false);
    if !is_sqlite {
        opts.set_schema_search_path(schema.clone());
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let db = loop {
        match Database::connect(opts.clone()).await {
            Ok(db) => break db,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("connecting to the database")),
        }
    };
    match db.get_database_backend() {
        DbBackend::Postgres => {
            db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await?;
        }
        DbBackend::Sqlite => {
            db.execute_unprepared("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
                .await?;
        }
        DbBackend::MySql => anyhow::bail!("MySQL is not supported"),
    }
    Ok(db)
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    Ok(())
}

/// Connects and runs the service's migrations.
pub async fn connect_and_migrate<M: MigratorTrait>(
    settings: &Settings,
) -> anyhow::Result<DatabaseConnection> {
    let db = connect(settings).await?;
    M::up(&db, None)
        .await
        .map_err(|e| anyhow::Error::new(e).context("running migrations"))?;
    Ok(db)
}

/// Begins a transaction that is going to write. On SQLite it takes the write lock at once (what
/// `BEGIN IMMEDIATE` does), waiting for it up to the busy timeout: a plain `BEGIN` followed by
/// a read and then a write fails at once with "database is locked" when another connection
/// committed in between, because SQLite cannot upgrade a stale read snapshot. On PostgreSQL it
/// is a plain `BEGIN`.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // A write statement as the first one takes the write lock (and the busy handler
        // waits for it); this one changes nothing.
        txn.execute_unprepared("DELETE FROM idempotency_keys WHERE 0 = 1")
            .await?;
    }
    Ok(txn)
}

/// True when a database error is a unique-constraint violation (a lost race on insert).
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// A unique-constraint violation as ALREADY_EXISTS naming what was taken (e.g. `brand with
/// code "acme"`); any other error as it is.
pub fn taken(e: sea_orm::DbErr, what: impl FnOnce() -> String) -> crate::ApiError {
    if is_unique_violation(&e) {
        crate::ApiError::AlreadyExists(what())
    } else {
        e.into()
    }
}

/// Takes a PostgreSQL advisory lock on `key` until the transaction ends; SQLite serialises
/// write transactions already, so there it does nothing.
pub async fn advisory_xact_lock(
    conn: &impl ConnectionTrait,
    key: &str,
) -> Result<(), sea_orm::DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute(sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [key.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Declares a service's `Migrator`: the platform's common tables first, then the service's
/// own migrations in order.
#[macro_export]
macro_rules! migrator {
    ($($migration:expr),* $(,)?) => {
        pub struct Migrator;

        impl ::sea_orm_migration::MigratorTrait for Migrator {
            fn migrations() -> Vec<Box<dyn ::sea_orm_migration::MigrationTrait>> {
                vec![
                    Box::new($crate::db::migration::CommonTables),
                    Box::new($crate::db::migration::OutboxPendingIndex),
                    $(Box::new($migration)),*
                ]
            }
        }
    };
}

/// Migrations of the tables every service owns, to be listed first by each service's migrator.
pub mod migration {
    use sea_orm_migration::{prelude::*, schema::*};

    pub struct CommonTables;

    /// The outbox relay asks for the oldest unpublished events. A partial index of exactly
    /// those keeps the question cheap however many published rows the table holds; the first
    /// index (on published_at, sequence) let PostgreSQL's planner walk the primary key past
    /// every published row instead (140 ms per batch at 200,000 rows).
    pub struct OutboxPendingIndex;

    impl MigrationName for OutboxPendingIndex {
        fn name(&self) -> &str {
            "m0000_platform_outbox_pending_index"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for OutboxPendingIndex {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            let db = m.get_connection();
            db.execute_unprepared("DROP INDEX IF EXISTS outbox_unpublished")
                .await?;
            db.execute_unprepared(
                "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sequence) \
                 WHERE published_at IS NULL",
            )
            .await?;
            Ok(())
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            let db = m.get_connection();
            db.execute_unprepared("DROP INDEX IF EXISTS outbox_pending")
                .await?;
            db.execute_unprepared(
                "CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (published_at, sequence)",
            )
            .await?;
            Ok(())
        }
    }

    impl MigrationName for CommonTables {
        fn name(&self) -> &str {
            "m0000_platform_common_tables"
        }
    }

    #[derive(DeriveIden)]
    enum Outbox {
        Table,
        Sequence,
        EventId,
        EventType,
        PartnerId,
        Payload,
        Traceparent,
        OccurredAt,
        PublishedAt,
    }

    #[derive(DeriveIden)]
    enum ConsumedEvents {
        Table,
        Consumer,
        EventId,
        ConsumedAt,
    }

    #[derive(DeriveIden)]
    enum ConsumerCursors {
        Table,
        Source,
        Position,
    }

    #[derive(DeriveIden)]
    enum IdempotencyKeys {
        Table,
        PartnerId,
        Operation,
        Key,
        RequestHash,
        Response,
        CreatedAt,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CommonTables {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(big_integer(Outbox::Sequence).auto_increment().primary_key())
                    .col(uuid_uniq(Outbox::EventId))
                    .col(string(Outbox::EventType))
                    .col(uuid_null(Outbox::PartnerId))
                    .col(blob(Outbox::Payload))
                    .col(string(Outbox::Traceparent))
                    .col(timestamp_with_time_zone(Outbox::OccurredAt))
                    .col(timestamp_with_time_zone_null(Outbox::PublishedAt))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("outbox_unpublished")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Sequence)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table(ConsumedEvents::Table)
                    .if_not_exists()
                    .col(string(ConsumedEvents::Consumer))
                    .col(uuid(ConsumedEvents::EventId))
                    .col(timestamp_with_time_zone(ConsumedEvents::ConsumedAt))
                    .primary_key(
                        Index::create()
                            .col(ConsumedEvents::Consumer)
                            .col(ConsumedEvents::EventId),
                    )
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table(ConsumerCursors::Table)
                    .if_not_exists()
                    .col(string(ConsumerCursors::Source).primary_key())
                    .col(big_integer(ConsumerCursors::Position))
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(uuid(IdempotencyKeys::PartnerId))
                    .col(string(IdempotencyKeys::Operation))
                    .col(string(IdempotencyKeys::Key))
                    .col(string(IdempotencyKeys::RequestHash))
                    .col(blob(IdempotencyKeys::Response))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::PartnerId)
                            .col(IdempotencyKeys::Operation)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            for t in [
                Outbox::Table.into_iden(),
                ConsumedEvents::Table.into_iden(),
                ConsumerCursors::Table.into_iden(),
                IdempotencyKeys::Table.into_iden(),
            ] {
                m.drop_table(Table::drop().table(t).if_exists().to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    async fn cursor_rows(c: &impl ConnectionTrait) -> i64 {
        let row = c
            .query_one(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT COUNT(*) AS n FROM consumer_cursors",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    async fn insert_cursor(c: &impl ConnectionTrait, source: &str) -> Result<(), sea_orm::DbErr> {
        c.execute_unprepared(&format!(
            "INSERT INTO consumer_cursors (source, position) VALUES ('{source}', 1)"
        ))
        .await
        .map(|_| ())
    }

    #[tokio::test]
    async fn on_sqlite_a_write_transaction_that_reads_first_survives_a_concurrent_commit() {
        let (_dir, db) = super::testing::sqlite().await;
        let txn = super::begin_write(&db).await.unwrap();
        assert_eq!(cursor_rows(&txn).await, 0);
        // Another connection writes meanwhile: it waits for the lock instead of slipping in.
        let other = {
            let db = db.clone();
            tokio::spawn(async move { insert_cursor(&db, "other").await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        insert_cursor(&txn, "mine")
            .await
            .expect("the write after the read");
        txn.commit().await.unwrap();
        other.await.unwrap().expect("the other writer went after");
        assert_eq!(cursor_rows(&db).await, 2);
    }
}

/// Throw-away databases for unit tests of the platform itself.
#[cfg(test)]
pub(crate) mod testing {
    use sea_orm::DatabaseConnection;
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    pub struct CommonOnly;

    impl MigratorTrait for CommonOnly {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(super::migration::CommonTables)]
        }
    }

    /// A migrated SQLite database in a temporary directory (kept while the guard lives).
    pub async fn sqlite() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = crate::config::Settings::defaults("test", 0);
        settings.database.url =
            format!("sqlite://{}/test.db?mode=rwc", dir.path().display()).into();
        let db = super::connect_and_migrate::<CommonOnly>(&settings)
            .await
            .expect("sqlite");
        (dir, db)
    }
}
