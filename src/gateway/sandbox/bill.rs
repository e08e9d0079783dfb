//! The sandbox's bill file for a GMT+8 day, in the layout of protocol §6: payment lines on
//! the day they were paid, refund lines on the day the refund succeeded.
//!
//! Fees are simulated at 0.3 % (rounded half up to the fen, like the real sample); a refund
//! line's received and settled amounts are the negative refund. A bill fault (`/control`)
//! makes an order's lines read otherwise than what happened, or leaves them out; the
//! summary is computed from the lines as written, like the gateway's own.

use chrono::{DateTime, NaiveDate, Utc};

use super::control::BillFault;
use super::state::{Order, Refund, State};
use crate::gateway::swiftpass::bill::{SUMMARY_COLUMNS, TRADE_COLUMNS};
use crate::gateway::swiftpass::types::{
    BEIJING, BillType, NativeService, RefundStatus, TradeState, beijing_date, format_yuan,
};

/// One line before formatting.
struct Line<'a> {
    at: DateTime<Utc>,
    order: &'a Order,
    refund: Option<&'a Refund>,
    fault: BillFault,
}

/// The platform fee on an amount: 0.3 %, rounded half up.
fn poundage(fen: i64) -> i64 {
    (fen * 3 + 500) / 1000
}

/// Free text must not break the line format.
fn clean(text: &str) -> String {
    text.replace('`', "'").replace(['\r', '\n'], " ")
}

/// Renders the bill of `date` (GMT+8).
pub(crate) fn render(
    state: &State,
    date: NaiveDate,
    kind: BillType,
    mch_id: &str,
    now: DateTime<Utc>,
) -> String {
    let mut lines: Vec<Line<'_>> = Vec::new();
    for order in state.orders.values() {
        let fault = state.faults.bill_for(&order.out_trade_no);
        if fault.omit {
            continue;
        }
        if let Some(payment) = &order.payment
            && kind != BillType::Refund
            && beijing_date(payment.time_end) == date
        {
            lines.push(Line {
                at: payment.time_end,
                order,
                refund: None,
                fault: fault.clone(),
            });
        }
        if kind != BillType::Success {
            for refund in &order.refunds {
                if refund.status(now) == RefundStatus::Success
                    && beijing_date(refund.succeeds_at) == date
                {
                    lines.push(Line {
                        at: refund.succeeds_at,
                        order,
                        refund: Some(refund),
                        fault: fault.clone(),
                    });
                }
            }
        }
    }
    lines.sort_by(|a, b| (a.at, &a.order.out_trade_no).cmp(&(b.at, &b.order.out_trade_no)));

    let mut out = String::from("\u{feff}");
    out.push_str(&TRADE_COLUMNS.join(","));
    out.push('\n');
    let (mut total, mut refunded, mut fees, mut received) = (0i64, 0i64, 0i64, 0i64);
    for line in &lines {
        let order = line.order;
        let payment = order.payment.as_ref();
        let total_fee = line.fault.total_fee.unwrap_or(order.total_fee);
        let trade_type = line
            .fault
            .trade_type
            .clone()
            .unwrap_or_else(|| order.service.as_str().to_owned());
        let (state, refund, fee, receipt) = match line.refund {
            None => {
                let fee = poundage(total_fee);
                total += total_fee;
                (TradeState::Success, None, fee, total_fee)
            }
            Some(refund) => {
                let refund_fee = line.fault.refund_fee.unwrap_or(refund.refund_fee);
                refunded += refund_fee;
                (
                    TradeState::Refund,
                    Some((refund, refund_fee)),
                    0,
                    -refund_fee,
                )
            }
        };
        fees += fee;
        received += receipt;
        let appid = match order.service {
            NativeService::Weixin => "wxsandbox0000000",
            NativeService::Alipay => "",
        };
        let fields: [String; 38] = [
            line.at
                .with_timezone(&BEIJING)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            appid.into(),
            String::new(),
            mch_id.into(),
            String::new(),
            String::new(),
            order.transaction_id.clone(),
            payment
                .map(|p| p.out_transaction_id.clone())
                .unwrap_or_default(),
            order.out_trade_no.clone(),
            payment.map(|p| p.payer.clone()).unwrap_or_default(),
            clean(&trade_type),
            state.bill_label().into(),
            payment.map(|p| p.bank_type.to_owned()).unwrap_or_default(),
            "CNY".into(),
            format_yuan(total_fee),
            "0.00".into(),
            refund.map(|(r, _)| r.refund_id.clone()).unwrap_or_default(),
            refund
                .map(|(r, _)| r.out_refund_no.clone())
                .unwrap_or_default(),
            refund.map(|(_, fee)| format_yuan(fee)).unwrap_or_default(),
            refund.map(|_| "0.00".to_owned()).unwrap_or_default(),
            refund.map(|_| "ORIGINAL".to_owned()).unwrap_or_default(),
            refund.map(|_| "退款成功".to_owned()).unwrap_or_default(),
            clean(&order.body),
            clean(order.attach.as_deref().unwrap_or_default()),
            format_yuan(fee),
            "0.300%".into(),
            "API".into(),
            "0".into(),
            String::new(),
            "Topup sandbox".into(),
            String::new(),
            String::new(),
            "0.00".into(),
            format_yuan(receipt),
            format_yuan(receipt - fee),
            String::new(),
            String::new(),
            String::new(),
        ];
        let ticked: Vec<String> = fields.iter().map(|f| format!("`{f}")).collect();
        out.push_str(&ticked.join(","));
        out.push('\n');
    }
    out.push_str(&SUMMARY_COLUMNS.join(","));
    out.push('\n');
    let summary = [
        lines.len().to_string(),
        format_yuan(total),
        format_yuan(refunded),
        "0.00".to_owned(),
        format_yuan(fees),
        format_yuan(received),
    ];
    let ticked: Vec<String> = summary.iter().map(|f| format!("`{f}")).collect();
    out.push_str(&ticked.join(","));
    out.push('\n');
    out
}
