//! What the transports (`graphql`, `http`) hand to the capabilities: the pool, the cashier
//! (the SwiftPass client and the order rules), the access-token keys and this instance's
//! event hub. `app` builds it; capabilities never see it, only the pieces they take.

use url::Url;

use crate::accounts::tokens::JwtKeys;
use crate::config::Config;
use crate::db::{Pool, StatementCounter};
use crate::events::EventHub;
use crate::orders::Cashier;
use crate::sales::live::LiveSales;

/// The shared state of one Topup instance.
pub struct AppState {
    /// The settings the process started with.
    pub config: Config,
    pub pool: Pool,
    pub jwt: JwtKeys,
    /// The base URL others reach this instance at (ends with `/`).
    pub public_url: Url,
    /// The SwiftPass client (a real gateway or the in-process sandbox), the notify URL and
    /// the order rules.
    pub cashier: Cashier,
    /// This instance's order-event listener.
    pub hub: EventHub,
    /// This instance's live-sales fan-out (fed by the hub).
    pub live_sales: LiveSales,
    /// The SQL statements the pool's connections have sent.
    pub sql_statements: StatementCounter,
}
