//! Topup: the account center and recharge backend of a SaaS company.
//!
//! Customers top up a wallet by paying a WeChat Pay or Alipay QR code issued through the
//! SwiftPass aggregator, buy products from that balance, and see their orders. Single-page
//! apps talk GraphQL (`graphql`, over `http`); SwiftPass talks to one REST route.
//!
//! `app` wires it: settings (`config`) → PostgreSQL (`db`, a private cluster when none is
//! configured) → capability modules, each owning its SQL: `accounts` (users, JWT sessions),
//! `ledger` (double-entry money), `orders` (recharges, the state machine), `payments` (the
//! one path that marks an order paid, fed by the notify route), `events` (order timeline,
//! outbox and LISTEN/NOTIFY hub). `gateway` speaks the SwiftPass protocol and carries a
//! faithful sandbox. `error` is the one error type and its GraphQL codes.

pub mod accounts;
pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod gateway;
pub mod graphql;
pub mod http;
pub mod ledger;
pub mod orders;
pub mod payments;
