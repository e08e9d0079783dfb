//! Wire formats: GMT+8 times, dates, fen and yuan amounts, nonces, status mappings, the
//! bill file, and the standalone sandbox's command line.

use chrono::{NaiveDate, TimeZone, Utc};
use clap::Parser;
use proptest::prelude::*;
use topup::gateway::sandbox::SandboxArgs;
use topup::gateway::swiftpass::bill::{BillError, parse_bill};
use topup::gateway::swiftpass::types::{
    format_date, format_time, format_yuan, nonce_str, parse_date, parse_fen, parse_time, parse_yuan,
};
use topup::gateway::swiftpass::{NativeService, RefundStatus, TradeState};

#[test]
fn times_are_gmt_plus_8() {
    let instant = Utc.with_ymd_and_hms(2016, 8, 2, 10, 0, 4).unwrap();
    assert_eq!(format_time(instant), "20160802180004");
    assert_eq!(parse_time("20160802180004"), Some(instant));
    // Crossing midnight in Beijing.
    let late = Utc.with_ymd_and_hms(2024, 12, 31, 16, 30, 0).unwrap();
    assert_eq!(format_time(late), "20250101003000");
    for bad in [
        "2016080218000",
        "201608021800045",
        "2016080218000x",
        "20161302180004",
        "+0160802180004",
        "",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
    let date = NaiveDate::from_ymd_opt(2025, 2, 27).unwrap();
    assert_eq!(format_date(date), "20250227");
    assert_eq!(parse_date("20250227"), Some(date));
    assert_eq!(parse_date("2025-02-27"), None);
    assert_eq!(parse_date("20250230"), None);
}

#[test]
fn amounts_are_exact() {
    assert_eq!(parse_fen("1"), Some(1));
    assert_eq!(parse_fen("5000000"), Some(5_000_000));
    for bad in ["", "-1", "+1", "1.0", "1e3", " 1", "99999999999999999999"] {
        assert_eq!(parse_fen(bad), None, "{bad}");
    }
    for (text, fen) in [
        ("2.00", 200),
        ("0.01", 1),
        ("14.5", 1450),
        ("0", 0),
        ("-1.23", -123),
        ("1234567.89", 123_456_789),
        ("0.10", 10),
    ] {
        assert_eq!(parse_yuan(text), Some(fen), "{text}");
    }
    for bad in [
        "", "1.234", ".5", "5.", "1,00", "¥1", "1.-1", "--1", "0.300%",
    ] {
        assert_eq!(parse_yuan(bad), None, "{bad}");
    }
    assert_eq!(format_yuan(0), "0.00");
    assert_eq!(format_yuan(5), "0.05");
    assert_eq!(format_yuan(123_456), "1234.56");
    assert_eq!(format_yuan(-5), "-0.05");
}

proptest! {
    #[test]
    fn yuan_round_trips(fen in -10_000_000_000i64..10_000_000_000) {
        prop_assert_eq!(parse_yuan(&format_yuan(fen)), Some(fen));
    }

    #[test]
    fn times_round_trip_to_the_second(secs in 0i64..4_000_000_000) {
        let instant = Utc.timestamp_opt(secs, 0).unwrap();
        prop_assert_eq!(parse_time(&format_time(instant)), Some(instant));
    }
}

#[test]
fn nonces_are_32_alphanumerics() {
    let a = nonce_str();
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(a, nonce_str());
}

#[test]
fn status_mappings() {
    for (wire, state) in [
        ("SUCCESS", TradeState::Success),
        ("REFUND", TradeState::Refund),
        ("NOTPAY", TradeState::NotPay),
        ("CLOSED", TradeState::Closed),
        ("REVERSE", TradeState::Reverse),
        ("REVOKED", TradeState::Revoked),
        ("REVOK", TradeState::Revoked),
        ("USERPAYING", TradeState::UserPaying),
        ("PAYERROR", TradeState::PayError),
        ("WHATEVER", TradeState::Other("WHATEVER".into())),
    ] {
        assert_eq!(TradeState::from_wire(wire), state, "{wire}");
        assert_eq!(TradeState::from_bill_label(state.bill_label()), state);
    }
    assert_eq!(TradeState::from_bill_label("支付成功"), TradeState::Success);
    assert_eq!(TradeState::from_bill_label("转入退款"), TradeState::Refund);
    for (wire, status) in [
        ("SUCCESS", RefundStatus::Success),
        ("PROCESSING", RefundStatus::Processing),
        ("FAIL", RefundStatus::Fail),
        ("NOTSURE", RefundStatus::NotSure),
        ("CHANGE", RefundStatus::Change),
    ] {
        assert_eq!(RefundStatus::from_wire(wire), status);
        assert_eq!(status.as_wire(), wire);
    }
    assert_eq!(NativeService::Weixin.as_str(), "pay.weixin.native");
    assert_eq!(NativeService::Alipay.as_str(), "pay.alipay.native");
    assert_eq!(
        NativeService::from_service("pay.alipay.native"),
        Some(NativeService::Alipay)
    );
}

/// The layout of a real bill (protocol §6, JF `StringToMapConverter.java`) with made-up
/// values: a `?` before the header, back-ticked fields, a summary whose red-packet total is a
/// bare `0`, and a goods name with a comma.
const SAMPLE: &str = "?交易时间,公众账号ID,第三方商户号,商户号,子商户号,设备编号,平台订单号,第三方订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,企业红包金额,平台退款单号,商户退款单号,退款金额,企业红包退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,终端类型,对账标识,门店编号,商户名称,收银员,子商户ID,免充值券金额,实收金额,结算金额,扩展字段2,扩展字段3,扩展字段4\r
`2025-02-27 09:45:17,`wx0000000000000000,`742600000,`204550000000,`204540000000,`,`20250227000000000000000000000001,`4200000000202502270000000001,`R0001,`oUser1,`pay.weixin.native,`支付成功,`OTHERS,`CNY,`2.00,`0.00,`,`,`,`,`,`,`充值, 月卡,`,`0.01,`0.300%,`API,`0,`,`测试商户,`,`oSub1,`0.00,`2.00,`1.99,`,`,`\r
`2025-02-27 11:01:56,`wx0000000000000000,`742600000,`204550000000,`204540000000,`,`20250227000000000000000000000002,`4200000000202502270000000002,`R0002,`oUser2,`pay.weixin.native,`转入退款,`OTHERS,`CNY,`4.00,`0.00,`7551000001202502270000000001,`RF0002,`1.50,`0.00,`ORIGINAL,`退款成功,`充值,`a=1,`0.00,`0.300%,`API,`0,`,`测试商户,`,`oSub1,`0.00,`-1.50,`-1.50,`,`,`\r
总交易单数,总交易额,总退款金额,总企业红包退款金额,总手续费金额,总实收金额\r
`2,`2.00,`1.50,`0,`0.01,`0.50\r
";

#[test]
fn parses_the_real_bill_layout() {
    let bill = parse_bill(SAMPLE).unwrap();
    assert_eq!(bill.rows.len(), 2);
    let paid = &bill.rows[0];
    assert_eq!(
        paid.trade_time,
        Utc.with_ymd_and_hms(2025, 2, 27, 1, 45, 17).unwrap()
    );
    assert_eq!(paid.out_trade_no, "R0001");
    assert_eq!(paid.trade_state, TradeState::Success);
    assert_eq!(paid.total_fee, 200);
    assert_eq!(paid.refund_fee, 0);
    assert_eq!(paid.poundage_fee, 1);
    assert_eq!(paid.receipt_fee, 200);
    assert_eq!(paid.body.as_deref(), Some("充值, 月卡"));
    assert_eq!(paid.refund_id, None);
    assert_eq!(paid.columns.len(), 38);
    let refund = &bill.rows[1];
    assert_eq!(refund.trade_state, TradeState::Refund);
    assert_eq!(refund.out_refund_no.as_deref(), Some("RF0002"));
    assert_eq!(refund.refund_fee, 150);
    assert_eq!(refund.receipt_fee, -150);
    assert_eq!(refund.refund_status.as_deref(), Some("退款成功"));
    let s = &bill.summary;
    assert_eq!(s.count, 2);
    assert_eq!(s.total_fee, Some(200));
    assert_eq!(s.refund_fee, Some(150));
    assert_eq!(s.coupon_refund_fee, Some(0));
    assert_eq!(s.poundage_fee, Some(1));
    assert_eq!(s.receipt_fee, Some(50));
}

#[test]
fn a_misread_bill_is_an_error() {
    assert_eq!(parse_bill(""), Err(BillError::Empty));
    // A truncated file: no summary.
    let truncated: String = SAMPLE.lines().take(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(parse_bill(&truncated), Err(BillError::Summary));
    // A line with a missing field.
    let short = SAMPLE.replacen("`0.300%,", "", 1);
    assert!(matches!(
        parse_bill(&short),
        Err(BillError::FieldCount { line: 2, .. })
    ));
    // An amount that is not yuan with at most two decimals.
    let odd = SAMPLE.replacen("`2.00,`0.00,`,", "`2.001,`0.00,`,", 1);
    assert!(matches!(
        parse_bill(&odd),
        Err(BillError::InvalidValue { .. })
    ));
    let no_column = SAMPLE.replacen("商户订单号", "订单号", 1);
    assert_eq!(
        parse_bill(&no_column),
        Err(BillError::MissingColumn("商户订单号"))
    );
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sandbox: SandboxArgs,
}

#[test]
fn standalone_command_line() {
    let cli = Cli::try_parse_from(["sandbox"]).unwrap();
    assert_eq!(cli.sandbox.listen.to_string(), "127.0.0.1:8001");
    assert_eq!(cli.sandbox.mch_id, "7551000001");
    assert_eq!(cli.sandbox.time_scale, 1.0);
    let cli = Cli::try_parse_from([
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--mch-id",
        "123",
        "--key",
        "s3cr3t-key",
        "--time-scale",
        "0.01",
    ])
    .unwrap();
    assert_eq!(cli.sandbox.mch_id, "123");
    assert_eq!(cli.sandbox.key, "s3cr3t-key");
    let shown = format!("{:?}", cli.sandbox);
    assert!(!shown.contains("s3cr3t-key"), "{shown}");
    assert_eq!(cli.sandbox.time_scale, 0.01);
    // RSA needs both keys.
    assert!(Cli::try_parse_from(["sandbox", "--merchant-public-key", "m.pem"]).is_err());
}
