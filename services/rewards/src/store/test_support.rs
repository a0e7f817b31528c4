//! What the store tests share: a fresh, migrated database (PostgreSQL or SQLite), the service's
//! own API object on it, a partner, and the requests and rows most tests need.
//!
//! Each test file names its fixture `type Fixture = TestApi<Marker>;` with a marker type of its
//! own (`enum Marker {}`), and adds the helpers only it needs in `impl Fixture { … }`: the marker
//! keeps one file's helpers from clashing with another file's of the same name.
use std::marker::PhantomData;

use loyalty_platform::{Role, auth::Principal};
use loyalty_proto::rewards::v1::{self as pb, rewards_service_server::RewardsService};
use loyalty_testkit::TestDb;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use sea_orm_migration::MigratorTrait;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::{api::RewardsApi, migration::Migrator};

/// A fresh idempotency key.
pub(crate) fn key() -> String {
    Uuid::now_v7().to_string()
}

/// A request carrying the principal of `partner` with `role`, as the auth layer would attach it.
pub(crate) fn request<T>(partner: Uuid, role: Role, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.extensions_mut().insert(Principal {
        partner_id: Some(partner),
        api_key_id: None,
        roles: vec![role],
        platform_admin: false,
        credential: secrecy::SecretString::from("test".to_owned()),
    });
    r
}

/// The rewards API on a migrated database of its own, and a partner to act as.
pub(crate) struct TestApi<Marker> {
    pub(crate) api: RewardsApi,
    pub(crate) db: DatabaseConnection,
    pub(crate) partner: Uuid,
    /// Drops the PostgreSQL database with the fixture; `None` on SQLite and for a second partner.
    _test_db: Option<TestDb>,
    _marker: PhantomData<Marker>,
}

impl<Marker> TestApi<Marker> {
    /// A fresh PostgreSQL database (127.0.0.1:5432), migrated, dropped with the fixture.
    pub(crate) async fn postgres() -> Self {
        let test_db = TestDb::postgres()
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        let db = Database::connect(test_db.url()).await.expect("connect");
        Self::migrated(db, Some(test_db)).await
    }

    /// SQLite in memory on one connection (every connection would otherwise be its own database).
    pub(crate) async fn sqlite() -> Self {
        let mut opts = ConnectOptions::new("sqlite::memory:");
        opts.max_connections(1).min_connections(1);
        let db = Database::connect(opts).await.expect("connect");
        Self::migrated(db, None).await
    }

    async fn migrated(db: DatabaseConnection, test_db: Option<TestDb>) -> Self {
        Migrator::up(&db, None).await.expect("migrate");
        Self {
            api: RewardsApi::new(db.clone()),
            db,
            partner: Uuid::now_v7(),
            _test_db: test_db,
            _marker: PhantomData,
        }
    }

    /// The PostgreSQL database's URL (`None` on SQLite and for a second partner).
    pub(crate) fn database_url(&self) -> Option<String> {
        self._test_db.as_ref().map(TestDb::url)
    }

    /// Another partner on the same database and a service instance of its own.
    pub(crate) fn another_partner(&self) -> Self {
        Self {
            api: RewardsApi::new(self.db.clone()),
            db: self.db.clone(),
            partner: Uuid::now_v7(),
            _test_db: None,
            _marker: PhantomData,
        }
    }

    /// Creates `reward` as an admin of this partner.
    pub(crate) async fn create_reward(&self, reward: pb::Reward) -> Result<pb::Reward, Status> {
        Ok(self
            .api
            .create_reward(request(
                self.partner,
                Role::Admin,
                pb::CreateRewardRequest {
                    idempotency_key: key(),
                    reward: Some(reward),
                },
            ))
            .await?
            .into_inner()
            .reward
            .expect("reward"))
    }

    /// Issues a voucher of `reward_id` to `customer` (source: campaign) as an admin.
    pub(crate) async fn issue(
        &self,
        reward_id: &str,
        customer: Uuid,
    ) -> Result<pb::Voucher, Status> {
        Ok(self
            .api
            .issue_voucher(request(
                self.partner,
                Role::Admin,
                pb::IssueVoucherRequest {
                    idempotency_key: key(),
                    reward_id: reward_id.into(),
                    customer_id: customer.to_string(),
                    source: pb::VoucherSource::Campaign as i32,
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .voucher
            .expect("voucher"))
    }

    /// The column `n` of the one row `sql` returns.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        self.db
            .query_one(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("query")
            .expect("row")
            .try_get::<i64>("", "n")
            .expect("n")
    }

    /// How many events of `event_type` the outbox holds (every partner's).
    pub(crate) async fn events(&self, event_type: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) AS n FROM outbox WHERE event_type = '{event_type}'"
        ))
        .await
    }
}
