//! See api::import.
