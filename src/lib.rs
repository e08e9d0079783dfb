//! Topup: account center and recharge backend.
pub mod gateway;
