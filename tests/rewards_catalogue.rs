//! The rewards service's product catalogue through gRPC and the CLI: product groups, brands and
//! products created, read, listed, updated and deleted; validation naming every bad field;
//! groups and brands in use kept; other partners' ids not found; ImportProducts all or nothing
//! and idempotent; `loyalty import products` reporting refused lines and changing nothing on a
//! re-run.
use loyalty_proto::{identity::v1 as identity, rewards::v1 as pb, types::v1::Money};
use loyalty_testkit::{Backend, Suite, authed, error_reason, violated_fields};
use prost_types::FieldMask;
use tonic::{Code, Status, transport::Channel};

type Rewards = pb::rewards_service_client::RewardsServiceClient<Channel>;

fn fails<T: std::fmt::Debug>(r: Result<T, Status>) -> Status {
    r.expect_err("the call should have been refused")
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn product(code: &str, groups: &[&str], brand: &str) -> pb::Product {
    pb::Product {
        code: code.into(),
        display_name: format!("{code} product"),
        product_group_codes: groups.iter().map(|g| g.to_string()).collect(),
        brand_code: brand.into(),
        list_price: Some(Money {
            currency_code: "EUR".into(),
            amount_minor: 250,
        }),
        active: true,
        ..Default::default()
    }
}

async fn create_group(
    r: &mut Rewards,
    key: &str,
    code: &str,
    parent: &str,
) -> Result<pb::ProductGroup, Status> {
    Ok(r.create_product_group(authed(
        pb::CreateProductGroupRequest {
            idempotency_key: format!("group-{code}"),
            product_group: Some(pb::ProductGroup {
                code: code.into(),
                display_name: code.into(),
                parent_group_code: parent.into(),
                ..Default::default()
            }),
        },
        key,
    ))
    .await?
    .into_inner()
    .product_group
    .expect("group"))
}

async fn create_brand(r: &mut Rewards, key: &str, code: &str) -> Result<pb::Brand, Status> {
    Ok(r.create_brand(authed(
        pb::CreateBrandRequest {
            idempotency_key: format!("brand-{code}"),
            brand: Some(pb::Brand {
                code: code.into(),
                display_name: code.into(),
                ..Default::default()
            }),
        },
        key,
    ))
    .await?
    .into_inner()
    .brand
    .expect("brand"))
}

async fn create_product(r: &mut Rewards, key: &str, p: pb::Product) -> Result<pb::Product, Status> {
    Ok(r.create_product(authed(
        pb::CreateProductRequest {
            idempotency_key: format!("product-{}-{}", p.code, p.display_name),
            product: Some(p),
        },
        key,
    ))
    .await?
    .into_inner()
    .product
    .expect("product"))
}

async fn list_codes(r: &mut Rewards, key: &str, req: pb::ListProductsRequest) -> Vec<String> {
    r.list_products(authed(req, key))
        .await
        .expect("list")
        .into_inner()
        .products
        .into_iter()
        .map(|p| p.code)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalogue_is_managed_validated_and_kept_per_partner() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Cafe", &[identity::Role::Marketing])
        .await?;
    let (_, rival) = suite
        .partner_with_key("Rival", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;

    create_group(&mut r, &key, "drinks", "").await?;
    let coffee = create_group(&mut r, &key, "coffee", "drinks").await?;
    let err = fails(create_group(&mut r, &key, "tea", "nope").await);
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let lavazza = create_brand(&mut r, &key, "lavazza").await?;

    // Validation names every bad field.
    let err = fails(
        create_product(
            &mut r,
            &key,
            pb::Product {
                code: "HAS SPACE".into(),
                display_name: String::new(),
                barcodes: vec!["12".into()],
                list_price: Some(Money {
                    currency_code: "eur".into(),
                    amount_minor: -1,
                }),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        [
            "product.code",
            "product.display_name",
            "product.list_price.amount_minor",
            "product.list_price.currency_code",
            "product.barcodes[0]",
        ]
    );
    let err = fails(create_product(&mut r, &key, product("X", &["nope"], "nobrand")).await);
    assert_eq!(
        violated_fields(&err),
        ["product.product_group_codes[0]", "product.brand_code"]
    );

    // Create, read by code and UUID, duplicate code.
    let esp = create_product(&mut r, &key, product("ESP-1", &["coffee"], "lavazza")).await?;
    assert_eq!(esp.etag, "r1");
    let again = create_product(&mut r, &key, product("ESP-1", &["coffee"], "lavazza")).await?;
    assert_eq!(again.id, esp.id, "a retry answers the same");
    let mut dup = product("ESP-1", &[], "");
    dup.display_name = "Other".into();
    let err = fails(create_product(&mut r, &key, dup).await);
    assert_eq!(err.code(), Code::AlreadyExists);
    let got = r
        .get_product(authed(
            pb::GetProductRequest {
                product_id: "ESP-1".into(),
            },
            &key,
        ))
        .await?
        .into_inner()
        .product
        .expect("product");
    assert_eq!(got, esp);
    create_product(&mut r, &key, product("COLA", &["drinks"], "")).await?;
    assert_eq!(
        list_codes(
            &mut r,
            &key,
            pb::ListProductsRequest {
                product_group_code: "drinks".into(),
                ..Default::default()
            }
        )
        .await,
        ["COLA", "ESP-1"],
        "a group lists its sub-groups' products"
    );
    let page = r
        .list_products(authed(
            pb::ListProductsRequest {
                page_size: 1,
                ..Default::default()
            },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(page.products[0].code, "COLA");
    assert!(!page.next_page_token.is_empty());

    // Update with a mask and etags.
    let update = |etag: &str, name: &str, paths: &[&str]| {
        authed(
            pb::UpdateProductRequest {
                idempotency_key: format!("update-{etag}-{name}-{}", paths.join(",")),
                product: Some(pb::Product {
                    id: esp.id.clone(),
                    display_name: name.into(),
                    ..Default::default()
                }),
                update_mask: mask(paths),
                etag: etag.into(),
            },
            &key,
        )
    };
    let updated = r
        .update_product(update("r1", "Espresso", &["display_name"]))
        .await?
        .into_inner()
        .product
        .expect("product");
    assert_eq!(updated.display_name, "Espresso");
    assert_eq!(
        updated.product_group_codes,
        ["coffee"],
        "unmasked fields stay"
    );
    assert_eq!(updated.etag, "r2");
    let err = fails(
        r.update_product(update("r1", "Stale", &["display_name"]))
            .await,
    );
    assert_eq!(error_reason(&err), "ETAG_MISMATCH");
    let err = fails(r.update_product(update("", "X", &["code"])).await);
    assert_eq!(violated_fields(&err), ["update_mask"]);

    // Groups and brands in use stay; cycles are refused.
    let del_group = |id: &str, idem: &str| {
        authed(
            pb::DeleteProductGroupRequest {
                idempotency_key: idem.into(),
                product_group_id: id.into(),
                etag: String::new(),
            },
            &key,
        )
    };
    let err = fails(r.delete_product_group(del_group(&coffee.id, "dg1")).await);
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&err), "PRODUCT_GROUP_IN_USE");
    let err = fails(r.delete_product_group(del_group("drinks", "dg2")).await);
    assert_eq!(error_reason(&err), "PRODUCT_GROUP_HAS_CHILDREN");
    let err = fails(
        r.update_product_group(authed(
            pb::UpdateProductGroupRequest {
                idempotency_key: "cycle".into(),
                product_group: Some(pb::ProductGroup {
                    id: "drinks".into(),
                    parent_group_code: "coffee".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["parent_group_code"]),
                etag: String::new(),
            },
            &key,
        ))
        .await,
    );
    assert_eq!(error_reason(&err), "PRODUCT_GROUP_CYCLE");
    let err = fails(
        r.delete_brand(authed(
            pb::DeleteBrandRequest {
                idempotency_key: "db1".into(),
                brand_id: lavazza.id.clone(),
                etag: String::new(),
            },
            &key,
        ))
        .await,
    );
    assert_eq!(error_reason(&err), "BRAND_IN_USE");

    // Another partner sees nothing of it and cannot change it.
    let err = fails(
        r.get_product(authed(
            pb::GetProductRequest {
                product_id: esp.id.clone(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    let err = fails(
        r.delete_product(authed(
            pb::DeleteProductRequest {
                idempotency_key: "steal".into(),
                product_id: esp.id.clone(),
                etag: String::new(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    let err = fails(
        r.get_brand(authed(
            pb::GetBrandRequest {
                brand_id: lavazza.id.clone(),
            },
            &rival,
        ))
        .await,
    );
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        list_codes(&mut r, &rival, Default::default())
            .await
            .is_empty()
    );

    // Deleting the product frees its group and brand.
    r.delete_product(authed(
        pb::DeleteProductRequest {
            idempotency_key: "del-esp".into(),
            product_id: esp.id.clone(),
            etag: "r2".into(),
        },
        &key,
    ))
    .await?;
    r.delete_product_group(del_group("coffee", "dg3")).await?;
    r.delete_brand(authed(
        pb::DeleteBrandRequest {
            idempotency_key: "db2".into(),
            brand_id: "lavazza".into(),
            etag: lavazza.etag.clone(),
        },
        &key,
    ))
    .await?;
    let groups = r
        .list_product_groups(authed(pb::ListProductGroupsRequest::default(), &key))
        .await?
        .into_inner()
        .product_groups;
    assert_eq!(groups.len(), 1);
    Ok(())
}

fn import_cli(suite: &Suite, key: &str, file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(["import", "products", "--quiet", "--endpoint"])
        .arg(suite.endpoint("rewards"))
        .arg(file)
        .env("LOYALTY_API_KEY", key)
        .output()
        .expect("run loyalty import products")
}

#[tokio::test(flavor = "multi_thread")]
async fn products_are_imported_by_rpc_and_by_the_cli_idempotently() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Grocer", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;
    create_group(&mut r, &key, "food", "").await?;
    create_brand(&mut r, &key, "acme").await?;

    // The RPC: all or nothing, bad products named by index.
    let import = |idem: &str, products: Vec<pb::Product>| {
        authed(
            pb::ImportProductsRequest {
                idempotency_key: idem.into(),
                products,
            },
            &key,
        )
    };
    let err = fails(
        r.import_products(import(
            "bad",
            vec![product("A", &["food"], ""), product("B", &["nope"], "acme")],
        ))
        .await,
    );
    assert_eq!(
        violated_fields(&err),
        ["products[1].product_group_codes[0]"]
    );
    let batch = vec![product("A", &["food"], ""), product("B", &[], "acme")];
    let first = r
        .import_products(import("one", batch.clone()))
        .await?
        .into_inner();
    assert_eq!((first.created_count, first.updated_count), (2, 0));
    let rerun = r.import_products(import("two", batch)).await?.into_inner();
    assert_eq!(
        (
            rerun.created_count,
            rerun.updated_count,
            rerun.unchanged_count
        ),
        (0, 0, 2)
    );

    // The CLI: bad lines reported by line number and field, the rest imported.
    let file = suite.dir().join("products.csv");
    std::fs::write(
        &file,
        "code,display_name,product_group_codes,brand_code,list_price_minor,currency_code,active\n\
         A,Apples,food,,120,EUR,true\n\
         C,Cheese,food,acme,450,EUR,\n\
         D,,food,,100,EUR,true\n\
         E,Eggs,unknown,,100,EUR,true\n\
         F,Flour,,,abc,EUR,true\n\
         G,Grapes,food,,300,EUR,no\n",
    )?;
    let out = import_cli(&suite, &key, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused lines fail the command");
    assert!(
        stdout.contains("2 created, 1 updated, 0 unchanged, 3 refused"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("line 4: product.display_name"), "{stderr}");
    assert!(
        stderr.contains("line 5: product.product_group_codes[0]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 6: product.list_price.amount_minor"),
        "{stderr}"
    );

    // A re-run changes nothing.
    let out = import_cli(&suite, &key, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 created, 0 updated, 3 unchanged, 3 refused"),
        "{stdout}"
    );
    let all = list_codes(
        &mut r,
        &key,
        pb::ListProductsRequest {
            include_inactive: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all, ["A", "B", "C", "G"]);
    let active = list_codes(&mut r, &key, Default::default()).await;
    assert_eq!(active, ["A", "B", "C"], "G was imported inactive");
    Ok(())
}
