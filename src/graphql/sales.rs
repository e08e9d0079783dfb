//! Sales reports and live sales over the agent tree: `salesReport` and `liveSales`. Who may
//! see which scope is `agents::report_scope`, for both.

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, NaiveDate, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::auth::viewer;
use super::connection::{PageArgs, connection};
use super::{conn, state, state_arc};
use crate::accounts::tokens::{LEEWAY_SECS, Viewer};
use crate::agents::{self, Scope};
use crate::db::Page;
use crate::domain::{Channel, Money, OrderKind};
use crate::error::AppError;
use crate::sales::live::{LiveMessage, SalesWatch, ScopedSale};
use crate::sales::report::{self, Figures, GroupBy, Report, Row};
use crate::state::AppState;

connection!(
    SalesReportRowConnection("A page of a report's rows, in key order.", edges: "The rows with their cursors."),
    SalesReportRowEdge("A report row and its cursor.", cursor: "Opaque position of this row.", node: "The row."),
    SalesReportRow,
    cursor_kind: "salesRow",
);

/// What to report.
#[derive(InputObject)]
pub struct SalesReportInput {
    /// The node whose subtree to report (an AGENT user: its own node or below; a SALES
    /// user: its own node, counting its own customers). Default: the caller's own node; for
    /// an admin, every sale.
    agent_id: Option<ID>,
    /// First day of the period, included (a calendar day in the report time zone, China
    /// time by default).
    from: NaiveDate,
    /// Last day of the period, included.
    to: NaiveDate,
    /// How to group the rows.
    group_by: GroupBy,
}

/// Counts and sums of some sales. A sale counts on the day it was paid, a refund on the
/// day it succeeded (so `refunded` may belong to orders paid before the period).
#[derive(SimpleObject, Clone, Copy)]
pub struct SalesFigures {
    /// Orders paid.
    orders: i64,
    /// What they paid, in fen.
    amount: Money,
    /// What was refunded, in fen.
    refunded: Money,
    /// `amount - refunded`, in fen.
    net: Money,
}

impl From<Figures> for SalesFigures {
    fn from(f: Figures) -> Self {
        SalesFigures {
            orders: f.orders,
            amount: f.amount,
            refunded: f.refunded,
            net: f.net(),
        }
    }
}

/// One group of a report.
#[derive(SimpleObject)]
pub struct SalesReportRow {
    /// The group: a date (`YYYY-MM-DD`; for WEEK the Monday), a month (`YYYY-MM`), an agent
    /// or user id, a product id, a channel (`WECHAT`, `ALIPAY`, `BALANCE`), a kind; `NONE`
    /// for sales without an agent, sales user or product.
    key: String,
    /// A readable name for the group (an agent's name, a sales user's email, a product's
    /// name, `2026-W48` for a week).
    label: String,
    /// The group's figures.
    #[graphql(flatten)]
    figures: SalesFigures,
}

/// A sales report: its totals and its rows.
pub struct SalesReport {
    group_by: GroupBy,
    from: NaiveDate,
    to: NaiveDate,
    report: Report,
}

/// A sales report: its totals and its rows.
#[Object]
impl SalesReport {
    /// How the rows are grouped.
    async fn group_by(&self) -> GroupBy {
        self.group_by
    }

    /// First day of the period.
    async fn from(&self) -> NaiveDate {
        self.from
    }

    /// Last day of the period.
    async fn to(&self) -> NaiveDate {
        self.to
    }

    /// The sums of all rows: the scope's sales in the period, whatever the grouping.
    async fn totals(&self) -> SalesFigures {
        self.report.totals.into()
    }

    /// The groups that had sales or refunds in the period, in key order.
    async fn rows(
        &self,
        #[graphql(desc = "Page size (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The cursor of the row after which the page starts.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<SalesReportRowConnection> {
        let page = PageArgs::parse(
            SalesReportRowConnection::CURSOR_KIND,
            first,
            after.as_deref(),
        )?;
        let start = page.after.map_or(0, |a| a.saturating_add(1));
        let rows: Vec<(i64, &Row)> = (0i64..)
            .zip(&self.report.rows)
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .take(usize::try_from(page.first.saturating_add(1)).unwrap_or(usize::MAX))
            .collect();
        Ok(SalesReportRowConnection::new(
            Page::from_overfetch(rows, page.first),
            |(i, _)| *i,
            |(_, row)| SalesReportRow {
                key: row.key.clone(),
                label: row.label.clone(),
                figures: row.figures.into(),
            },
        ))
    }
}

/// The scope the viewer asks for (the agent id parsed: NOT_FOUND for one that cannot be).
async fn scope_of(app: &AppState, v: &Viewer, agent_id: Option<&ID>) -> Result<Scope, AppError> {
    let mut conn = app.pool.get().await?;
    scope_on(&mut conn, v, agent_id).await
}

/// [`scope_of`] on a connection the caller holds (a request's own, over HTTP).
async fn scope_on(
    conn: &mut AsyncPgConnection,
    v: &Viewer,
    agent_id: Option<&ID>,
) -> Result<Scope, AppError> {
    let agent_id = agent_id
        .map(|id| id.parse::<i64>().map_err(|_| AppError::NotFound("agent")))
        .transpose()?;
    agents::report_scope(conn, v, agent_id).await
}

/// Sales reports.
#[derive(Default)]
pub struct SalesQuery;

/// Sales reports.
#[Object]
impl SalesQuery {
    /// Sales of a subtree (or a sales user's customers, or everything for an admin) between
    /// two days, grouped by day, week, month, child agent, sales user, product, channel or
    /// kind. Exact at every moment: answered from per-day rollups plus the sales not yet
    /// folded into them. FORBIDDEN for an agent the caller knows exists but may not see (an
    /// ancestor of its node), NOT_FOUND for any other it may not see; customers: FORBIDDEN.
    async fn sales_report(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The scope, the period and the grouping.")] input: SalesReportInput,
    ) -> async_graphql::Result<SalesReport> {
        let v = viewer(ctx)?;
        let app = state(ctx)?;
        report::check_period(input.from, input.to)?;
        // Who may see what is decided on the primary; the figures may come from the read
        // replica (`TOPUP_READ_DATABASE_URL`): a report is a snapshot either way, and one
        // from a replica is at most its lag old. Nothing here decides on money.
        // On the request's own connection: a request checks out one connection, and the
        // figures below may need it again.
        let scope = {
            let mut c = conn(ctx).await?;
            scope_on(&mut c, &v, input.agent_id.as_ref()).await?
        };
        let zone = &app.config.sales.time_zone;
        let (group_by, from, to) = (input.group_by, input.from, input.to);
        let report = match &app.read_pool {
            Some(replica) => {
                let mut c = replica.get().await.map_err(AppError::from)?;
                report::report(&mut c, scope, group_by, from, to, zone).await?
            }
            None => {
                let mut c = conn(ctx).await?;
                report::report(&mut c, scope, group_by, from, to, zone).await?
            }
        };
        Ok(SalesReport {
            group_by: input.group_by,
            from: input.from,
            to: input.to,
            report,
        })
    }

    /// The IANA time zone whose calendar days reports count in (`Asia/Shanghai` unless
    /// configured otherwise): `salesReport`'s `from` and `to`, its DAY rows and `liveSales`'
    /// `today` are days of this zone, whatever the client's own. For anyone signed in.
    async fn report_time_zone(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        viewer(ctx)?;
        Ok(state(ctx)?.config.sales.time_zone.clone())
    }
}

/// An agent on a sale's path.
#[derive(SimpleObject)]
pub struct LiveSaleAgent {
    /// The agent's id.
    id: ID,
    /// The agent's name today.
    name: String,
}

/// What happened in a live sale.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum LiveSaleKind {
    /// An order was paid.
    Payment,
    /// A refund of an order reached the payer.
    Refund,
}

/// A payment or refund in the watched scope, as it happens.
#[derive(SimpleObject)]
pub struct LiveSaleEvent {
    /// A payment or a refund.
    kind: LiveSaleKind,
    /// The order's number.
    order_no: String,
    /// What kind of order (recharge or purchase).
    order_kind: OrderKind,
    /// How it was paid (none for a purchase from the balance).
    channel: Option<Channel>,
    /// What the order paid, in fen.
    order_amount: Money,
    /// For a refund, what was refunded, in fen; for a payment, zero.
    refunded: Money,
    /// When it was paid or refunded.
    at: DateTime<Utc>,
    /// The customer's email, masked (`a***@example.com`).
    customer: String,
    /// The agents the order was attributed to when created, the top-level agent first, the
    /// order's own agent last (empty for an order without an agent).
    agent_path: Vec<LiveSaleAgent>,
    /// The watched scope's totals for today (report time zone), this sale included.
    today: SalesFigures,
}

/// Live sales.
#[derive(Default)]
pub struct SalesSubscription;

/// Live sales.
#[Subscription]
impl SalesSubscription {
    /// Every payment and successful refund in a subtree (for a SALES user: of its own
    /// customers; for an admin with no agent named: everywhere), from any instance, as it
    /// commits, with today's running totals. The scope is decided once, as for
    /// `salesReport`; when an agent moves, it is decided again and the stream ends (after
    /// an error) if the caller may no longer see the node. It also ends when the access
    /// token expires.
    async fn live_sales(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The node to watch; default: the caller's own node (for an admin, everything)."
        )]
        agent_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LiveSaleEvent>> + use<>>
    {
        let v = viewer(ctx)?;
        let app = state_arc(ctx)?.clone();
        // A move between deciding and registering would not reach this stream: note the
        // moves before deciding and decide again if one came meanwhile.
        let moves = app.live_sales.moves();
        let scope = scope_of(&app, &v, agent_id.as_ref()).await?;
        let rx = app.live_sales.subscribe(scope);
        if app.live_sales.moves() != moves && scope_of(&app, &v, agent_id.as_ref()).await? != scope
        {
            return Err(AppError::NotFound("agent").into());
        }
        let left = v.expires_at + LEEWAY_SECS - Utc::now().timestamp();
        let watch = Watch {
            token_deadline: tokio::time::Instant::now()
                + std::time::Duration::from_secs(left.max(0).unsigned_abs()),
            app,
            rx,
            viewer: v,
            agent_id,
            scope,
            done: false,
        };
        Ok(futures_util::stream::unfold(watch, |mut w| async move {
            if w.done {
                return None;
            }
            let item = w.next().await?;
            if item.is_err() {
                w.done = true;
            }
            Some((item, w))
        }))
    }
}

struct Watch {
    app: Arc<AppState>,
    token_deadline: tokio::time::Instant,
    rx: SalesWatch,
    viewer: Viewer,
    agent_id: Option<ID>,
    scope: Scope,
    done: bool,
}

impl Watch {
    /// The next sale of the scope, an error that ends the stream, or `None` at the end.
    // Session revocation (issue 11) ends streams here too: check the session alongside the
    // token deadline once revocations are announced.
    async fn next(&mut self) -> Option<async_graphql::Result<LiveSaleEvent>> {
        loop {
            let Ok(received) = tokio::time::timeout_at(self.token_deadline, self.rx.recv()).await
            else {
                let expired = AppError::Unauthenticated("access token expired");
                return Some(Err(expired.into()));
            };
            match received {
                // The scope's sales only, with its totals: nothing to read.
                Ok(LiveMessage::Sale(sale)) => return Some(emit(&sale).map_err(Into::into)),
                // Sales may have been missed while lagging; the scope may have changed.
                Ok(LiveMessage::Moved) | Err(RecvError::Lagged(_)) => {
                    match scope_of(&self.app, &self.viewer, self.agent_id.as_ref()).await {
                        Ok(scope) if scope == self.scope => {}
                        Ok(_) => return Some(Err(AppError::NotFound("agent").into())),
                        Err(e) => return Some(Err(e.into())),
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn emit(scoped: &ScopedSale) -> Result<LiveSaleEvent, AppError> {
    let (sale, today) = (&scoped.sale, scoped.today);
    let today =
        today.ok_or_else(|| AppError::Unavailable("today's totals could not be read".into()))?;
    Ok(LiveSaleEvent {
        kind: if sale.refund.is_some() {
            LiveSaleKind::Refund
        } else {
            LiveSaleKind::Payment
        },
        order_no: sale.order_no.to_string(),
        order_kind: sale.kind,
        channel: sale.channel,
        order_amount: sale.order_amount,
        refunded: sale.refund.map_or(Money::ZERO, |(_, amount)| amount),
        at: sale.at,
        customer: sale.masked_email.clone(),
        agent_path: sale
            .path
            .iter()
            .map(|(id, name)| LiveSaleAgent {
                id: ID(id.to_string()),
                name: name.clone(),
            })
            .collect(),
        today: today.into(),
    })
}
