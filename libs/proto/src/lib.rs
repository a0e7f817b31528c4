//! Generated code for the loyalty platform's protobuf contracts (`proto/`).
//!
//! Never edit by hand: `build.rs` regenerates it from the `.proto` files.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every package, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/loyalty_descriptor.bin"));

pub mod loyalty {
    pub mod r#type {
        pub mod v1 {
            tonic::include_proto!("loyalty.r#type.v1");
        }
    }
    pub mod identity {
        pub mod v1 {
            tonic::include_proto!("loyalty.identity.v1");
        }
    }
    pub mod wallet {
        pub mod v1 {
            tonic::include_proto!("loyalty.wallet.v1");
        }
    }
    pub mod rewards {
        pub mod v1 {
            tonic::include_proto!("loyalty.rewards.v1");
        }
    }
    pub mod segmentation {
        pub mod v1 {
            tonic::include_proto!("loyalty.segmentation.v1");
        }
    }
    pub mod campaigns {
        pub mod v1 {
            tonic::include_proto!("loyalty.campaigns.v1");
        }
    }
    pub mod checkout {
        pub mod v1 {
            tonic::include_proto!("loyalty.checkout.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("loyalty.events.v1");
        }
    }
}

pub use loyalty::{
    campaigns, checkout, events, identity, rewards, segmentation, r#type as types, wallet,
};
