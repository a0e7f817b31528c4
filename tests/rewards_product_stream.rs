//! StreamImportProducts through gRPC, the services running as processes on PostgreSQL: a
//! catalogue streamed in batches is imported batch by batch; refused products are left out and
//! reported by batch and index while the rest is imported; a batch sent again with its key
//! changes nothing; a malformed batch ends the stream, the batches before it stay imported.
use loyalty_proto::{identity::v1 as identity, rewards::v1 as pb};
use loyalty_testkit::{Backend, Suite, authed, violated_fields};
use tonic::{Code, transport::Channel};

type Rewards = pb::rewards_service_client::RewardsServiceClient<Channel>;

fn product(code: &str, group: &str) -> pb::Product {
    pb::Product {
        code: code.into(),
        display_name: format!("{code} product"),
        product_group_codes: if group.is_empty() {
            vec![]
        } else {
            vec![group.into()]
        },
        active: true,
        ..Default::default()
    }
}

fn batch(key: &str, products: Vec<pb::Product>) -> pb::StreamImportProductsRequest {
    pb::StreamImportProductsRequest {
        idempotency_key: key.into(),
        products,
    }
}

async fn stream(
    r: &mut Rewards,
    key: &str,
    batches: Vec<pb::StreamImportProductsRequest>,
) -> Result<pb::StreamImportProductsResponse, tonic::Status> {
    r.stream_import_products(authed(tokio_stream::iter(batches), key))
        .await
        .map(|a| a.into_inner())
}

async fn codes(r: &mut Rewards, key: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = r
            .list_products(authed(
                pb::ListProductsRequest {
                    page_size: 1000,
                    page_token,
                    include_inactive: true,
                    ..Default::default()
                },
                key,
            ))
            .await?
            .into_inner();
        out.extend(page.products.into_iter().map(|p| p.code));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_catalogue_is_imported_batch_by_batch() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let (_, key) = suite
        .partner_with_key("Streaming grocer", &[identity::Role::Admin])
        .await?;
    let mut r = suite.rewards().await?;
    r.create_product_group(authed(
        pb::CreateProductGroupRequest {
            idempotency_key: "group-food".into(),
            product_group: Some(pb::ProductGroup {
                code: "food".into(),
                display_name: "Food".into(),
                ..Default::default()
            }),
        },
        &key,
    ))
    .await?;

    // 2,500 products in three batches; in the second, one product has no name and one names
    // an unknown group: both are reported, the other 998 of that batch are imported.
    let all: Vec<pb::Product> = (0..2_500)
        .map(|i| product(&format!("P{i:05}"), "food"))
        .collect();
    let mut second: Vec<pb::Product> = all[1000..2000].to_vec();
    second[3].display_name = String::new();
    second[7].product_group_codes = vec!["nope".into()];
    let batches = vec![
        batch("b0", all[..1000].to_vec()),
        batch("b1", second.clone()),
        batch("b2", all[2000..].to_vec()),
    ];
    let answer = stream(&mut r, &key, batches).await?;
    assert_eq!(answer.batch_count, 3);
    assert_eq!(
        (
            answer.created_count,
            answer.updated_count,
            answer.unchanged_count
        ),
        (2_498, 0, 0)
    );
    let refused: Vec<(i32, i32, &str)> = answer
        .refusals
        .iter()
        .map(|f| (f.batch_index, f.product_index, f.field.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (1, 3, "product.display_name"),
            (1, 7, "product.product_group_codes[0]")
        ]
    );
    let stored = codes(&mut r, &key).await?;
    assert_eq!(stored.len(), 2_498);
    assert!(!stored.contains(&"P01003".to_owned()));
    assert!(!stored.contains(&"P01007".to_owned()));

    // The second batch sent again with its key (a resumed stream) changes nothing again and
    // reports the same refusals; a new batch with a fixed product updates nothing else.
    second[3].display_name = "Fixed".into();
    second[7].product_group_codes = vec!["food".into()];
    let again = stream(
        &mut r,
        &key,
        vec![
            batch("b1", all[1000..2000].to_vec()),
            batch("b1-fixed", second),
        ],
    )
    .await;
    // The first message reuses "b1" with other products: refused as a reused key.
    let reused = again.expect_err("b1 reused for other products");
    assert_eq!(reused.code(), Code::AlreadyExists);

    let mut b1 = all[1000..2000].to_vec();
    b1[3].display_name = String::new();
    b1[7].product_group_codes = vec!["nope".into()];
    let mut fixed = b1.clone();
    fixed[3].display_name = "Fixed".into();
    fixed[7].product_group_codes = vec!["food".into()];
    let resumed = stream(
        &mut r,
        &key,
        vec![batch("b1", b1), batch("b1-fixed", fixed)],
    )
    .await?;
    assert_eq!(resumed.batch_count, 2);
    assert_eq!(
        (
            resumed.created_count,
            resumed.updated_count,
            resumed.unchanged_count
        ),
        // b1 answers its stored counts (998 created); the fixed batch creates the 2 refused
        // products and finds the 998 others unchanged.
        (998 + 2, 0, 998)
    );
    assert_eq!(resumed.refusals.len(), 2, "{:?}", resumed.refusals);
    assert_eq!(codes(&mut r, &key).await?.len(), 2_500);

    // A malformed batch ends the stream; the batch before it stays imported.
    let err = stream(
        &mut r,
        &key,
        vec![
            batch("c0", vec![product("NEW-1", "")]),
            batch("", vec![product("NEW-2", "")]),
        ],
    )
    .await
    .expect_err("no key");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["batches[1].idempotency_key"]);
    let stored = codes(&mut r, &key).await?;
    assert!(stored.contains(&"NEW-1".to_owned()));
    assert!(!stored.contains(&"NEW-2".to_owned()));
    Ok(())
}
