//! API keys: listed without secrets, revoked at once, never the partner's last admin key.
use loyalty_proto::identity::v1 as identity;
use loyalty_testkit::{Backend, Suite, authed};
use tonic::Code;
use tonic_types::StatusExt;

async fn partner(suite: &Suite, name: &str) -> anyhow::Result<String> {
    Ok(suite
        .identity()
        .await?
        .create_partner(authed(
            identity::CreatePartnerRequest {
                idempotency_key: name.into(),
                partner: Some(identity::Partner {
                    display_name: name.into(),
                    default_currency_code: "EUR".into(),
                    ..Default::default()
                }),
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner()
        .partner
        .expect("partner")
        .id)
}

async fn key(
    suite: &Suite,
    partner_id: &str,
    name: &str,
    role: identity::Role,
) -> anyhow::Result<identity::CreateApiKeyResponse> {
    Ok(suite
        .identity()
        .await?
        .create_api_key(authed(
            identity::CreateApiKeyRequest {
                idempotency_key: format!("{partner_id}-{name}"),
                partner_id: partner_id.into(),
                display_name: name.into(),
                roles: vec![role as i32],
            },
            suite.admin_key(),
        ))
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_is_refused_at_once_and_the_last_admin_key_stays() -> anyhow::Result<()> {
    let suite = Suite::start(Backend::Postgres).await?;
    let shop = partner(&suite, "Shop").await?;
    let rival = partner(&suite, "Rival").await?;
    let admin = key(&suite, &shop, "admin", identity::Role::Admin).await?;
    let till = key(&suite, &shop, "till", identity::Role::Pos).await?;
    let rival_admin = key(&suite, &rival, "admin", identity::Role::Admin).await?;
    let mut identity = suite.identity().await?;
    let whoami = |secret: &str| authed(identity::AuthenticateApiKeyRequest {}, secret);

    identity.authenticate_api_key(whoami(&till.secret)).await?;
    let listed = identity
        .list_api_keys(authed(
            identity::ListApiKeysRequest::default(),
            &admin.secret,
        ))
        .await?
        .into_inner();
    assert_eq!(listed.api_keys.len(), 2);
    assert!(
        listed.api_keys.iter().all(|k| k.prefix.len() == 8),
        "prefixes, never secrets"
    );

    let revoke = |secret: &str, idem: &str, id: &str| {
        authed(
            identity::RevokeApiKeyRequest {
                idempotency_key: idem.into(),
                api_key_id: id.into(),
            },
            secret,
        )
    };
    let till_id = till.api_key.clone().expect("key").id;
    let foreign = identity
        .revoke_api_key(revoke(&rival_admin.secret, "r0", &till_id))
        .await
        .expect_err("another partner's key");
    assert_eq!(foreign.code(), Code::NotFound);

    let revoked = identity
        .revoke_api_key(revoke(&admin.secret, "r1", &till_id))
        .await?
        .into_inner()
        .api_key
        .expect("key");
    assert_eq!(revoked.state, identity::ApiKeyState::Revoked as i32);
    let refused = identity
        .authenticate_api_key(whoami(&till.secret))
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let again = identity
        .revoke_api_key(revoke(&admin.secret, "r2", &till_id))
        .await?
        .into_inner()
        .api_key
        .expect("key");
    assert_eq!(
        again.revoke_time, revoked.revoke_time,
        "revoking twice changes nothing"
    );

    let admin_id = admin.api_key.clone().expect("key").id;
    let last = identity
        .revoke_api_key(revoke(&admin.secret, "r3", &admin_id))
        .await
        .expect_err("last admin key");
    assert_eq!(
        last.get_error_details()
            .error_info()
            .expect("reason")
            .reason,
        "LAST_ADMIN_KEY"
    );

    let all = identity
        .list_api_keys(authed(
            identity::ListApiKeysRequest {
                include_revoked: true,
                ..Default::default()
            },
            &admin.secret,
        ))
        .await?
        .into_inner();
    assert_eq!(all.api_keys.len(), 2);
    let active = identity
        .list_api_keys(authed(
            identity::ListApiKeysRequest::default(),
            &admin.secret,
        ))
        .await?
        .into_inner();
    assert_eq!(active.api_keys.len(), 1);
    suite.stop().await
}
