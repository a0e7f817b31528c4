//! The catalogue's storage against PostgreSQL, a fresh database per test.
use loyalty_platform::{ApiError, db::begin_write};
use sea_orm::{EntityTrait, PaginatorTrait};
use uuid::Uuid;

use super::*;
use crate::store::test_support::TestApi;

enum Catalogue {}
type Fixture = TestApi<Catalogue>;

fn group(code: &str, parent: &str) -> ProductGroup {
    let at = now();
    ProductGroup {
        id: Uuid::now_v7(),
        code: code.into(),
        display_name: code.into(),
        parent_group_code: parent.into(),
        revision: 1,
        created_at: at,
        updated_at: at,
    }
}

fn brand(code: &str) -> Brand {
    let at = now();
    Brand {
        id: Uuid::now_v7(),
        code: code.into(),
        display_name: code.into(),
        logo_url: String::new(),
        revision: 1,
        created_at: at,
        updated_at: at,
    }
}

fn spec(code: &str, name: &str, groups: &[&str], brand: &str) -> ProductSpec {
    ProductSpec {
        code: code.into(),
        display_name: name.into(),
        product_group_codes: groups.iter().map(|g| (*g).to_owned()).collect(),
        brand_code: brand.into(),
        list_price: Some((250, "EUR".into())),
        active: true,
        ..Default::default()
    }
}

fn fields(e: &ApiError) -> Vec<String> {
    match e {
        ApiError::InvalidArgument(v) => v.iter().map(|f| f.field.clone()).collect(),
        other => vec![format!("not an invalid argument: {other:?}")],
    }
}

fn reason(e: &ApiError) -> String {
    match e {
        ApiError::FailedPrecondition { reason, .. } => (*reason).to_owned(),
        other => format!("not a precondition: {other:?}"),
    }
}

impl Fixture {
    async fn import(&self, specs: Vec<ProductSpec>) -> Result<ImportCounts, ApiError> {
        let txn = begin_write(&self.db).await?;
        let counts = import_products(&txn, self.partner, specs).await?;
        txn.commit().await?;
        Ok(counts)
    }

    async fn seed(&self) {
        for g in [
            group("food", ""),
            group("drinks", "food"),
            group("coffee", "drinks"),
        ] {
            insert_group(&self.db, self.partner, &g).await.unwrap();
        }
        insert_group(&self.db, self.partner, &group("toys", ""))
            .await
            .unwrap();
        for b in ["acme", "lavazza"] {
            insert_brand(&self.db, self.partner, &brand(b))
                .await
                .unwrap();
        }
    }

    async fn codes(&self, filter: ProductFilter) -> Vec<String> {
        list_products(&self.db, self.partner, &filter, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.spec.code)
            .collect()
    }
}

#[tokio::test]
async fn import_creates_then_a_rerun_changes_nothing_and_a_change_replaces() {
    let f = Fixture::postgres().await;
    f.seed().await;
    let file = vec![
        spec("ESP-1", "Espresso", &["coffee"], "lavazza"),
        spec("TEDDY", "Teddy bear", &["toys"], "acme"),
    ];
    let first = f.import(file.clone()).await.unwrap();
    assert_eq!((first.created, first.updated, first.unchanged), (2, 0, 0));
    let events = loyalty_platform::entities::outbox::Entity::find()
        .count(&f.db)
        .await
        .unwrap();
    assert_eq!(events, 2);

    let again = f.import(file.clone()).await.unwrap();
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 2));
    let events_after = loyalty_platform::entities::outbox::Entity::find()
        .count(&f.db)
        .await
        .unwrap();
    assert_eq!(events_after, 2, "an unchanged re-run publishes nothing");

    let mut changed = file;
    changed[0].display_name = "Espresso doppio".into();
    changed[0].product_group_codes = vec!["drinks".into(), "coffee".into()];
    let third = f.import(changed).await.unwrap();
    assert_eq!((third.created, third.updated, third.unchanged), (0, 1, 1));
    let p = Product::find(&f.db, f.partner, "ESP-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.spec.display_name, "Espresso doppio");
    assert_eq!(
        p.spec.product_group_codes,
        ["drinks", "coffee"],
        "order kept"
    );
    assert_eq!(p.revision, 2);
    let by_id = Product::find(&f.db, f.partner, &p.id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id, p, "a read returns what was written");
}

#[tokio::test]
async fn import_is_all_or_nothing_and_names_each_bad_line() {
    let f = Fixture::postgres().await;
    f.seed().await;
    let err = f
        .import(vec![
            spec("OK-1", "Fine", &["food"], ""),
            spec("BAD 2", "", &[], ""),
            spec("OK-1", "Twice", &[], ""),
        ])
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "products[1].code",
            "products[1].display_name",
            "products[2].code"
        ]
    );
    let err = f
        .import(vec![
            spec("OK-1", "Fine", &["food"], ""),
            spec("OK-2", "Unknown group", &["nope"], "nobrand"),
        ])
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "products[1].product_group_codes[0]",
            "products[1].brand_code"
        ]
    );
    assert!(
        f.codes(ProductFilter::default()).await.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn list_filters_by_group_subtree_brand_text_and_activity_and_pages_by_code() {
    let f = Fixture::postgres().await;
    f.seed().await;
    let mut inactive = spec("OLD", "Old coffee", &["coffee"], "lavazza");
    inactive.active = false;
    f.import(vec![
        spec("ESP-1", "Espresso", &["coffee"], "lavazza"),
        spec("COLA", "Cola 100%", &["drinks"], "acme"),
        spec("BREAD", "Bread", &["food"], ""),
        spec("TEDDY", "Teddy bear", &["toys"], "acme"),
        inactive,
    ])
    .await
    .unwrap();
    let all = |g: &str| ProductFilter {
        product_group_code: Some(g.into()),
        ..Default::default()
    };
    assert_eq!(f.codes(all("food")).await, ["BREAD", "COLA", "ESP-1"]);
    assert_eq!(f.codes(all("drinks")).await, ["COLA", "ESP-1"]);
    assert_eq!(
        f.codes(ProductFilter {
            include_inactive: true,
            ..all("coffee")
        })
        .await,
        ["ESP-1", "OLD"]
    );
    assert_eq!(
        f.codes(ProductFilter {
            brand_code: Some("acme".into()),
            ..Default::default()
        })
        .await,
        ["COLA", "TEDDY"]
    );
    let query = |q: &str| ProductFilter {
        query: Some(q.into()),
        ..Default::default()
    };
    assert_eq!(f.codes(query("esp")).await, ["ESP-1"]);
    assert_eq!(f.codes(query("teddy B")).await, ["TEDDY"]);
    assert!(
        f.codes(query("cola 1_")).await.is_empty(),
        "_ is no wildcard"
    );
    let page = list_products(
        &f.db,
        f.partner,
        &ProductFilter::default(),
        Some("COLA".into()),
        2,
    )
    .await
    .unwrap();
    let codes: Vec<_> = page.iter().map(|p| p.spec.code.as_str()).collect();
    assert_eq!(codes, ["ESP-1", "TEDDY"]);
}

#[tokio::test]
async fn groups_and_brands_in_use_are_not_deleted() {
    let f = Fixture::postgres().await;
    f.seed().await;
    f.import(vec![spec("ESP-1", "Espresso", &["coffee"], "lavazza")])
        .await
        .unwrap();
    let drinks = ProductGroup::find(&f.db, f.partner, "drinks")
        .await
        .unwrap()
        .unwrap();
    let err = drinks.delete(&f.db, f.partner, "").await.unwrap_err();
    assert_eq!(reason(&err), "PRODUCT_GROUP_HAS_CHILDREN");
    let coffee = ProductGroup::find(&f.db, f.partner, "coffee")
        .await
        .unwrap()
        .unwrap();
    let err = coffee.delete(&f.db, f.partner, "").await.unwrap_err();
    assert_eq!(reason(&err), "PRODUCT_GROUP_IN_USE");
    let err = coffee.delete(&f.db, f.partner, "r9").await.unwrap_err();
    assert_eq!(reason(&err), "ETAG_MISMATCH");
    let lavazza = Brand::find(&f.db, f.partner, "lavazza")
        .await
        .unwrap()
        .unwrap();
    let err = lavazza.delete(&f.db, f.partner, "").await.unwrap_err();
    assert_eq!(reason(&err), "BRAND_IN_USE");

    let p = Product::find(&f.db, f.partner, "ESP-1")
        .await
        .unwrap()
        .unwrap();
    p.delete(&f.db, f.partner, "").await.unwrap();
    coffee.delete(&f.db, f.partner, "r1").await.unwrap();
    lavazza.delete(&f.db, f.partner, "").await.unwrap();
    assert!(
        ProductGroup::find(&f.db, f.partner, "coffee")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Brand::find(&f.db, f.partner, "lavazza")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn another_partners_catalogue_is_invisible_and_codes_are_per_partner() {
    let f = Fixture::postgres().await;
    f.seed().await;
    f.import(vec![spec("ESP-1", "Espresso", &[], "")])
        .await
        .unwrap();
    let p = Product::find(&f.db, f.partner, "ESP-1")
        .await
        .unwrap()
        .unwrap();
    let other = Uuid::now_v7();
    assert!(
        Product::find(&f.db, other, "ESP-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Product::find(&f.db, other, &p.id.to_string())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ProductGroup::find(&f.db, other, "food")
            .await
            .unwrap()
            .is_none()
    );
    assert!(Brand::find(&f.db, other, "acme").await.unwrap().is_none());
    // The same code is free in another partner, taken in the same one.
    insert_brand(&f.db, other, &brand("acme")).await.unwrap();
    let err = insert_brand(&f.db, f.partner, &brand("acme"))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::AlreadyExists(_)), "{err:?}");
    let txn = begin_write(&f.db).await.unwrap();
    let counts = import_products(&txn, other, vec![spec("ESP-1", "Theirs", &[], "")])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(counts.created, 1);
}

#[tokio::test]
async fn the_catalogue_works_on_sqlite_too() {
    let f = Fixture::sqlite().await;
    f.seed().await;
    let file = vec![
        spec("ESP-1", "Espresso", &["coffee"], "lavazza"),
        spec("COLA", "Cola 100%", &["drinks"], "acme"),
    ];
    let first = f.import(file.clone()).await.unwrap();
    assert_eq!(first.created, 2);
    assert_eq!(f.import(file).await.unwrap().unchanged, 2);
    let drinks = ProductFilter {
        product_group_code: Some("drinks".into()),
        ..Default::default()
    };
    assert_eq!(f.codes(drinks).await, ["COLA", "ESP-1"]);
    let query = |q: &str| ProductFilter {
        query: Some(q.into()),
        ..Default::default()
    };
    assert_eq!(f.codes(query("cola 100%")).await, ["COLA"]);
    assert!(f.codes(query("cola 1_")).await.is_empty());
    let coffee = ProductGroup::find(&f.db, f.partner, "coffee")
        .await
        .unwrap()
        .unwrap();
    let err = coffee.delete(&f.db, f.partner, "").await.unwrap_err();
    assert_eq!(reason(&err), "PRODUCT_GROUP_IN_USE");
}
