//! The services checkout orchestrates: identifier → customer (identity answers from its Redis
//! cache, which every change to the identifier drops, so a blocked card is refused at once),
//! the partner's active rewards and purchase bonuses (kept here in memory, dropped when rewards
//! announce a change), memberships and balances (always fresh).
use std::{collections::HashSet, sync::Arc, time::Duration};

use loyalty_platform::{ApiError, Principal, client::outgoing, time::from_timestamp};
use loyalty_proto::{
    identity::v1::{self as identity, identity_service_client::IdentityServiceClient},
    rewards::v1::{self as rewards, rewards_service_client::RewardsServiceClient},
    segmentation::v1::{
        self as segmentation, segmentation_service_client::SegmentationServiceClient,
    },
    types::v1 as types,
    wallet::v1::{self as wallet, wallet_service_client::WalletServiceClient},
};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::domain::{PurchaseBonus, Reward, RewardBenefit, Validity};

/// How long the active benefits of a partner are kept when no change event arrives.
const BENEFITS_TTL: Duration = Duration::from_secs(30);

/// The partner's benefits that can apply at checkout.
#[derive(Debug, Default)]
pub struct Benefits {
    pub rewards: Vec<Reward>,
    pub bonuses: Vec<PurchaseBonus>,
}

#[derive(Clone)]
pub struct Peers {
    identity: IdentityServiceClient<Channel>,
    wallet: WalletServiceClient<Channel>,
    rewards: RewardsServiceClient<Channel>,
    segmentation: SegmentationServiceClient<Channel>,
    benefits: moka::future::Cache<Uuid, Arc<Benefits>>,
}

fn upstream(service: &'static str) -> impl Fn(tonic::Status) -> ApiError {
    move |s| ApiError::from_upstream(service, s)
}

fn uuids(ids: &[String]) -> Vec<Uuid> {
    ids.iter().filter_map(|s| s.parse().ok()).collect()
}

fn validity(
    from: Option<&prost_types::Timestamp>,
    until: Option<&prost_types::Timestamp>,
) -> Validity {
    Validity {
        from: from.and_then(from_timestamp),
        until: until.and_then(from_timestamp),
    }
}

fn reward_from(r: rewards::Reward) -> Option<Reward> {
    let benefit = match r.benefit? {
        rewards::reward::Benefit::CartPercentageDiscount(d) => RewardBenefit::CartPercentage {
            basis_points: u32::try_from(d.basis_points).ok()?,
        },
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(Reward {
        id: r.id.parse().ok()?,
        validity: validity(r.valid_from_time.as_ref(), r.valid_until_time.as_ref()),
        segment_ids: uuids(&r.segment_ids),
        name: r.display_name,
        benefit,
    })
}

/// Whether the bonus is restricted in a way this pricing does not evaluate (products, places,
/// channels, days, hours, tiers, a cap, a points type). Such bonuses are left out rather than awarded on
/// every purchase; the rewards engine applies them.
fn restricted(b: &rewards::PurchaseBonus) -> bool {
    b.products.is_some()
        || !b.business_unit_ids.is_empty()
        || !b.channels.is_empty()
        || !b.days_of_week.is_empty()
        || !b.hour_ranges.is_empty()
        || !b.tier_ids.is_empty()
        || b.max_points_per_purchase > 0
        || !b.points_type_id.is_empty()
}

fn bonus_from(b: rewards::PurchaseBonus) -> Option<PurchaseBonus> {
    if restricted(&b) {
        return None;
    }
    Some(PurchaseBonus {
        id: b.id.parse().ok()?,
        validity: validity(b.valid_from_time.as_ref(), b.valid_until_time.as_ref()),
        segment_ids: uuids(&b.segment_ids),
        name: b.display_name,
        points: b.points,
        spend_amount_minor: b.spend_amount_minor,
        multiplier_basis_points: if b.multiplier_basis_points == 0 {
            10_000
        } else {
            b.multiplier_basis_points
        },
        currency_code: b.currency_code,
    })
}

impl Peers {
    pub fn new(
        identity: Channel,
        wallet: Channel,
        rewards: Channel,
        segmentation: Channel,
    ) -> Self {
        Self {
            identity: IdentityServiceClient::new(identity),
            wallet: WalletServiceClient::new(wallet),
            rewards: RewardsServiceClient::new(rewards),
            segmentation: SegmentationServiceClient::new(segmentation),
            benefits: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(BENEFITS_TTL)
                .build(),
        }
    }

    /// Forgets a partner's benefits (a reward or bonus changed).
    pub async fn invalidate_benefits(&self, partner_id: Uuid) {
        self.benefits.invalidate(&partner_id).await;
    }

    /// The customer behind an identifier.
    pub async fn resolve_customer(
        &self,
        who: &Principal,
        identifier: &types::IdentifierRef,
    ) -> Result<Uuid, ApiError> {
        let resp = self
            .identity
            .clone()
            .resolve_identifier(outgoing(
                identity::ResolveIdentifierRequest {
                    identifier: Some(identifier.clone()),
                },
                who,
            ))
            .await
            .map_err(upstream("identity"))?
            .into_inner();
        resp.customer_id
            .parse()
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("identity answered a bad customer id")))
    }

    /// The segments the customer is in, recalculated online with this cart where a segment
    /// asks for it.
    pub async fn memberships(
        &self,
        who: &Principal,
        customer_id: Uuid,
        cart: &types::Cart,
    ) -> Result<HashSet<Uuid>, ApiError> {
        let resp = self
            .segmentation
            .clone()
            .get_customer_memberships(outgoing(
                segmentation::GetCustomerMembershipsRequest {
                    customer_id: customer_id.to_string(),
                    cart: Some(cart.clone()),
                },
                who,
            ))
            .await
            .map_err(upstream("segmentation"))?
            .into_inner();
        Ok(resp
            .memberships
            .iter()
            .filter_map(|m| m.segment_id.parse().ok())
            .collect())
    }

    /// The partner's active rewards and purchase bonuses, from memory when fresh.
    pub async fn benefits(
        &self,
        who: &Principal,
        partner_id: Uuid,
    ) -> Result<Arc<Benefits>, ApiError> {
        if let Some(b) = self.benefits.get(&partner_id).await {
            return Ok(b);
        }
        let (rewards, bonuses) =
            tokio::try_join!(self.fetch_rewards(who), self.fetch_bonuses(who))?;
        let benefits = Arc::new(Benefits { rewards, bonuses });
        self.benefits.insert(partner_id, benefits.clone()).await;
        Ok(benefits)
    }

    async fn fetch_rewards(&self, who: &Principal) -> Result<Vec<Reward>, ApiError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let resp = self
                .rewards
                .clone()
                .list_active_rewards(outgoing(
                    rewards::ListActiveRewardsRequest {
                        active_time: None,
                        page_size: 1000,
                        page_token,
                    },
                    who,
                ))
                .await
                .map_err(upstream("rewards"))?
                .into_inner();
            out.extend(resp.rewards.into_iter().filter_map(reward_from));
            if resp.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = resp.next_page_token;
        }
    }

    async fn fetch_bonuses(&self, who: &Principal) -> Result<Vec<PurchaseBonus>, ApiError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let resp = self
                .rewards
                .clone()
                .list_active_purchase_bonuses(outgoing(
                    rewards::ListActivePurchaseBonusesRequest {
                        active_time: None,
                        page_size: 1000,
                        page_token,
                    },
                    who,
                ))
                .await
                .map_err(upstream("rewards"))?
                .into_inner();
            out.extend(resp.purchase_bonuses.into_iter().filter_map(bonus_from));
            if resp.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = resp.next_page_token;
        }
    }

    /// Points available in the customer's wallet.
    pub async fn balance(&self, who: &Principal, customer_id: Uuid) -> Result<i64, ApiError> {
        let resp = self
            .wallet
            .clone()
            .get_balance(outgoing(
                wallet::GetBalanceRequest {
                    customer_id: customer_id.to_string(),
                    ..Default::default()
                },
                who,
            ))
            .await
            .map_err(upstream("wallet"))?
            .into_inner();
        Ok(resp.balance.map(|b| b.available_points).unwrap_or(0))
    }

    /// Credits the points of a purchase; the wallet applies a given idempotency key once, so a
    /// retried commit never earns twice. Returns the balance after.
    pub async fn award(
        &self,
        who: &Principal,
        customer_id: Uuid,
        points: i64,
        idempotency_key: String,
        reference: String,
    ) -> Result<i64, ApiError> {
        let resp = self
            .wallet
            .clone()
            .award_points(outgoing(
                wallet::AwardPointsRequest {
                    idempotency_key,
                    customer_id: customer_id.to_string(),
                    points,
                    reason: "purchase".to_owned(),
                    reference,
                    expire_time: None,
                    ..Default::default()
                },
                who,
            ))
            .await
            .map_err(upstream("wallet"))?
            .into_inner();
        Ok(resp.balance.map(|b| b.available_points).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_bonuses_are_left_out_and_plain_ones_kept() {
        let plain = rewards::PurchaseBonus {
            id: Uuid::now_v7().to_string(),
            display_name: "1 point per EUR".into(),
            points: 1,
            spend_amount_minor: 100,
            currency_code: "EUR".into(),
            ..Default::default()
        };
        assert!(bonus_from(plain.clone()).is_some());
        let fridays = rewards::PurchaseBonus {
            days_of_week: vec![types::DayOfWeek::Friday as i32],
            ..plain.clone()
        };
        assert!(bonus_from(fridays).is_none());
        let capped = rewards::PurchaseBonus {
            max_points_per_purchase: 10,
            ..plain
        };
        assert!(bonus_from(capped).is_none());
    }
}
