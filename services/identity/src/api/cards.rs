//! Card number formats and card replacement.
use loyalty_proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::IdentityApi;

pub(super) async fn replace_card(
    api: &IdentityApi,
    request: Request<pb::ReplaceCardRequest>,
) -> Result<Response<pb::ReplaceCardResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented("ReplaceCard is not available yet"))
}

pub(super) async fn get_card_number_format(
    api: &IdentityApi,
    request: Request<pb::GetCardNumberFormatRequest>,
) -> Result<Response<pb::GetCardNumberFormatResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "GetCardNumberFormat is not available yet",
    ))
}

pub(super) async fn update_card_number_format(
    api: &IdentityApi,
    request: Request<pb::UpdateCardNumberFormatRequest>,
) -> Result<Response<pb::UpdateCardNumberFormatResponse>, Status> {
    let _ = (api, request);
    Err(Status::unimplemented(
        "UpdateCardNumberFormat is not available yet",
    ))
}
