//! The points types cached by each replica: a change made elsewhere (another replica's
//! catalogue, not this process's) is caught by the revision under the wallet lock.
use chrono::Duration;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use super::{Fixture, TypeSpec, at, reason};
use crate::domain::rules::ExpiryRule;
use crate::store::{entities::points_types as types, ops::Target};

/// What another replica's catalogue writes: the row and a new revision.
async fn change_elsewhere(f: &Fixture, id: Uuid, col: types::Column, value: sea_orm::Value) {
    types::Entity::update_many()
        .col_expr(col, Expr::value(value))
        .col_expr(
            types::Column::Revision,
            Expr::col(types::Column::Revision).add(1),
        )
        .filter(types::Column::Id.eq(id))
        .exec(&f.db)
        .await
        .expect("update type");
}

#[tokio::test]
async fn a_points_type_changed_by_another_replica_applies_to_the_next_operation() {
    let f = Fixture::postgres().await;
    let now = at("2026-01-10T10:00:00Z");
    let first = f.points_type(TypeSpec::default(), now).await;
    let customer = Uuid::now_v7();
    let by_default = Target {
        points_type: String::new(),
        ..f.target(customer, &first, now)
    };
    let by_code = Target {
        points_type: "points".into(),
        ..by_default.clone()
    };
    // Both names are cached now.
    f.award(&by_default, 10, None, None).await.unwrap();
    f.award(&by_code, 10, None, None).await.unwrap();

    // New rules: the next award's lot expires after 30 days.
    let (rule, days, _) = ExpiryRule::RollingDays(30).to_parts();
    change_elsewhere(&f, first.id, types::Column::ExpiryRule, rule.into()).await;
    change_elsewhere(&f, first.id, types::Column::ValidityDays, days.into()).await;
    let posted = f.award(&by_default, 5, None, None).await.unwrap();
    let (_, lot) = posted.postings[0].lot.clone().expect("a lot");
    assert_eq!(lot.expire_at, Some(now + Duration::days(30)));

    // Deactivated: refused at once.
    change_elsewhere(&f, first.id, types::Column::Active, false.into()).await;
    let refused = f.award(&by_code, 5, None, None).await.unwrap_err();
    assert_eq!(reason(&refused), "POINTS_TYPE_INACTIVE");
    change_elsewhere(&f, first.id, types::Column::Active, true.into()).await;

    // Points of the old default that expire before the next call: that call locks (and
    // settles) the old default's wallet before it learns the default moved.
    f.award(&by_default, 3, Some(now + Duration::days(1)), None)
        .await
        .unwrap();
    let later = now + Duration::days(2);

    // Another type became the default: awards naming none go there.
    let second = f
        .points_type(
            TypeSpec {
                code: "stars",
                is_default: false,
                ..TypeSpec::default()
            },
            now,
        )
        .await;
    change_elsewhere(&f, first.id, types::Column::IsDefault, false.into()).await;
    change_elsewhere(&f, second.id, types::Column::IsDefault, true.into()).await;
    let by_default = Target {
        now: later,
        ..by_default
    };
    let posted = f.award(&by_default, 7, None, None).await.unwrap();
    assert_eq!(posted.wallet.points_type_id, second.id);
    assert_eq!(posted.wallet.available, 7);
    f.assert_balanced().await;

    // A renamed code means the type that has it now.
    change_elsewhere(&f, first.id, types::Column::Code, "old-points".into()).await;
    change_elsewhere(&f, second.id, types::Column::Code, "points".into()).await;
    let by_code = Target {
        now: later,
        ..by_code
    };
    let posted = f.award(&by_code, 1, None, None).await.unwrap();
    assert_eq!(posted.wallet.points_type_id, second.id);
    // 10 + 10 + 5 stay; the 3 expired.
    assert_eq!(f.figures(customer, &first, later).await[0], 25);
    f.assert_balanced().await;
}
