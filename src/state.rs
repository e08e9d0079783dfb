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
use crate::orders::{Cashier, Order};
use crate::sales::live::LiveSales;

/// Open WebSocket connections per user, so one user cannot hold unbounded connections.
#[derive(Debug, Default)]
pub struct WsSeats(Arc<std::sync::Mutex<std::collections::HashMap<i64, usize>>>);

/// One user's place among the open connections; released when dropped.
#[derive(Debug)]
pub struct WsSeat {
    seats: Arc<std::sync::Mutex<std::collections::HashMap<i64, usize>>>,
    user_id: i64,
}

impl WsSeats {
    /// Takes a seat for `user_id`, unless they hold `cap` already (0: no cap).
    pub fn take(&self, user_id: i64, cap: usize) -> Option<WsSeat> {
        let mut seats = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = seats.entry(user_id).or_default();
        if cap > 0 && *held >= cap {
            return None;
        }
        *held += 1;
        Some(WsSeat {
            seats: self.0.clone(),
            user_id,
        })
    }
}

impl Drop for WsSeat {
    fn drop(&mut self) {
        let mut seats = self.seats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = seats.get_mut(&self.user_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                seats.remove(&self.user_id);
            }
        }
    }
}

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
    /// This instance's order-event listener (it hands `orderStatus` subscribers the order).
    pub hub: EventHub<Order>,
    /// This instance's live-sales fan-out (fed by the hub).
    pub live_sales: LiveSales,
    /// Which sessions are open, kept current by the hub's session-end announcements.
    pub sessions: Arc<SessionCache>,
    /// Rate limits of login, sign-up and the notify route.
    pub limits: Limits,
    /// Open WebSocket connections per user.
    pub ws_seats: WsSeats,
    /// The SQL statements the pool's connections have sent.
    pub sql_statements: StatementCounter,
    /// Set when the server begins to stop: open WebSocket connections complete their
    /// operations and close.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Connections to the read replica (`TOPUP_READ_DATABASE_URL`) for reads that tolerate
    /// its lag (sales reports); `None` when reports read the primary.
    pub read_pool: Option<Pool>,
}
