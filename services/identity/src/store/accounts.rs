//! See api::accounts.
