//! Card number formats (one per partner) and the guarded state change of a replaced card.
use loyalty_platform::ApiError;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::entities::identifiers;
use crate::domain::{
    Identifier, IdentifierState,
    cards::{CardNumberFormat, CardNumberFormatDraft, Checksum},
};

pub mod entities {
    pub mod card_number_formats {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "card_number_formats")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub partner_id: Uuid,
            pub digits_only: bool,
            pub min_length: i32,
            pub max_length: i32,
            /// JSON array of prefixes.
            pub prefixes: Json,
            /// `none`, `ean13` or `luhn`.
            pub checksum: String,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::card_number_formats as formats;

fn from_model(m: formats::Model) -> Result<CardNumberFormat, ApiError> {
    let checksum = Checksum::parse_str(&m.checksum).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("unknown card checksum {:?}", m.checksum))
    })?;
    let draft = CardNumberFormatDraft {
        digits_only: m.digits_only,
        min_length: m.min_length,
        max_length: m.max_length,
        prefixes: serde_json::from_value(m.prefixes).map_err(anyhow::Error::from)?,
        checksum: Some(checksum),
    };
    CardNumberFormat::parse(draft, m.updated_at, "card_number_format").map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("stored card number format is invalid: {e}"))
    })
}

/// The partner's card number format; `None` until the partner sets one (cards are then
/// checked only as any identifier is).
pub async fn card_number_format(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
) -> Result<Option<CardNumberFormat>, ApiError> {
    formats::Entity::find_by_id(partner_id)
        .one(conn)
        .await?
        .map(from_model)
        .transpose()
}

/// Sets the partner's card number format, replacing any earlier one.
pub async fn save_card_number_format(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    f: &CardNumberFormat,
) -> Result<(), ApiError> {
    let len = |n: u32| i32::try_from(n).map_err(anyhow::Error::from);
    formats::Entity::insert(formats::ActiveModel {
        partner_id: Set(partner_id),
        digits_only: Set(f.digits_only()),
        min_length: Set(len(f.min_length())?),
        max_length: Set(len(f.max_length())?),
        prefixes: Set(serde_json::to_value(f.prefixes()).map_err(anyhow::Error::from)?),
        checksum: Set(f.checksum().as_str().to_owned()),
        updated_at: Set(f.updated_at()),
    })
    .on_conflict(
        OnConflict::column(formats::Column::PartnerId)
            .update_columns([
                formats::Column::DigitsOnly,
                formats::Column::MinLength,
                formats::Column::MaxLength,
                formats::Column::Prefixes,
                formats::Column::Checksum,
                formats::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Writes a replaced card's new state if it is still in state `expected`; `false` if a
/// concurrent change came first.
pub async fn retire_card(
    conn: &impl ConnectionTrait,
    partner_id: Uuid,
    card: &Identifier,
    expected: IdentifierState,
) -> Result<bool, ApiError> {
    let res = identifiers::Entity::update_many()
        .col_expr(identifiers::Column::State, Expr::value(card.state.as_str()))
        .col_expr(
            identifiers::Column::BlockReason,
            Expr::value(card.block_reason.clone()),
        )
        .col_expr(identifiers::Column::UpdatedAt, Expr::value(card.updated_at))
        .filter(identifiers::Column::PartnerId.eq(partner_id))
        .filter(identifiers::Column::Id.eq(card.id))
        .filter(identifiers::Column::State.eq(expected.as_str()))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}
