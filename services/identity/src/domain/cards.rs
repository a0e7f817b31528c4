//! See api::cards.
