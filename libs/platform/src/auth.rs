//! API-key authentication: the key in `authorization: Bearer <key>` becomes a [`Principal`]
//! (one partner and its roles). Keys are stored as SHA-256 hashes; the platform admin
//! (bootstrap) key comes from configuration.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;

/// A role an API key grants (mirrors `loyalty.identity.v1.Role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Admin,
    Pos,
    Marketing,
    Support,
    Service,
}

impl Role {
    pub fn from_proto(v: i32) -> Option<Role> {
        use loyalty_proto::identity::v1::Role as P;
        match P::try_from(v).ok()? {
            P::Admin => Some(Role::Admin),
            P::Pos => Some(Role::Pos),
            P::Marketing => Some(Role::Marketing),
            P::Support => Some(Role::Support),
            P::Service => Some(Role::Service),
            P::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> i32 {
        use loyalty_proto::identity::v1::Role as P;
        (match self {
            Role::Admin => P::Admin,
            Role::Pos => P::Pos,
            Role::Marketing => P::Marketing,
            Role::Support => P::Support,
            Role::Service => P::Service,
        }) as i32
    }
}

/// Who is calling.
#[derive(Clone)]
pub struct Principal {
    /// The partner (tenant) the key acts for; `None` only for the platform admin.
    pub partner_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub roles: Vec<Role>,
    pub platform_admin: bool,
    /// The raw key, forwarded when this service calls another on the caller's behalf.
    pub credential: SecretString,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("partner_id", &self.partner_id)
            .field("api_key_id", &self.api_key_id)
            .field("roles", &self.roles)
            .field("platform_admin", &self.platform_admin)
            .finish()
    }
}

impl Principal {
    /// The caller's partner; the platform admin key has none and is refused.
    pub fn partner(&self) -> Result<Uuid, ApiError> {
        self.partner_id.ok_or_else(|| {
            ApiError::PermissionDenied("this call needs a partner API key".to_owned())
        })
    }

    /// The caller's partner, if the caller holds one of `roles` (an `admin` key may do anything
    /// within its partner).
    pub fn partner_with_role(&self, roles: &[Role]) -> Result<Uuid, ApiError> {
        let partner = self.partner()?;
        if self.roles.contains(&Role::Admin) || self.roles.iter().any(|r| roles.contains(r)) {
            Ok(partner)
        } else {
            Err(ApiError::PermissionDenied(format!(
                "this call needs one of the roles {roles:?}"
            )))
        }
    }

    /// Only the platform admin key.
    pub fn require_platform_admin(&self) -> Result<(), ApiError> {
        if self.platform_admin {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(
                "this call needs the platform admin key".to_owned(),
            ))
        }
    }

    /// The platform admin, or a `service` key (internal feeds).
    pub fn require_internal(&self) -> Result<(), ApiError> {
        if self.platform_admin || self.roles.contains(&Role::Service) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(
                "this call is internal to the platform".to_owned(),
            ))
        }
    }
}

/// Metadata naming the partner a platform-internal call acts for: a service working outside any
/// request (an event consumer) calls another with the platform (bootstrap) key and this header,
/// and is served as that partner's `service` key. Any other key's header is ignored (it acts
/// for its own partner only); the platform key can create partner keys anyway, so this gives
/// it nothing new.
pub const ACT_FOR_PARTNER: &str = "x-loyalty-partner-id";

impl Principal {
    /// The principal a request with [`ACT_FOR_PARTNER`] set to `partner` runs as: for the
    /// platform admin, that partner's `service` role (same credential); anyone else unchanged.
    pub fn acting_for(self, partner: Option<&str>) -> Result<Principal, ApiError> {
        let Some(partner) = partner.filter(|_| self.platform_admin) else {
            return Ok(self);
        };
        let partner_id = Uuid::parse_str(partner).map_err(|_| {
            ApiError::invalid(
                ACT_FOR_PARTNER,
                "must be the UUID of the partner to act for",
            )
        })?;
        Ok(Principal {
            partner_id: Some(partner_id),
            api_key_id: None,
            roles: vec![Role::Service],
            platform_admin: false,
            credential: self.credential,
        })
    }
}

/// Pulls the principal the auth layer attached to a request.
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("missing API key"))
}

/// Hash under which a key is stored.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random key: `lk_` + 40 base62 characters (~238 bits).
pub fn generate_key() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let body: String = (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("lk_{body}")
}

/// Verifies partner API keys (the bootstrap key is handled by [`KeyAuthenticator`]).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The principal of a key, `Ok(None)` when the key is unknown or revoked.
    async fn lookup(&self, secret: &SecretString) -> Result<Option<Principal>, ApiError>;
}

/// Authenticates bearer keys: the bootstrap key locally, others through a [`KeyStore`], with
/// verified keys remembered for a short while (keyed by hash, never by the key itself).
#[derive(Clone)]
pub struct KeyAuthenticator {
    bootstrap_hash: Option<String>,
    store: Arc<dyn KeyStore>,
    cache: moka::future::Cache<String, Principal>,
}

impl KeyAuthenticator {
    pub fn new(
        bootstrap_key: Option<&SecretString>,
        store: Arc<dyn KeyStore>,
        ttl: Duration,
    ) -> Self {
        Self {
            bootstrap_hash: bootstrap_key.map(|k| hash_key(k.expose_secret())),
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
        }
    }

    /// Forgets a revoked key at once (this process only; others forget it within the TTL).
    pub fn forget_key(&self, api_key_id: Uuid) {
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |_, p| p.api_key_id == Some(api_key_id))
        {
            tracing::warn!(error = %e, "could not drop a revoked key from the cache");
        }
    }

    /// Forgets the key an `ApiKeyRevoked` event names; other events are ignored.
    pub fn forget_revoked(&self, event: &loyalty_proto::events::v1::EventEnvelope) {
        if let Some(revoked) =
            crate::events::decode::<loyalty_proto::events::v1::ApiKeyRevoked>(event)
        {
            match Uuid::parse_str(&revoked.api_key_id) {
                Ok(id) => self.forget_key(id),
                Err(_) => tracing::warn!(
                    api_key_id = %revoked.api_key_id,
                    "ApiKeyRevoked with a malformed key id"
                ),
            }
        }
    }

    pub async fn authenticate(&self, secret: &str) -> Result<Principal, ApiError> {
        if secret.is_empty() {
            return Err(ApiError::Unauthenticated("missing API key".to_owned()));
        }
        let hash = hash_key(secret);
        if self.bootstrap_hash.as_deref() == Some(hash.as_str()) {
            return Ok(Principal {
                partner_id: None,
                api_key_id: None,
                roles: vec![Role::Admin, Role::Service],
                platform_admin: true,
                credential: SecretString::from(secret.to_owned()),
            });
        }
        if let Some(p) = self.cache.get(&hash).await {
            return Ok(p);
        }
        let credential = SecretString::from(secret.to_owned());
        match self.store.lookup(&credential).await? {
            Some(mut p) => {
                p.credential = credential;
                self.cache.insert(hash, p.clone()).await;
                Ok(p)
            }
            None => Err(ApiError::Unauthenticated(
                "unknown or revoked API key".to_owned(),
            )),
        }
    }
}

/// Reads the key from `authorization: Bearer <key>`.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// A [`KeyStore`] that asks the identity service (used by every service but identity).
pub struct RemoteKeyStore {
    client: loyalty_proto::identity::v1::identity_service_client::IdentityServiceClient<
        tonic::transport::Channel,
    >,
}

impl RemoteKeyStore {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        Self {
            client:
                loyalty_proto::identity::v1::identity_service_client::IdentityServiceClient::new(
                    channel,
                ),
        }
    }
}

#[async_trait]
impl KeyStore for RemoteKeyStore {
    async fn lookup(&self, secret: &SecretString) -> Result<Option<Principal>, ApiError> {
        let mut req =
            tonic::Request::new(loyalty_proto::identity::v1::AuthenticateApiKeyRequest {});
        let value = format!("Bearer {}", secret.expose_secret());
        let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_str()) else {
            return Ok(None);
        };
        req.metadata_mut().insert("authorization", value);
        crate::telemetry::inject_current_context(req.metadata_mut());
        match self.client.clone().authenticate_api_key(req).await {
            Ok(resp) => {
                let r = resp.into_inner();
                Ok(Some(Principal {
                    partner_id: r.partner_id.parse().ok(),
                    api_key_id: r.api_key_id.parse().ok(),
                    roles: r
                        .roles
                        .iter()
                        .filter_map(|r| Role::from_proto(*r))
                        .collect(),
                    platform_admin: r.platform_admin,
                    credential: secret.clone(),
                }))
            }
            Err(s) if s.code() == tonic::Code::Unauthenticated => Ok(None),
            Err(s) => Err(ApiError::from_upstream("identity", s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_platform_key_acts_for_a_partner_and_only_as_its_service() {
        let partner = Uuid::now_v7();
        let admin = Principal {
            partner_id: None,
            api_key_id: None,
            roles: vec![Role::Admin, Role::Service],
            platform_admin: true,
            credential: SecretString::from("boot".to_owned()),
        };
        let acting = admin
            .clone()
            .acting_for(Some(&partner.to_string()))
            .unwrap();
        assert_eq!(acting.partner_id, Some(partner));
        assert_eq!(acting.roles, vec![Role::Service]);
        assert!(!acting.platform_admin);
        assert!(acting.partner_with_role(&[Role::Marketing]).is_err());
        assert!(admin.clone().acting_for(None).unwrap().platform_admin);
        assert!(admin.acting_for(Some("nope")).is_err());
        let own = Uuid::now_v7();
        let key = Principal {
            partner_id: Some(own),
            api_key_id: Some(Uuid::now_v7()),
            roles: vec![Role::Admin],
            platform_admin: false,
            credential: SecretString::from("lk_x".to_owned()),
        };
        let still = key.acting_for(Some(&partner.to_string())).unwrap();
        assert_eq!(
            still.partner_id,
            Some(own),
            "a partner key never acts for another"
        );
    }

    struct NoKeys;

    #[async_trait]
    impl KeyStore for NoKeys {
        async fn lookup(&self, _: &SecretString) -> Result<Option<Principal>, ApiError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn bootstrap_key_is_platform_admin_and_others_are_refused() {
        let auth = KeyAuthenticator::new(
            Some(&SecretString::from("boot".to_owned())),
            Arc::new(NoKeys),
            Duration::from_secs(1),
        );
        let admin = auth.authenticate("boot").await.expect("admin");
        assert!(admin.platform_admin);
        assert!(admin.partner().is_err());
        assert!(matches!(
            auth.authenticate("nope").await,
            Err(ApiError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.authenticate("").await,
            Err(ApiError::Unauthenticated(_))
        ));
    }

    /// Knows one key until it is revoked; counts lookups.
    struct OneKey {
        id: Uuid,
        revoked: std::sync::atomic::AtomicBool,
        lookups: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl KeyStore for OneKey {
        async fn lookup(&self, secret: &SecretString) -> Result<Option<Principal>, ApiError> {
            use std::sync::atomic::Ordering;
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok((!self.revoked.load(Ordering::SeqCst)).then(|| Principal {
                partner_id: Some(Uuid::nil()),
                api_key_id: Some(self.id),
                roles: vec![Role::Pos],
                platform_admin: false,
                credential: secret.clone(),
            }))
        }
    }

    #[tokio::test]
    async fn an_api_key_revoked_event_drops_the_cached_principal() {
        use loyalty_proto::events::v1::{ApiKeyRevoked, EventEnvelope};
        use prost::Message;
        use std::sync::atomic::Ordering;
        let store = Arc::new(OneKey {
            id: Uuid::now_v7(),
            revoked: false.into(),
            lookups: 0.into(),
        });
        let auth = KeyAuthenticator::new(None, store.clone(), Duration::from_secs(3600));
        auth.authenticate("lk_till").await.expect("known key");
        auth.authenticate("lk_till").await.expect("cached");
        assert_eq!(
            store.lookups.load(Ordering::SeqCst),
            1,
            "second answer cached"
        );
        store.revoked.store(true, Ordering::SeqCst);
        let event = |id: String| EventEnvelope {
            event_type: <ApiKeyRevoked as crate::events::DomainEvent>::TYPE.into(),
            payload: ApiKeyRevoked { api_key_id: id }.encode_to_vec(),
            ..Default::default()
        };
        auth.forget_revoked(&event(Uuid::now_v7().to_string()));
        auth.forget_revoked(&event("not-a-uuid".into()));
        auth.authenticate("lk_till")
            .await
            .expect("another key's revocation changes nothing");
        auth.forget_revoked(&event(store.id.to_string()));
        assert!(matches!(
            auth.authenticate("lk_till").await,
            Err(ApiError::Unauthenticated(_))
        ));
    }

    #[test]
    fn generated_keys_are_unique_and_hash_stably() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("lk_") && a.len() == 43);
        assert_eq!(hash_key(&a), hash_key(&a));
    }

    #[test]
    fn bearer_is_parsed_case_insensitively() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
