//! Points groups and points types: the partner's catalogue of what wallets count.
use loyalty_proto::wallet::v1 as pb;
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

macro_rules! pending {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {
        $(pub async fn $name(_db: &DatabaseConnection, _r: Request<$req>) -> Result<Response<$resp>, Status> {
            Err(Status::unimplemented(concat!(stringify!($name), " is being built")))
        })*
    };
}

pending! {
    create_points_group(pb::CreatePointsGroupRequest) -> pb::CreatePointsGroupResponse;
    get_points_group(pb::GetPointsGroupRequest) -> pb::GetPointsGroupResponse;
    list_points_groups(pb::ListPointsGroupsRequest) -> pb::ListPointsGroupsResponse;
    update_points_group(pb::UpdatePointsGroupRequest) -> pb::UpdatePointsGroupResponse;
    delete_points_group(pb::DeletePointsGroupRequest) -> pb::DeletePointsGroupResponse;
    create_points_type(pb::CreatePointsTypeRequest) -> pb::CreatePointsTypeResponse;
    get_points_type(pb::GetPointsTypeRequest) -> pb::GetPointsTypeResponse;
    list_points_types(pb::ListPointsTypesRequest) -> pb::ListPointsTypesResponse;
    update_points_type(pb::UpdatePointsTypeRequest) -> pb::UpdatePointsTypeResponse;
    delete_points_type(pb::DeletePointsTypeRequest) -> pb::DeletePointsTypeResponse;
}
