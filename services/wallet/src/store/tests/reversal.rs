//! reversal
