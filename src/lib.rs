//! Topup: the account center and recharge backend of a SaaS company.
//!
//! Customers top up a wallet by paying a WeChat Pay or Alipay QR code issued through the
//! SwiftPass aggregator, buy products from that balance, and see their orders. Single-page
//! apps talk GraphQL; SwiftPass talks to one REST route.
//!
//! # Layers
//!
//! Imports run one way, and a test (`tests/it/layering.rs`) keeps them so:
//!
//! ```text
//! app                      start-up wiring: imports everything, imported by nothing
//!  └ http → graphql → state    transport: parse, authorize, call a capability
//!     └ reconcile → payments → orders → catalog, accounts, events, gateway_calls → ledger → audit
//!                                                          capabilities: own their SQL
//!        └ domain, db, gateway, config, error                 values and infrastructure
//! ```
//!
//! `http` serves the routes (GraphQL, the notify route, probes); `graphql` holds the schema;
//! `state` is the bag of shared handles (pools, cashier, JWT keys, event hub, session cache,
//! rate limits from `limits`) the transports hand out piece by piece. The capabilities: `accounts` (users, sessions), `ledger` (the
//! only writer of journal entries and postings), `events` (the order timeline, its outbox and
//! the LISTEN hub), `orders` (orders and their state machine, creating orders paid by QR
//! code, the reconciler's watch list), `catalog` (products, entitlements), `payments` (the
//! one path to PAID: gateway payments and purchases from the balance; the notify inbox,
//! reviews, settling with the gateway, refunds), `gateway_calls` (the log of every gateway
//! call about an order), `reconcile` (the consistency job and the daily bill), `audit` (who
//! did what). Underneath:
//! `domain` (money, order numbers and statuses, idempotency keys: built valid or not at all),
//! `db`, `gateway` (the SwiftPass protocol and its sandbox), `config`, `error`.
//!
//! # A capability function's arguments
//!
//! The first argument is where its SQL runs:
//! - `conn: &mut AsyncPgConnection` by default. The caller picks the connection and decides
//!   whether it is inside a transaction, so the same function serves a resolver, a worker, a
//!   command and a test.
//! - `pool: &Pool` only when the function must not hold a connection across a slow await
//!   that is not SQL (a gateway call, password hashing): it checks out a connection around
//!   each piece of SQL.
//!
//! Collaborators follow (`&Client`, `&Cashier`, `&JwtKeys`), then the request as typed
//! values. Nothing below the transports takes `AppState`.
//!
//! # One statement, many owners
//!
//! Where one statement must touch several capabilities' tables (applying a payment), each
//! owning module renders its fragment as a CTE over named columns (`orders::mark_paid_cte`,
//! `ledger::EntrySql`, `catalog::grant_ctes`, `events::record_cte`, the inbox and review
//! CTEs of `payments`); the same fragments back the standalone functions, so no table's
//! write is spelled twice.

pub mod accounts;
pub mod agents;
pub mod app;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod gateway;
pub mod gateway_calls;
pub mod graphql;
pub mod http;
pub mod ledger;
pub mod limits;
pub mod orders;
pub mod payments;
#[cfg(feature = "profile")]
pub mod profile;
pub mod reconcile;
pub mod sales;
pub mod state;
pub mod telemetry;
