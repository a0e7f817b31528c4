//! See api::customer_data.
