//! What the transports (`graphql`, `http`) hand to the capabilities: the pool, the cashier
//! (the SwiftPass client and the order rules), the access-token keys and this instance's
//! event hub. `app` builds it; capabilities never see it, only the pieces they take.

use url::Url;

use std::sync::Arc;

use crate::accounts::session_check::SessionCache;
use crate::accounts::tokens::JwtKeys;
use crate::config::Config;
use crate::db::{Pool, StatementCounter};
use crate::events::EventHub;
use crate::limits::Limits;
use crate::orders::Cashier;

/// The shared state of one Topup instance.
pub struct AppState {
    /// The settings the process started with.
    pub config: Config,
    pub pool: Pool,
    /// Connections only the notify route uses (`TOPUP_NOTIFY_POOL_SIZE`).
    pub notify_pool: Pool,
    pub jwt: JwtKeys,
    /// The base URL others reach this instance at (ends with `/`).
    pub public_url: Url,
    /// The SwiftPass client (a real gateway or the in-process sandbox), the notify URL and
    /// the order rules.
    pub cashier: Cashier,
    /// This instance's order-event listener.
    pub hub: EventHub,
    /// Which sessions are open, kept current by the hub's session-end announcements.
    pub sessions: Arc<SessionCache>,
    /// Rate limits of login, sign-up and the notify route.
    pub limits: Limits,
    /// The SQL statements the pool's connections have sent.
    pub sql_statements: StatementCounter,
}
