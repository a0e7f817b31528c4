//! Card number formats and card replacement.
use std::time::Duration;

use loyalty_platform::{
    ApiError, Role, Violations,
    auth::principal,
    error::check_idempotency_key,
    events,
    idempotency::{self, IdempotencyScope},
    time::to_timestamp,
};
use loyalty_proto::{events::v1 as ev, identity::v1 as pb};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{IdentityApi, RESOLUTION_TTL, identifier_ref, identifier_to_proto, new_identifier};
use crate::{
    domain::{
        CustomerState, IdentifierKind, IdentifierState, IdentifierValue, Resolution, RetiredCard,
        cards::{
            CardNumberFormat, CardNumberFormatDraft, CardReplacement, Checksum, MAX_REASON,
            OldCardState, apply_card_format,
        },
        identifier_refusal_message, now_micros, resolution_key,
    },
    store::cards as store,
};

/// How long a partner's card number format is cached; an update drops it at once.
const FORMAT_TTL: Duration = Duration::from_secs(60);

fn format_key(partner_id: Uuid) -> String {
    format!("identity:card_number_format:{partner_id}")
}

fn checksum_to_proto(c: Checksum) -> pb::CardChecksum {
    match c {
        Checksum::None => pb::CardChecksum::None,
        Checksum::Ean13 => pb::CardChecksum::Ean13,
        Checksum::Luhn => pb::CardChecksum::Luhn,
    }
}

fn format_to_proto(f: Option<&CardNumberFormat>) -> pb::CardNumberFormat {
    match f {
        // No format set: cards are checked as any identifier (letters, digits, '-').
        None => pb::CardNumberFormat {
            checksum: pb::CardChecksum::None as i32,
            ..Default::default()
        },
        Some(f) => pb::CardNumberFormat {
            digits_only: f.digits_only(),
            min_length: i32::try_from(f.min_length()).unwrap_or(i32::MAX),
            max_length: i32::try_from(f.max_length()).unwrap_or(i32::MAX),
            prefixes: f.prefixes().to_vec(),
            checksum: checksum_to_proto(f.checksum()) as i32,
            update_time: Some(to_timestamp(f.updated_at())),
        },
    }
}

/// The partner's card number format, from the cache or the database.
pub(super) async fn card_number_format(
    api: &IdentityApi,
    partner_id: Uuid,
) -> Result<Option<CardNumberFormat>, ApiError> {
    let key = format_key(partner_id);
    if let Some(cached) = api
        .cache
        .get(&key)
        .await
        .and_then(|b| serde_json::from_slice::<Option<CardNumberFormat>>(&b).ok())
    {
        return Ok(cached);
    }
    let format = store::card_number_format(&api.db, partner_id).await?;
    if let Ok(bytes) = serde_json::to_vec(&format) {
        api.cache.set(&key, &bytes, FORMAT_TTL).await;
    }
    Ok(format)
}

/// The partner's card number format if any of `values` is a card (no lookup otherwise).
pub(super) async fn card_number_format_for(
    api: &IdentityApi,
    partner_id: Uuid,
    values: &[IdentifierValue],
) -> Result<Option<CardNumberFormat>, ApiError> {
    if values.iter().any(|v| v.kind == IdentifierKind::Card) {
        card_number_format(api, partner_id).await
    } else {
        Ok(None)
    }
}

/// Applies the format to each identifier; every card that does not fit is reported under
/// `field(index).value`.
pub(super) fn apply_card_number_format(
    format: Option<&CardNumberFormat>,
    values: Vec<IdentifierValue>,
    field: impl Fn(usize) -> String,
) -> Result<Vec<IdentifierValue>, ApiError> {
    let mut v = Violations::new();
    let checked: Vec<IdentifierValue> = values
        .into_iter()
        .enumerate()
        .filter_map(|(i, value)| {
            v.check(
                format!("{}.value", field(i)),
                apply_card_format(format, value),
            )
        })
        .collect();
    v.finish(|| checked)
}

/// Resolves an identifier value through the cache; a card typed with dashes is also looked
/// up without them (how numbers are stored under a card number format).
pub(super) async fn resolution(
    api: &IdentityApi,
    partner_id: Uuid,
    value: &IdentifierValue,
) -> Result<Option<Resolution>, ApiError> {
    let mut candidates = vec![value.clone()];
    if value.kind == IdentifierKind::Card && value.value.contains('-') {
        candidates.push(IdentifierValue {
            kind: IdentifierKind::Card,
            value: value.value.replace('-', ""),
        });
    }
    for candidate in candidates {
        let key = resolution_key(partner_id, &candidate);
        if let Some(r) = api
            .cache
            .get(&key)
            .await
            .and_then(|b| serde_json::from_slice::<Resolution>(&b).ok())
        {
            return Ok(Some(r));
        }
        if let Some(identifier) = api.store.find_identifier(partner_id, &candidate).await? {
            let r = Resolution::from(&identifier);
            if let Ok(bytes) = serde_json::to_vec(&r) {
                api.cache.set(&key, &bytes, RESOLUTION_TTL).await;
            }
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Why a replaced card does not resolve. The answer carries the reason given on
/// replacement, never the new card: whoever presents a lost card learns nothing about it.
pub(super) fn retired_refusal(r: &RetiredCard) -> ApiError {
    let (reason, what) = if r.lost {
        ("IDENTIFIER_LOST", "the card was reported lost and replaced")
    } else {
        ("IDENTIFIER_REPLACED", "the card was replaced by a new one")
    };
    ApiError::precondition(
        reason,
        if r.reason.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {}", r.reason)
        },
    )
}

fn required_uuid(v: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    if value.is_empty() {
        v.add(field, "is required");
        return None;
    }
    v.check(field, Uuid::try_parse(value).map_err(|_| "must be a UUID"))
}

pub(super) async fn replace_card(
    api: &IdentityApi,
    request: Request<pb::ReplaceCardRequest>,
) -> Result<Response<pb::ReplaceCardResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Support, Role::Pos])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(partner_id, "ReplaceCard", &req.idempotency_key, &req);
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let old_id = required_uuid(&mut v, "identifier_id", &req.identifier_id);
    let new_number = v.check(
        "new_card_number",
        IdentifierValue::parse(IdentifierKind::Card, &req.new_card_number),
    );
    let to = match pb::ReplacedCardState::try_from(req.old_card_state) {
        Ok(pb::ReplacedCardState::Lost) => Some(OldCardState::Lost),
        Ok(pb::ReplacedCardState::Replaced) => Some(OldCardState::Replaced),
        _ => {
            v.add("old_card_state", "must be LOST or REPLACED");
            None
        }
    };
    if req.reason.chars().count() > MAX_REASON {
        v.add("reason", format!("must be at most {MAX_REASON} characters"));
    }
    v.into_result()?;
    let (Some(old_id), Some(new_number), Some(to)) = (old_id, new_number, to) else {
        return Err(ApiError::invalid("identifier_id", "is invalid").into());
    };
    let format = card_number_format(api, partner_id).await?;
    let reason = req.reason;
    let identity = api.store.clone();
    let done: CardReplacement = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            // Checked here, not before: a retry answers as the first call did even if the
            // format changed meanwhile.
            let new_number = apply_card_format(format.as_ref(), new_number)
                .map_err(|e| ApiError::invalid("new_card_number", e))?;
            let refused =
                |r: &'static str| ApiError::precondition(r, identifier_refusal_message(r));
            let mut old = identity
                .identifier(txn, partner_id, old_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("identifier".into()))?;
            let customer = identity
                .customer(txn, partner_id, old.customer_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("customer".into()))?;
            if customer.state == CustomerState::Erased {
                return Err(ApiError::precondition(
                    "CUSTOMER_ERASED",
                    "the customer's data was erased",
                ));
            }
            let now = now_micros();
            // The state change is guarded by the state it was read in; a concurrent change
            // (block, replacement) makes it start over from what is stored now.
            let mut attempts = 0;
            let retired = loop {
                let retired = old.retire(to, &reason, now).map_err(refused)?;
                if store::retire_card(txn, partner_id, &retired, old.state).await? {
                    break retired;
                }
                attempts += 1;
                if attempts == 3 {
                    return Err(ApiError::Unavailable(
                        "the card keeps changing concurrently; retry".into(),
                    ));
                }
                old = identity
                    .identifier(txn, partner_id, old_id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("identifier".into()))?;
            };
            let new_card = new_identifier(retired.customer_id, new_number);
            identity
                .insert_identifier(txn, partner_id, &new_card)
                .await?;
            events::enqueue(
                txn,
                Some(partner_id),
                &ev::IdentifierReplaced {
                    customer_id: retired.customer_id.to_string(),
                    old_identifier_id: retired.id.to_string(),
                    old_identifier: Some(identifier_ref(&retired)),
                    new_identifier_id: new_card.id.to_string(),
                    new_identifier: Some(identifier_ref(&new_card)),
                    lost: retired.state == IdentifierState::Lost,
                },
            )
            .await?;
            Ok(CardReplacement {
                old_card: retired,
                new_card,
            })
        })
    })
    .await?;
    // The old card must be refused by the very next resolve.
    for card in [&done.old_card, &done.new_card] {
        api.cache
            .delete(&resolution_key(partner_id, &card.value))
            .await;
    }
    Ok(Response::new(pb::ReplaceCardResponse {
        old_card: Some(identifier_to_proto(&done.old_card)),
        new_card: Some(identifier_to_proto(&done.new_card)),
    }))
}

pub(super) async fn get_card_number_format(
    api: &IdentityApi,
    request: Request<pb::GetCardNumberFormatRequest>,
) -> Result<Response<pb::GetCardNumberFormatResponse>, Status> {
    let partner_id = principal(&request)?.partner()?;
    let format = card_number_format(api, partner_id).await?;
    Ok(Response::new(pb::GetCardNumberFormatResponse {
        card_number_format: Some(format_to_proto(format.as_ref())),
    }))
}

pub(super) async fn update_card_number_format(
    api: &IdentityApi,
    request: Request<pb::UpdateCardNumberFormatRequest>,
) -> Result<Response<pb::UpdateCardNumberFormatResponse>, Status> {
    let partner_id = principal(&request)?.partner_with_role(&[Role::Admin])?;
    let req = request.into_inner();
    let scope = IdempotencyScope::new(
        partner_id,
        "UpdateCardNumberFormat",
        &req.idempotency_key,
        &req,
    );
    let mut v = Violations::new();
    check_idempotency_key(&mut v, &req.idempotency_key);
    let Some(f) = req.card_number_format else {
        v.add("card_number_format", "is required");
        v.into_result()?;
        return Err(ApiError::invalid("card_number_format", "is required").into());
    };
    let checksum = match pb::CardChecksum::try_from(f.checksum) {
        Ok(pb::CardChecksum::Unspecified | pb::CardChecksum::None) => Some(Checksum::None),
        Ok(pb::CardChecksum::Ean13) => Some(Checksum::Ean13),
        Ok(pb::CardChecksum::Luhn) => Some(Checksum::Luhn),
        Err(_) => {
            v.add("card_number_format.checksum", "must be NONE, EAN13 or LUHN");
            None
        }
    };
    let draft = CardNumberFormatDraft {
        digits_only: f.digits_only,
        min_length: f.min_length,
        max_length: f.max_length,
        prefixes: f.prefixes,
        checksum,
    };
    v.into_result()?;
    let format = CardNumberFormat::parse(draft, now_micros(), "card_number_format")?;
    let saved: CardNumberFormat = idempotency::run(&api.db, scope, move |txn| {
        Box::pin(async move {
            store::save_card_number_format(txn, partner_id, &format).await?;
            Ok(format)
        })
    })
    .await?;
    api.cache.delete(&format_key(partner_id)).await;
    Ok(Response::new(pb::UpdateCardNumberFormatResponse {
        card_number_format: Some(format_to_proto(Some(&saved))),
    }))
}
