//! Business-unit RPCs: conversions and the work behind each handler.
use chrono::Utc;
use loyalty_platform::{
    ApiError, Violations,
    error::check_idempotency_key,
    events,
    idempotency::{self, IdempotencyScope},
    time::to_timestamp,
};
use loyalty_proto::{events::v1 as ev, identity::v1 as pb, types::v1 as types};
use uuid::Uuid;

use super::IdentityApi;
use crate::{
    domain::business_unit::{BusinessUnit, UPDATABLE, UnitState, UnitType, creates_cycle},
    store::business_units as store,
};

fn type_from_proto(v: i32) -> Option<UnitType> {
    use pb::BusinessUnitType as T;
    Some(match T::try_from(v).ok()? {
        T::Store => UnitType::Store,
        T::Eshop => UnitType::Eshop,
        T::Kiosk => UnitType::Kiosk,
        T::MobileApp => UnitType::MobileApp,
        T::Branch => UnitType::Branch,
        T::Merchant => UnitType::Merchant,
        T::Other => UnitType::Other,
        T::Unspecified => return None,
    })
}

fn type_to_proto(t: UnitType) -> pb::BusinessUnitType {
    use pb::BusinessUnitType as T;
    match t {
        UnitType::Store => T::Store,
        UnitType::Eshop => T::Eshop,
        UnitType::Kiosk => T::Kiosk,
        UnitType::MobileApp => T::MobileApp,
        UnitType::Branch => T::Branch,
        UnitType::Merchant => T::Merchant,
        UnitType::Other => T::Other,
    }
}

fn state_from_proto(v: i32) -> Option<UnitState> {
    match pb::BusinessUnitState::try_from(v).ok()? {
        pb::BusinessUnitState::Active => Some(UnitState::Active),
        pb::BusinessUnitState::Closed => Some(UnitState::Closed),
        pb::BusinessUnitState::Unspecified => None,
    }
}

fn channel_name(v: i32) -> Option<&'static str> {
    Some(match types::SalesChannel::try_from(v).ok()? {
        types::SalesChannel::Pos => "pos",
        types::SalesChannel::Eshop => "eshop",
        types::SalesChannel::MobileApp => "mobile_app",
        types::SalesChannel::Kiosk => "kiosk",
        types::SalesChannel::Unspecified => return None,
    })
}

fn channel_to_proto(name: &str) -> i32 {
    (match name {
        "pos" => types::SalesChannel::Pos,
        "eshop" => types::SalesChannel::Eshop,
        "mobile_app" => types::SalesChannel::MobileApp,
        "kiosk" => types::SalesChannel::Kiosk,
        _ => types::SalesChannel::Unspecified,
    }) as i32
}

pub fn to_proto(u: &BusinessUnit) -> pb::BusinessUnit {
    pb::BusinessUnit {
        id: u.id.to_string(),
        code: u.code.clone(),
        display_name: u.display_name.clone(),
        r#type: type_to_proto(u.unit_type) as i32,
        state: (match u.state {
            UnitState::Active => pb::BusinessUnitState::Active,
            UnitState::Closed => pb::BusinessUnitState::Closed,
        }) as i32,
        channels: u.channels.iter().map(|c| channel_to_proto(c)).collect(),
        parent_business_unit_id: u.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        address: u.address.clone(),
        city: u.city.clone(),
        country_code: u.country_code.clone(),
        time_zone: u.time_zone.clone(),
        owner_name: u.owner_name.clone(),
        etag: u.etag(),
        create_time: Some(to_timestamp(u.created_at)),
        ..Default::default()
    }
}

/// Copies the fields named by `paths` (all of them for a create) from the request onto `unit`.
fn apply(v: &mut Violations, unit: &mut BusinessUnit, p: &pb::BusinessUnit, paths: &[&str]) {
    for path in paths {
        match *path {
            "code" => unit.code = p.code.trim().to_owned(),
            "display_name" => unit.display_name = p.display_name.trim().to_owned(),
            "type" => match type_from_proto(p.r#type) {
                Some(t) => unit.unit_type = t,
                None => v.add("business_unit.type", "is required"),
            },
            "state" => match state_from_proto(p.state) {
                Some(s) => unit.state = s,
                None => v.add("business_unit.state", "must be ACTIVE or CLOSED"),
            },
            "channels" => {
                unit.channels.clear();
                for (i, c) in p.channels.iter().enumerate() {
                    match channel_name(*c) {
                        Some(name) if !unit.channels.iter().any(|x| x == name) => {
                            unit.channels.push(name.to_owned())
                        }
                        Some(_) => {}
                        None => v.add(
                            format!("business_unit.channels[{i}]"),
                            "must be a known sales channel",
                        ),
                    }
                }
            }
            "parent_business_unit_id" => {
                unit.parent_id = if p.parent_business_unit_id.is_empty() {
                    None
                } else {
                    v.check(
                        "business_unit.parent_business_unit_id",
                        Uuid::try_parse(&p.parent_business_unit_id).map_err(|_| "must be a UUID"),
                    )
                }
            }
            "address" => unit.address = p.address.clone(),
            "city" => unit.city = p.city.clone(),
            "country_code" => unit.country_code = p.country_code.clone(),
            "time_zone" => unit.time_zone = p.time_zone.clone(),
            "owner_name" => unit.owner_name = p.owner_name.clone(),
            other => v.add("update_mask", format!("{other:?} cannot be updated")),
        }
    }
}

/// The parent must be a live unit of the same partner that does not sit below `unit`.
async fn check_parent(
    txn: &impl sea_orm::ConnectionTrait,
    partner_id: Uuid,
    unit: &BusinessUnit,
) -> Result<(), ApiError> {
    let Some(parent) = unit.parent_id else {
        return Ok(());
    };
    if store::get(txn, partner_id, &parent.to_string())
        .await?
        .is_none()
    {
        return Err(ApiError::invalid(
            "business_unit.parent_business_unit_id",
            "no such business unit",
        ));
    }
    let parents = store::parents(txn, partner_id).await?;
    if creates_cycle(unit.id, parent, |u| parents.get(&u).copied()) {
        return Err(ApiError::precondition(
            "BUSINESS_UNIT_CYCLE",
            "the parent sits below this business unit",
        ));
    }
    Ok(())
}

fn changed(u: &BusinessUnit, deleted: bool) -> ev::BusinessUnitChanged {
    ev::BusinessUnitChanged {
        business_unit_id: u.id.to_string(),
        code: u.code.clone(),
        deleted,
    }
}

impl IdentityApi {
    pub(super) async fn create_business_unit_for(
        &self,
        partner_id: Uuid,
        req: pb::CreateBusinessUnitRequest,
    ) -> Result<BusinessUnit, ApiError> {
        let scope =
            IdempotencyScope::new(partner_id, "CreateBusinessUnit", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let p = req.business_unit.unwrap_or_default();
        let now = Utc::now();
        let mut unit = BusinessUnit {
            id: Uuid::now_v7(),
            code: String::new(),
            display_name: String::new(),
            unit_type: UnitType::Other,
            state: UnitState::Active,
            channels: vec![],
            parent_id: None,
            address: String::new(),
            city: String::new(),
            country_code: String::new(),
            time_zone: String::new(),
            owner_name: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let mut paths: Vec<&str> = UPDATABLE
            .iter()
            .copied()
            .filter(|p| *p != "state")
            .collect();
        if p.state != 0 {
            paths.push("state");
        }
        apply(&mut v, &mut unit, &p, &paths);
        unit.validate(&mut v);
        v.into_result()?;
        idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                if let Some(parent) = unit.parent_id
                    && store::get(txn, partner_id, &parent.to_string())
                        .await?
                        .is_none()
                {
                    return Err(ApiError::invalid(
                        "business_unit.parent_business_unit_id",
                        "no such business unit",
                    ));
                }
                store::insert(txn, partner_id, &unit).await?;
                events::enqueue(txn, Some(partner_id), &changed(&unit, false)).await?;
                Ok(unit)
            })
        })
        .await
    }

    pub(super) async fn get_business_unit_for(
        &self,
        partner_id: Uuid,
        id_or_code: &str,
    ) -> Result<BusinessUnit, ApiError> {
        if id_or_code.is_empty() {
            return Err(ApiError::invalid("business_unit_id", "is required"));
        }
        store::get(&self.db, partner_id, id_or_code)
            .await?
            .ok_or_else(|| ApiError::NotFound("business unit".into()))
    }

    pub(super) async fn list_business_units_for(
        &self,
        partner_id: Uuid,
        req: &pb::ListBusinessUnitsRequest,
    ) -> Result<(Vec<BusinessUnit>, String), ApiError> {
        let mut v = Violations::new();
        let limit = loyalty_platform::paging::page_size(&mut v, req.page_size);
        // Tokens are the hex of the last code, so they stay opaque.
        let after = if req.page_token.is_empty() {
            None
        } else {
            let decoded = hex::decode(&req.page_token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if decoded.is_none() {
                v.add("page_token", "is not a token this service issued");
            }
            decoded
        };
        let parent = if req.parent_business_unit_id.is_empty() {
            None
        } else {
            v.check(
                "parent_business_unit_id",
                Uuid::try_parse(&req.parent_business_unit_id).map_err(|_| "must be a UUID"),
            )
        };
        v.into_result()?;
        let units = store::list(
            &self.db,
            partner_id,
            type_from_proto(req.r#type),
            state_from_proto(req.state),
            parent,
            after.as_deref(),
            limit,
        )
        .await?;
        let next = match units.last() {
            Some(u) if units.len() as u64 == limit => hex::encode(&u.code),
            _ => String::new(),
        };
        Ok((units, next))
    }

    pub(super) async fn update_business_unit_for(
        &self,
        partner_id: Uuid,
        req: pb::UpdateBusinessUnitRequest,
    ) -> Result<BusinessUnit, ApiError> {
        let scope =
            IdempotencyScope::new(partner_id, "UpdateBusinessUnit", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        let p = req.business_unit.unwrap_or_default();
        let paths: Vec<String> = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "name the fields to update");
        }
        if p.id.is_empty() {
            v.add("business_unit.id", "is required");
        }
        v.into_result()?;
        let etag = req.etag;
        idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let current = store::get(txn, partner_id, &p.id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("business unit".into()))?;
                loyalty_platform::error::check_etag(&etag, &current.etag(), "business unit")?;
                let mut next = current.clone();
                let mut v = Violations::new();
                let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                apply(&mut v, &mut next, &p, &path_refs);
                next.validate(&mut v);
                v.into_result()?;
                next.version = current.version + 1;
                next.updated_at = Utc::now();
                check_parent(txn, partner_id, &next).await?;
                if !store::update(txn, partner_id, &next, current.version).await? {
                    return Err(ApiError::precondition(
                        "ETAG_MISMATCH",
                        "the business unit changed concurrently",
                    ));
                }
                events::enqueue(txn, Some(partner_id), &changed(&next, false)).await?;
                Ok(next)
            })
        })
        .await
    }

    pub(super) async fn delete_business_unit_for(
        &self,
        partner_id: Uuid,
        req: pb::DeleteBusinessUnitRequest,
    ) -> Result<(), ApiError> {
        let scope =
            IdempotencyScope::new(partner_id, "DeleteBusinessUnit", &req.idempotency_key, &req);
        let mut v = Violations::new();
        check_idempotency_key(&mut v, &req.idempotency_key);
        if req.business_unit_id.is_empty() {
            v.add("business_unit_id", "is required");
        }
        v.into_result()?;
        idempotency::run(&self.db, scope, move |txn| {
            Box::pin(async move {
                let unit = store::get(txn, partner_id, &req.business_unit_id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound("business unit".into()))?;
                loyalty_platform::error::check_etag(&req.etag, &unit.etag(), "business unit")?;
                if store::has_children(txn, partner_id, unit.id).await? {
                    return Err(ApiError::precondition(
                        "BUSINESS_UNIT_IN_USE",
                        "other business units sit below it; close it instead",
                    ));
                }
                store::soft_delete(txn, partner_id, unit.id, Utc::now()).await?;
                events::enqueue(txn, Some(partner_id), &changed(&unit, true)).await?;
                Ok(())
            })
        })
        .await
    }
}
