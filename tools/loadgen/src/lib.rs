//! The loyalty platform's load generator. `driver` runs a workload closed- or open-loop and
//! `stats` summarises what it measured; each subcommand (`wallet`, ...) supplies workloads.
pub mod campaign;
pub mod checkout;
pub mod cpu;
pub mod db;
pub mod driver;
pub mod echo;
pub mod flexi;
pub mod grpc;
pub mod memberships;
pub mod stats;
pub mod wallet;
