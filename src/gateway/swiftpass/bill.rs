//! The merchant bill file of `pay.bill.merchant` (protocol §6): its layout and its parser.
//!
//! The file is plain text: a header line (possibly behind a BOM or a `?`), one line per
//! trade or refund with every field prefixed by a back-tick, then a summary header and one
//! summary line. Amounts are yuan with two decimals; they are converted to fen exactly.
//! Columns are read by their header name, so a white-label variant with extra or reordered
//! columns still parses.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use super::types::{BEIJING, TradeState, parse_yuan};

/// The 38 columns of a trade line, in the order SwiftPass writes them.
pub const TRADE_COLUMNS: [&str; 38] = [
    "交易时间",
    "公众账号ID",
    "第三方商户号",
    "商户号",
    "子商户号",
    "设备编号",
    "平台订单号",
    "第三方订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "总金额",
    "企业红包金额",
    "平台退款单号",
    "商户退款单号",
    "退款金额",
    "企业红包退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "终端类型",
    "对账标识",
    "门店编号",
    "商户名称",
    "收银员",
    "子商户ID",
    "免充值券金额",
    "实收金额",
    "结算金额",
    "扩展字段2",
    "扩展字段3",
    "扩展字段4",
];

/// The columns of the summary line.
pub const SUMMARY_COLUMNS: [&str; 6] = [
    "总交易单数",
    "总交易额",
    "总退款金额",
    "总企业红包退款金额",
    "总手续费金额",
    "总实收金额",
];

/// A downloaded and parsed bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    /// One row per payment or refund, in file order.
    pub rows: Vec<BillRow>,
    /// The totals SwiftPass computed.
    pub summary: BillSummary,
}

/// One line of the bill. Amounts are fen; an empty amount column reads as 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRow {
    /// 交易时间 (for a refund line: when the refund happened).
    pub trade_time: DateTime<Utc>,
    /// 商户号.
    pub mch_id: Option<String>,
    /// 平台订单号: SwiftPass platform order number.
    pub transaction_id: Option<String>,
    /// 第三方订单号: upstream order number.
    pub out_transaction_id: Option<String>,
    /// 商户订单号: our order number.
    pub out_trade_no: String,
    /// 交易类型, e.g. `pay.weixin.native`.
    pub trade_type: Option<String>,
    /// 交易状态: `Success` (支付成功) for a payment line, `Refund` (转入退款) for a refund line.
    pub trade_state: TradeState,
    /// 总金额: the order total.
    pub total_fee: i64,
    /// 平台退款单号.
    pub refund_id: Option<String>,
    /// 商户退款单号: our refund number.
    pub out_refund_no: Option<String>,
    /// 退款金额.
    pub refund_fee: i64,
    /// 退款状态, verbatim.
    pub refund_status: Option<String>,
    /// 商品名称.
    pub body: Option<String>,
    /// 商户数据包: the `attach` of the order.
    pub attach: Option<String>,
    /// 手续费: the platform's fee.
    pub poundage_fee: i64,
    /// 实收金额.
    pub receipt_fee: i64,
    /// Every column as (header, value without the back-tick).
    pub columns: Vec<(String, String)>,
}

/// The summary line. Amounts are fen; a column the file does not have is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillSummary {
    /// 总交易单数 (or 总退款单数 in a refund bill).
    pub count: u64,
    /// 总交易额.
    pub total_fee: Option<i64>,
    /// 总退款金额.
    pub refund_fee: Option<i64>,
    /// 总企业红包退款金额.
    pub coupon_refund_fee: Option<i64>,
    /// 总手续费金额.
    pub poundage_fee: Option<i64>,
    /// 总实收金额.
    pub receipt_fee: Option<i64>,
}

/// Why a bill file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// The file has no header line.
    #[error("empty bill file")]
    Empty,
    /// A column the parser needs is not in the header.
    #[error("bill header lacks column {0}")]
    MissingColumn(&'static str),
    /// A line does not have as many fields as the header.
    #[error("line {line}: {got} fields, header has {expected}")]
    FieldCount {
        /// 1-based line number.
        line: usize,
        /// Fields found.
        got: usize,
        /// Columns in the header.
        expected: usize,
    },
    /// A field that should be a time or an amount is not.
    #[error("line {line}: column {column} has invalid value {value:?}")]
    InvalidValue {
        /// 1-based line number.
        line: usize,
        /// The column.
        column: String,
        /// What was there.
        value: String,
    },
    /// The summary header is not followed by exactly one value line.
    #[error("summary section malformed")]
    Summary,
}

/// True for the line that starts the summary section.
fn is_summary_header(line: &str) -> bool {
    line.starts_with("总交易单数") || line.starts_with("总退款单数")
}

/// Splits a back-tick line (`` `a,`b,`c ``) into its values. Splitting on `` ,` `` rather than
/// `,` keeps commas inside values (goods names) intact.
fn split_ticked(line: &str) -> Vec<String> {
    line.strip_prefix('`')
        .unwrap_or(line)
        .split(",`")
        .map(str::to_owned)
        .collect()
}

/// Parses a bill file. Blank lines are ignored; anything else that does not fit is an error,
/// because a misread bill would make reconciliation wrong.
pub fn parse_bill(text: &str) -> Result<Bill, BillError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());

    let (_, header) = lines.next().ok_or(BillError::Empty)?;
    let header = header.trim_start_matches(['\u{feff}', '?']);
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_owned()).collect();
    let index = |name: &'static str| columns.iter().position(|c| c == name);
    let need = |name: &'static str| index(name).ok_or(BillError::MissingColumn(name));
    let time_col = need("交易时间")?;
    let out_trade_no_col = need("商户订单号")?;
    let state_col = need("交易状态")?;
    let total_col = need("总金额")?;
    let transaction_col = index("平台订单号").or_else(|| index("威富通订单号"));

    let mut rows = Vec::new();
    let mut summary = None;
    while let Some((line_no, line)) = lines.next() {
        if is_summary_header(line) {
            let (_, values) = lines.next().ok_or(BillError::Summary)?;
            if lines.next().is_some() {
                return Err(BillError::Summary);
            }
            summary = Some(parse_summary(line, values, line_no + 1)?);
            break;
        }
        let values = split_ticked(line);
        if values.len() != columns.len() {
            return Err(BillError::FieldCount {
                line: line_no,
                got: values.len(),
                expected: columns.len(),
            });
        }
        let invalid = |column: usize| BillError::InvalidValue {
            line: line_no,
            column: columns[column].clone(),
            value: values[column].clone(),
        };
        let text_at = |column: Option<usize>| {
            column
                .map(|c| values[c].trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let amount_at = |column: Option<usize>| -> Result<i64, BillError> {
            match column.map(|c| (c, values[c].trim())) {
                None | Some((_, "")) => Ok(0),
                Some((c, v)) => parse_yuan(v).ok_or_else(|| invalid(c)),
            }
        };
        let trade_time =
            NaiveDateTime::parse_from_str(values[time_col].trim(), "%Y-%m-%d %H:%M:%S")
                .ok()
                .and_then(|t| BEIJING.from_local_datetime(&t).single())
                .ok_or_else(|| invalid(time_col))?
                .with_timezone(&Utc);
        let out_trade_no =
            text_at(Some(out_trade_no_col)).ok_or_else(|| invalid(out_trade_no_col))?;
        let total_fee = match values[total_col].trim() {
            "" => return Err(invalid(total_col)),
            v => parse_yuan(v).ok_or_else(|| invalid(total_col))?,
        };
        rows.push(BillRow {
            trade_time,
            mch_id: text_at(index("商户号")),
            transaction_id: text_at(transaction_col),
            out_transaction_id: text_at(index("第三方订单号")),
            out_trade_no,
            trade_type: text_at(index("交易类型")),
            trade_state: TradeState::from_bill_label(values[state_col].trim()),
            total_fee,
            refund_id: text_at(index("平台退款单号")),
            out_refund_no: text_at(index("商户退款单号")),
            refund_fee: amount_at(index("退款金额"))?,
            refund_status: text_at(index("退款状态")),
            body: text_at(index("商品名称")),
            attach: text_at(index("商户数据包")),
            poundage_fee: amount_at(index("手续费"))?,
            receipt_fee: amount_at(index("实收金额"))?,
            columns: columns
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect(),
        });
    }
    let summary = summary.ok_or(BillError::Summary)?;
    Ok(Bill { rows, summary })
}

/// Parses the summary header and value line.
fn parse_summary(header: &str, values: &str, line: usize) -> Result<BillSummary, BillError> {
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let values = split_ticked(values);
    if values.len() != names.len() {
        return Err(BillError::FieldCount {
            line,
            got: values.len(),
            expected: names.len(),
        });
    }
    let get = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .map(|i| (i, values[i].trim()))
    };
    let amount = |name: &str| -> Result<Option<i64>, BillError> {
        get(name)
            .map(|(i, v)| {
                parse_yuan(v).ok_or_else(|| BillError::InvalidValue {
                    line,
                    column: names[i].to_owned(),
                    value: v.to_owned(),
                })
            })
            .transpose()
    };
    let (count_index, count) = get("总交易单数")
        .or_else(|| get("总退款单数"))
        .ok_or(BillError::Summary)?;
    let count = count.parse().map_err(|_| BillError::InvalidValue {
        line,
        column: names[count_index].to_owned(),
        value: count.to_owned(),
    })?;
    Ok(BillSummary {
        count,
        total_fee: amount("总交易额")?,
        refund_fee: amount("总退款金额")?,
        coupon_refund_fee: amount("总企业红包退款金额")?,
        poundage_fee: amount("总手续费金额")?,
        receipt_fee: amount("总实收金额")?,
    })
}
