//! See api::activity.
