//! The client against the sandbox, for every service, with MD5 and with RSA_1_256; plus
//! the client's handling of answers it must not trust.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use poem::Response;
use topup::gateway::swiftpass::sign::{Credentials, SignType, md5_sign};
use topup::gateway::swiftpass::types::{beijing_date, format_time};
use topup::gateway::swiftpass::xml::to_xml;
use topup::gateway::swiftpass::{
    BillType, GatewayError, NativeRequest, NativeService, Params, RefundRef, RefundRequest,
    RefundStatus, TradeRef, TradeState,
};

use super::support::{
    MCH_ID, MD5_KEY, client, client_with, eventually, http, pay, serve, start_sandbox,
};

pub fn native_request(service: NativeService, out_trade_no: &str, total_fee: i64) -> NativeRequest {
    let now = Utc::now();
    NativeRequest {
        service,
        out_trade_no: out_trade_no.into(),
        body: "Topup 充值, <100> & more".into(),
        total_fee,
        mch_create_ip: "127.0.0.1".into(),
        notify_url: "http://127.0.0.1:9/notify".into(),
        attach: Some("user=42&plan=a".into()),
        time_start: now,
        time_expire: now + TimeDelta::hours(2),
    }
}

fn is_platform_id(id: &str) -> bool {
    id.len() == MCH_ID.len() + 18
        && id.starts_with(MCH_ID)
        && id.bytes().all(|b| b.is_ascii_digit())
}

macro_rules! with_md5_and_rsa {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use topup::gateway::swiftpass::sign::SignType;
            #[tokio::test]
            async fn md5() {
                super::$scenario(SignType::Md5).await
            }
            #[tokio::test]
            async fn rsa_1_256() {
                super::$scenario(SignType::Rsa1_256).await
            }
        }
    )*};
}

with_md5_and_rsa!(
    native_for_both_channels,
    query_before_and_after_payment,
    close_and_close_after_payment,
    refunds_partial_full_excess_and_repeated,
    refund_query_goes_from_processing_to_success,
    bill_download_in_fen,
    rejections_and_unknowns,
);

async fn native_for_both_channels(sign_type: SignType) {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, sign_type);
    for (service, no) in [(NativeService::Weixin, "W1"), (NativeService::Alipay, "A1")] {
        let request = native_request(service, no, 1234);
        let answer = client.native(&request).await.unwrap();
        let uuid = answer.uuid.clone().unwrap();
        assert_eq!(uuid.len(), 32);
        assert_eq!(answer.code_url, format!("{}/qr/{uuid}", sb.base));
        let encoded: String =
            url::form_urlencoded::byte_serialize(answer.code_url.as_bytes()).collect();
        assert_eq!(
            answer.code_img_url.as_deref(),
            Some(format!("{}/pay/qrcode?uuid={encoded}", sb.base).as_str())
        );

        // The same order again: the same code.
        assert_eq!(client.native(&request).await.unwrap(), answer);

        // What the customer sees after scanning.
        let page = http().get(&answer.code_url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("¥12.34"), "{html}");
        assert!(
            html.contains("Topup 充值, &lt;100&gt; &amp; more"),
            "{html}"
        );
        assert!(html.contains("NOTPAY"), "{html}");
        assert!(html.contains(&format!("/orders/{no}/pay")), "{html}");
        let image = http()
            .get(answer.code_img_url.unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(image.status(), 200);
        assert!(image.text().await.unwrap().contains("<svg"));
    }
}

async fn query_before_and_after_payment(sign_type: SignType) {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, sign_type);
    client
        .native(&native_request(NativeService::Alipay, "Q1", 500))
        .await
        .unwrap();

    let before = client
        .query(TradeRef::OutTradeNo("Q1".into()))
        .await
        .unwrap();
    assert_eq!(before.trade_state, TradeState::NotPay);
    assert_eq!(before.out_trade_no, "Q1");
    assert_eq!(before.total_fee, Some(500));
    assert_eq!(before.time_end, None);
    assert_eq!(before.out_transaction_id, None);
    let transaction_id = before.transaction_id.clone().unwrap();
    assert!(is_platform_id(&transaction_id), "{transaction_id}");

    let paid_after = Utc::now() - TimeDelta::seconds(1);
    assert_eq!(pay(&sb.base, "Q1", None).await.0, 200);
    for by in [
        TradeRef::OutTradeNo("Q1".into()),
        TradeRef::TransactionId(transaction_id.clone()),
    ] {
        let after = client.query(by).await.unwrap();
        assert_eq!(after.trade_state, TradeState::Success);
        assert_eq!(after.out_trade_no, "Q1");
        assert_eq!(
            after.transaction_id.as_deref(),
            Some(transaction_id.as_str())
        );
        assert_eq!(after.total_fee, Some(500));
        assert_eq!(after.trade_type.as_deref(), Some("pay.alipay.native"));
        assert_eq!(after.params["attach"], "user=42&plan=a");
        let out_transaction_id = after.out_transaction_id.unwrap();
        assert_eq!(out_transaction_id.len(), 28);
        let time_end = after.time_end.unwrap();
        assert!(time_end >= paid_after && time_end <= Utc::now());
    }

    let missing = client.query(TradeRef::OutTradeNo("nope".into())).await;
    assert_eq!(
        missing,
        Err(GatewayError::Rejected {
            code: "Order not exists".into(),
            message: "订单不存在".into()
        })
    );
}

async fn close_and_close_after_payment(sign_type: SignType) {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, sign_type);
    client
        .native(&native_request(NativeService::Weixin, "C1", 100))
        .await
        .unwrap();
    client.close("C1").await.unwrap();
    let state = client
        .query(TradeRef::OutTradeNo("C1".into()))
        .await
        .unwrap();
    assert_eq!(state.trade_state, TradeState::Closed);
    // Closing twice is harmless; paying a closed order is refused.
    client.close("C1").await.unwrap();
    let (status, body) = pay(&sb.base, "C1", None).await;
    assert_eq!(status, 409, "{body}");

    client
        .native(&native_request(NativeService::Weixin, "C2", 100))
        .await
        .unwrap();
    pay(&sb.base, "C2", None).await;
    match client.close("C2").await {
        Err(GatewayError::Rejected { code, .. }) => assert_eq!(code, "Order paid"),
        other => panic!("closing a paid order: {other:?}"),
    }
    match client.close("unknown").await {
        Err(GatewayError::Rejected { code, .. }) => assert_eq!(code, "Order not exists"),
        other => panic!("closing an unknown order: {other:?}"),
    }
}

async fn refunds_partial_full_excess_and_repeated(sign_type: SignType) {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, sign_type);
    client
        .native(&native_request(NativeService::Weixin, "F1", 1000))
        .await
        .unwrap();
    let refund = |no: &str, fee: i64| RefundRequest {
        out_trade_no: "F1".into(),
        out_refund_no: no.into(),
        total_fee: 1000,
        refund_fee: fee,
    };

    // Not paid yet: nothing to refund.
    assert!(matches!(
        client.refund(&refund("RF0", 100)).await,
        Err(GatewayError::Rejected { .. })
    ));
    pay(&sb.base, "F1", None).await;

    let partial = client.refund(&refund("RF1", 300)).await.unwrap();
    assert_eq!(partial.out_refund_no, "RF1");
    assert_eq!(partial.refund_fee, Some(300));
    assert!(is_platform_id(&partial.refund_id), "{}", partial.refund_id);
    // The same refund number is processed once: the same answer, no second refund.
    let again = client.refund(&refund("RF1", 300)).await.unwrap();
    assert_eq!(again.refund_id, partial.refund_id);
    // The same number with another amount is refused.
    assert!(matches!(
        client.refund(&refund("RF1", 301)).await,
        Err(GatewayError::Rejected { .. })
    ));

    let too_much = client.refund(&refund("RF2", 701)).await;
    assert_eq!(
        too_much,
        Err(GatewayError::Rejected {
            code: "REFUND_FEE_INVALID".into(),
            message: "退款金额大于支付金额".into()
        })
    );
    let rest = client.refund(&refund("RF2", 700)).await.unwrap();
    assert_ne!(rest.refund_id, partial.refund_id);
    match client.refund(&refund("RF3", 1)).await {
        Err(GatewayError::Rejected { code, .. }) => assert_eq!(code, "REFUND_FEE_INVALID"),
        other => panic!("refund beyond the payment: {other:?}"),
    }

    let state = client
        .query(TradeRef::OutTradeNo("F1".into()))
        .await
        .unwrap();
    assert_eq!(state.trade_state, TradeState::Refund);
    let listed = client
        .refund_query(RefundRef::OutTradeNo("F1".into()))
        .await
        .unwrap();
    let fees: Vec<(String, i64)> = listed
        .refunds
        .iter()
        .map(|r| (r.out_refund_no.clone(), r.refund_fee))
        .collect();
    assert_eq!(fees, vec![("RF1".into(), 300), ("RF2".into(), 700)]);
    let total: i64 = listed.refunds.iter().map(|r| r.refund_fee).sum();
    assert_eq!(total, 1000);
}

async fn refund_query_goes_from_processing_to_success(sign_type: SignType) {
    // Refunds take 20 s × time_scale = 2 s here: long enough to see PROCESSING first.
    let sb = start_sandbox(0.1).await;
    let client = client(&sb, sign_type);
    client
        .native(&native_request(NativeService::Alipay, "P1", 800))
        .await
        .unwrap();
    pay(&sb.base, "P1", None).await;
    let accepted = client
        .refund(&RefundRequest {
            out_trade_no: "P1".into(),
            out_refund_no: "PR1".into(),
            total_fee: 800,
            refund_fee: 800,
        })
        .await
        .unwrap();

    let first = client
        .refund_query(RefundRef::OutRefundNo("PR1".into()))
        .await
        .unwrap();
    assert_eq!(first.refunds.len(), 1);
    assert_eq!(first.refunds[0].refund_status, RefundStatus::Processing);
    assert_eq!(first.refunds[0].refund_time, None);
    assert_eq!(first.out_trade_no.as_deref(), Some("P1"));

    let done = eventually("refund success", Duration::from_secs(15), || {
        let client = client.clone();
        let refund_id = accepted.refund_id.clone();
        async move {
            let q = client
                .refund_query(RefundRef::RefundId(refund_id))
                .await
                .unwrap();
            (q.refunds[0].refund_status == RefundStatus::Success).then_some(q)
        }
    })
    .await;
    let item = &done.refunds[0];
    assert_eq!(item.out_refund_no, "PR1");
    assert_eq!(item.refund_fee, 800);
    assert!(item.refund_time.is_some());
    assert_eq!(item.refund_channel.as_deref(), Some("ORIGINAL"));

    assert!(matches!(
        client
            .refund_query(RefundRef::OutRefundNo("none".into()))
            .await,
        Err(GatewayError::Rejected { .. })
    ));
}

async fn bill_download_in_fen(sign_type: SignType) {
    // Refunds succeed after 20 ms.
    let sb = start_sandbox(0.001).await;
    let client = client(&sb, sign_type);
    client
        .native(&native_request(NativeService::Weixin, "B1", 1234))
        .await
        .unwrap();
    client
        .native(&native_request(NativeService::Alipay, "B2", 1))
        .await
        .unwrap();
    client
        .native(&native_request(NativeService::Alipay, "B3", 999))
        .await
        .unwrap(); // never paid: not in the bill
    pay(&sb.base, "B1", None).await;
    pay(&sb.base, "B2", None).await;
    client
        .refund(&RefundRequest {
            out_trade_no: "B1".into(),
            out_refund_no: "BR1".into(),
            total_fee: 1234,
            refund_fee: 234,
        })
        .await
        .unwrap();
    let refunds = eventually("refund success", Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            let q = client
                .refund_query(RefundRef::OutRefundNo("BR1".into()))
                .await
                .unwrap();
            (q.refunds[0].refund_status == RefundStatus::Success).then_some(q)
        }
    })
    .await;

    // Each line is billed on its own GMT+8 day; near midnight those may differ.
    let mut days = BTreeSet::new();
    for no in ["B1", "B2"] {
        let q = client.query(TradeRef::OutTradeNo(no.into())).await.unwrap();
        days.insert(beijing_date(q.time_end.unwrap()));
    }
    days.insert(beijing_date(refunds.refunds[0].refund_time.unwrap()));

    let (mut rows, mut count, mut total, mut refunded) = (Vec::new(), 0, 0, 0);
    for day in &days {
        let bill = client.bill(*day, BillType::All).await.unwrap();
        count += bill.summary.count;
        total += bill.summary.total_fee.unwrap();
        refunded += bill.summary.refund_fee.unwrap();
        rows.extend(bill.rows);
    }
    assert_eq!(rows.len(), 3);
    assert_eq!(count, 3);
    assert_eq!(total, 1235);
    assert_eq!(refunded, 234);

    let b1 = rows
        .iter()
        .find(|r| r.out_trade_no == "B1" && r.trade_state == TradeState::Success)
        .unwrap();
    assert_eq!(b1.total_fee, 1234);
    assert_eq!(b1.refund_fee, 0);
    assert_eq!(b1.trade_type.as_deref(), Some("pay.weixin.native"));
    assert_eq!(b1.body.as_deref(), Some("Topup 充值, <100> & more"));
    assert_eq!(b1.attach.as_deref(), Some("user=42&plan=a"));
    assert_eq!(b1.poundage_fee, 4); // 0.3 % of 12.34, rounded
    let b2 = rows.iter().find(|r| r.out_trade_no == "B2").unwrap();
    assert_eq!(b2.total_fee, 1);
    assert_eq!(b2.mch_id.as_deref(), Some(MCH_ID));
    let refund = rows
        .iter()
        .find(|r| r.trade_state == TradeState::Refund)
        .unwrap();
    assert_eq!(refund.out_trade_no, "B1");
    assert_eq!(refund.out_refund_no.as_deref(), Some("BR1"));
    assert_eq!(refund.refund_fee, 234);
    assert_eq!(refund.total_fee, 1234);
    assert!(!rows.iter().any(|r| r.out_trade_no == "B3"));

    // Kinds filter the lines.
    let day = *days.iter().next().unwrap();
    if days.len() == 1 {
        let payments = client.bill(day, BillType::Success).await.unwrap();
        assert_eq!(payments.rows.len(), 2);
        let refunds_only = client.bill(day, BillType::Refund).await.unwrap();
        assert_eq!(refunds_only.rows.len(), 1);
        assert_eq!(refunds_only.summary.refund_fee, Some(234));
    }
    let empty = client
        .bill(day - TimeDelta::days(3), BillType::All)
        .await
        .unwrap();
    assert!(empty.rows.is_empty());
    assert_eq!(empty.summary.count, 0);
    assert_eq!(empty.summary.total_fee, Some(0));
}

async fn rejections_and_unknowns(sign_type: SignType) {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, sign_type);

    // A business refusal carries err_code / err_msg.
    let mut bad = native_request(NativeService::Weixin, "X1", 0);
    match client.native(&bad).await {
        Err(GatewayError::Rejected { message, .. }) => {
            assert_eq!(message, "total_fee:Must be greater or equal to [1]")
        }
        other => panic!("{other:?}"),
    }
    // A repeated order number with other content: the gateway asks to query.
    bad.total_fee = 10;
    client.native(&bad).await.unwrap();
    bad.total_fee = 11;
    assert!(matches!(
        client.native(&bad).await,
        Err(GatewayError::Unknown { .. })
    ));
    // Once paid, a repeat is "Order paid".
    pay(&sb.base, "X1", None).await;
    bad.total_fee = 10;
    match client.native(&bad).await {
        Err(GatewayError::Rejected { code, .. }) => assert_eq!(code, "Order paid"),
        other => panic!("{other:?}"),
    }

    // The wrong key: the gateway refuses at the protocol level, unsigned.
    let wrong = match sign_type {
        SignType::Md5 => {
            Credentials::new(MCH_ID, SignType::Md5, Some("wrong-key"), None, None).unwrap()
        }
        _ => {
            let mut c = super::support::credentials(sign_type);
            c.signer = topup::gateway::swiftpass::sign::Signer::Rsa {
                sign_type,
                key: super::support::keys().platform.clone(),
            };
            c
        }
    };
    let stranger = client_with(&sb.base, wrong, Duration::from_secs(5));
    assert_eq!(
        stranger.query(TradeRef::OutTradeNo("X1".into())).await,
        Err(GatewayError::Rejected {
            code: "400".into(),
            message: "Signature error".into()
        })
    );
}

/// A fake gateway answering with fixed params, to see how the client treats answers it
/// must not trust.
async fn fake_gateway(answer: Params) -> (String, tokio::task::JoinHandle<()>) {
    let body = to_xml(&answer);
    let (addr, handle) = serve(poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("text/xml")
            .body(body.clone())
    }))
    .await;
    (format!("http://{addr}"), handle)
}

fn signed_answer(fields: &[(&str, &str)], key: &str) -> Params {
    let mut p: Params = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sign = md5_sign(&p, key);
    p.insert("sign".into(), sign);
    p
}

#[tokio::test]
async fn untrustworthy_answers_are_unknown() {
    let md5 = || Credentials::new(MCH_ID, SignType::Md5, Some(MD5_KEY), None, None).unwrap();
    // A complete, believable query answer: only what each case changes makes it untrustworthy.
    let time_end = format_time(Utc::now());
    let complete = |mch_id: &'static str| {
        vec![
            ("status", "0"),
            ("result_code", "0"),
            ("mch_id", mch_id),
            ("sign_type", "MD5"),
            ("nonce_str", "n"),
            ("trade_state", "SUCCESS"),
            ("out_trade_no", "T1"),
            ("total_fee", "100"),
            ("time_end", time_end.as_str()),
        ]
    };
    let (base, server) = fake_gateway(signed_answer(&complete(MCH_ID), MD5_KEY)).await;
    let trusted = client_with(&base, md5(), Duration::from_secs(5))
        .query(TradeRef::OutTradeNo("T1".into()))
        .await
        .unwrap();
    assert_eq!(trusted.trade_state, TradeState::Success);
    server.abort();

    let cases = [
        (
            "forged signature",
            signed_answer(&complete(MCH_ID), "attacker"),
        ),
        ("another merchant", signed_answer(&complete("999"), MD5_KEY)),
        ("no signature", {
            let mut p = signed_answer(&complete(MCH_ID), MD5_KEY);
            p.remove("sign");
            p
        }),
        ("tampered after signing", {
            let mut p = signed_answer(&complete(MCH_ID), MD5_KEY);
            p.insert("total_fee".into(), "1".into());
            p
        }),
        (
            "signed success without the service fields",
            signed_answer(&complete(MCH_ID)[..5], MD5_KEY),
        ),
    ];
    for (what, answer) in cases {
        let (base, server) = fake_gateway(answer).await;
        let client = client_with(&base, md5(), Duration::from_secs(5));
        let result = client.query(TradeRef::OutTradeNo("T1".into())).await;
        assert!(
            matches!(result, Err(GatewayError::Unknown { .. })),
            "{what}: {result:?}"
        );
        server.abort();
    }

    // A non-200 answer, even with a valid body, is unknown.
    let body = to_xml(&signed_answer(&complete(MCH_ID), MD5_KEY));
    let (addr, server) = serve(poem::endpoint::make_sync(move |_| {
        Response::builder()
            .status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
            .body(body.clone())
    }))
    .await;
    let client = client_with(&format!("http://{addr}"), md5(), Duration::from_secs(5));
    assert!(matches!(
        client.query(TradeRef::OutTradeNo("T1".into())).await,
        Err(GatewayError::Unknown { .. })
    ));
    server.abort();

    // An unsigned protocol refusal is believed without a signature.
    let (base, server) = fake_gateway(
        [("status", "400"), ("message", "Require POST method")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .await;
    let client = client_with(&base, md5(), Duration::from_secs(5));
    assert_eq!(
        client.close("T1").await,
        Err(GatewayError::Rejected {
            code: "400".into(),
            message: "Require POST method".into()
        })
    );
    server.abort();

    // Nobody listening: unknown.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = client_with(&base, md5(), Duration::from_secs(5));
    assert!(matches!(
        client.close("T1").await,
        Err(GatewayError::Unknown { .. })
    ));
}

#[tokio::test]
async fn query_answer_about_another_order_is_unknown() {
    let answer = signed_answer(
        &[
            ("status", "0"),
            ("result_code", "0"),
            ("mch_id", MCH_ID),
            ("sign_type", "MD5"),
            ("trade_state", "SUCCESS"),
            ("out_trade_no", "OTHER"),
            ("time_end", &format_time(Utc::now())),
        ],
        MD5_KEY,
    );
    let (base, server) = fake_gateway(answer).await;
    let creds = Credentials::new(MCH_ID, SignType::Md5, Some(MD5_KEY), None, None).unwrap();
    let client = client_with(&base, creds, Duration::from_secs(5));
    assert!(matches!(
        client.query(TradeRef::OutTradeNo("MINE".into())).await,
        Err(GatewayError::Unknown { .. })
    ));
    server.abort();
}

#[tokio::test]
async fn sandbox_mounted_under_a_prefix() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}/sandbox");
    let sandbox = topup::gateway::sandbox::Sandbox::new(topup::gateway::sandbox::SandboxConfig {
        mch_id: MCH_ID.into(),
        key: MD5_KEY.into(),
        merchant_public_key: None,
        platform_private_key: None,
        time_scale: 1.0,
        public_base_url: base.clone(),
    })
    .unwrap();
    let app = poem::Route::new().nest("/sandbox", sandbox.endpoint());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let server = tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    let running_client = client_with(
        &base,
        super::support::credentials(SignType::Md5),
        Duration::from_secs(5),
    );
    let answer = running_client
        .native(&native_request(NativeService::Weixin, "M1", 1))
        .await
        .unwrap();
    assert!(answer.code_url.starts_with(&format!("{base}/qr/")));
    let page = http().get(&answer.code_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(pay(&base, "M1", None).await.0, 200);
    // Without RSA keys the sandbox refuses RSA merchants.
    let rsa = client_with(
        &base,
        super::support::credentials(SignType::Rsa1_256),
        Duration::from_secs(5),
    );
    assert!(matches!(
        rsa.query(TradeRef::OutTradeNo("M1".into())).await,
        Err(GatewayError::Rejected { code, .. }) if code == "400"
    ));
    sandbox.shutdown();
    server.abort();
}
