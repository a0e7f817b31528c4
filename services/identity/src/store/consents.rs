//! See api::consents.
