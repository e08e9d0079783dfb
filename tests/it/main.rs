//! Topup's integration tests: one binary, the real server on loopback ports, a database per
//! test, clients speaking HTTP and WebSocket.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "a test and its helpers fail loudly"
)]

mod accounts;
mod agents;
mod bills;
mod catalog;
mod console;
mod db_restart;
mod fanout;
mod gateway;
mod instances;
mod kill;
mod layering;
mod ledger;
mod logs;
mod metrics;
mod offline;
mod pgbouncer;
mod reads;
mod recharge;
mod reconcile;
mod refunds;
mod replica;
mod safety;
mod sales;
mod schema;
mod simulation;
mod support;
mod unreliable_gateway;
mod ws;
mod zero_config;
