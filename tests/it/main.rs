//! Topup's integration tests: one binary, the real server on loopback ports, a database per
//! test, clients speaking HTTP and WebSocket.

mod accounts;
mod gateway;
mod instances;
mod ledger;
mod recharge;
mod schema;
mod support;
mod ws;
mod zero_config;
