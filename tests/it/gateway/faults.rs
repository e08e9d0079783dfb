//! Fault injection through `POST /control`: every notify fault, every service mode,
//! scoping, `times`, reset, and refusal of bad control bodies.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use topup::gateway::swiftpass::sign::SignType;
use topup::gateway::swiftpass::types::beijing_date;
use topup::gateway::swiftpass::{
    BillType, GatewayError, NativeService, NotifyError, RefundRef, RefundRequest, TradeRef,
    TradeState,
};

use super::client::native_request;
use super::notify::notify_state;
use super::support::{
    NotifySink, client, client_with, control, credentials, eventually, http, json_body, order_view,
    pay, start_sandbox,
};

#[tokio::test]
async fn notify_drop_is_per_order() {
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&[]).await;
    let client = client(&sb, SignType::Md5);
    for no in ["D1", "D2"] {
        let mut request = native_request(NativeService::Weixin, no, 10);
        request.notify_url = sink.url.clone();
        client.native(&request).await.unwrap();
    }
    let (status, _) = control(
        &sb.base,
        json!({"out_trade_no": "D1", "notify": {"drop": true}}),
    )
    .await;
    assert_eq!(status, 200);
    pay(&sb.base, "D1", None).await;
    pay(&sb.base, "D2", None).await;
    assert_eq!(
        order_view(&sb.base, "D1").await["notify"]["state"],
        "dropped"
    );
    notify_state(&sb.base, "D2", "delivered").await;
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert!(String::from_utf8_lossy(&received[0]).contains("D2"));
    // The payment itself happened; only the notify is missing.
    let state = client
        .query(TradeRef::OutTradeNo("D1".into()))
        .await
        .unwrap();
    assert_eq!(state.trade_state, TradeState::Success);
}

#[tokio::test]
async fn notify_copies_arrive_together() {
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&[]).await;
    let client = client(&sb, SignType::Md5);
    control(&sb.base, json!({"notify": {"copies": 5}})).await;
    let mut request = native_request(NativeService::Alipay, "C1", 10);
    request.notify_url = sink.url.clone();
    client.native(&request).await.unwrap();
    pay(&sb.base, "C1", None).await;
    let view = notify_state(&sb.base, "C1", "delivered").await;
    let attempts = view["notify"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 5);
    assert!(attempts.iter().all(|a| a["attempt"] == 1));
    let received = sink.received();
    assert_eq!(received.len(), 5);
    for body in &received {
        assert_eq!(
            client.parse_notify(body).unwrap().out_trade_no.as_deref(),
            Some("C1")
        );
    }
}

#[tokio::test]
async fn notify_delay_holds_the_first_delivery() {
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&[]).await;
    let client = client(&sb, SignType::Md5);
    control(&sb.base, json!({"notify": {"delay_ms": 300}})).await;
    let mut request = native_request(NativeService::Weixin, "L1", 10);
    request.notify_url = sink.url.clone();
    client.native(&request).await.unwrap();
    pay(&sb.base, "L1", None).await;
    let view = notify_state(&sb.base, "L1", "delivered").await;
    let paid_at: DateTime<Utc> = serde_json::from_value(view["paid_at"].clone()).unwrap();
    let first: DateTime<Utc> =
        serde_json::from_value(view["notify"]["attempts"][0]["at"].clone()).unwrap();
    assert!(
        first - paid_at >= chrono::TimeDelta::milliseconds(300),
        "first delivery {first} only {} after payment",
        first - paid_at
    );
}

#[tokio::test]
async fn notify_wrong_amount_and_bad_signature() {
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&[]).await;
    let client = client(&sb, SignType::Md5);
    for no in ["W1", "B1"] {
        let mut request = native_request(NativeService::Weixin, no, 500);
        request.notify_url = sink.url.clone();
        client.native(&request).await.unwrap();
    }
    control(
        &sb.base,
        json!({"out_trade_no": "W1", "notify": {"wrong_amount": true}}),
    )
    .await;
    control(
        &sb.base,
        json!({"out_trade_no": "B1", "notify": {"bad_signature": true}}),
    )
    .await;
    pay(&sb.base, "W1", None).await;
    pay(&sb.base, "B1", None).await;
    notify_state(&sb.base, "W1", "delivered").await;
    notify_state(&sb.base, "B1", "delivered").await;
    let body_of = |no: &str| {
        sink.received()
            .into_iter()
            .find(|b| {
                String::from_utf8_lossy(b)
                    .contains(&format!("<out_trade_no><![CDATA[{no}]]></out_trade_no>"))
            })
            .unwrap()
    };

    // Validly signed, but one fen more than the order: the merchant must compare.
    let wrong = client.parse_notify(&body_of("W1")).unwrap();
    assert_eq!(wrong.total_fee, Some(501));
    let truth = client
        .query(TradeRef::OutTradeNo("W1".into()))
        .await
        .unwrap();
    assert_eq!(truth.total_fee, Some(500));

    assert_eq!(
        client.parse_notify(&body_of("B1")),
        Err(NotifyError::BadSignature)
    );
}

#[tokio::test]
async fn timeout_is_unknown_and_the_work_was_done() {
    let sb = start_sandbox(1.0).await;
    let impatient = client_with(
        &sb.base,
        credentials(SignType::Md5),
        Duration::from_millis(300),
    );
    control(
        &sb.base,
        json!({"service": "pay.weixin.native", "mode": "timeout"}),
    )
    .await;
    match impatient
        .native(&native_request(NativeService::Weixin, "T1", 10))
        .await
    {
        Err(GatewayError::Unknown { reason }) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
    control(
        &sb.base,
        json!({"service": "unified.trade.query", "mode": "timeout"}),
    )
    .await;
    assert!(matches!(
        impatient.query(TradeRef::OutTradeNo("T1".into())).await,
        Err(GatewayError::Unknown { .. })
    ));
    control(&sb.base, json!({"reset": true})).await;
    // The order exists although its creation "failed": the caller had to query.
    let state = impatient
        .query(TradeRef::OutTradeNo("T1".into()))
        .await
        .unwrap();
    assert_eq!(state.trade_state, TradeState::NotPay);
}

#[tokio::test]
async fn error5xx_is_unknown_and_nothing_was_done() {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, SignType::Rsa1_256);
    client
        .native(&native_request(NativeService::Alipay, "E1", 100))
        .await
        .unwrap();
    pay(&sb.base, "E1", None).await;
    control(
        &sb.base,
        json!({"service": "unified.trade.refund", "mode": "error5xx"}),
    )
    .await;
    let refund = RefundRequest {
        out_trade_no: "E1".into(),
        out_refund_no: "ER1".into(),
        total_fee: 100,
        refund_fee: 100,
    };
    match client.refund(&refund).await {
        Err(GatewayError::Unknown { reason }) => assert!(reason.contains("502"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match client
        .refund_query(RefundRef::OutRefundNo("ER1".into()))
        .await
    {
        Err(GatewayError::Rejected { code, .. }) => assert_eq!(code, "REFUNDNOTEXIST"),
        other => panic!("{other:?}"),
    }
    control(
        &sb.base,
        json!({"service": "unified.trade.refund", "mode": "normal"}),
    )
    .await;
    client.refund(&refund).await.unwrap();
}

#[tokio::test]
async fn reject_reaches_every_service() {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, SignType::Md5);
    client
        .native(&native_request(NativeService::Weixin, "J1", 100))
        .await
        .unwrap();
    pay(&sb.base, "J1", None).await;
    let (status, faults) = control(
        &sb.base,
        json!({"mode": "reject", "err_code": "SYSTEMERROR", "err_msg": "系统繁忙"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(faults["services"][0]["mode"], "reject");
    let expected = Err::<(), _>(GatewayError::Rejected {
        code: "SYSTEMERROR".into(),
        message: "系统繁忙".into(),
    });
    let today = beijing_date(Utc::now());
    let results = [
        client
            .native(&native_request(NativeService::Weixin, "J2", 1))
            .await
            .map(drop),
        client
            .native(&native_request(NativeService::Alipay, "J3", 1))
            .await
            .map(drop),
        client
            .query(TradeRef::OutTradeNo("J1".into()))
            .await
            .map(drop),
        client.close("J1").await,
        client
            .refund(&RefundRequest {
                out_trade_no: "J1".into(),
                out_refund_no: "JR".into(),
                total_fee: 100,
                refund_fee: 1,
            })
            .await
            .map(drop),
        client
            .refund_query(RefundRef::OutTradeNo("J1".into()))
            .await
            .map(drop),
        client.bill(today, BillType::All).await.map(drop),
    ];
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result, expected, "call {i}");
    }
}

#[tokio::test]
async fn faults_are_scoped_counted_and_reset() {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, SignType::Md5);
    for no in ["S1", "S2"] {
        client
            .native(&native_request(NativeService::Weixin, no, 100))
            .await
            .unwrap();
    }
    // Only S1, only once; the default reject answer is SYSTEMERROR.
    control(
        &sb.base,
        json!({"out_trade_no": "S1", "service": "unified.trade.query", "mode": "reject", "times": 1}),
    )
    .await;
    assert!(
        client
            .query(TradeRef::OutTradeNo("S2".into()))
            .await
            .is_ok()
    );
    assert_eq!(
        client.query(TradeRef::OutTradeNo("S1".into())).await,
        Err(GatewayError::Rejected {
            code: "SYSTEMERROR".into(),
            message: "系统错误".into()
        })
    );
    assert!(
        client
            .query(TradeRef::OutTradeNo("S1".into()))
            .await
            .is_ok()
    );

    // A per-order fault also catches calls that name the order by transaction_id.
    let s2 = client
        .query(TradeRef::OutTradeNo("S2".into()))
        .await
        .unwrap();
    control(&sb.base, json!({"out_trade_no": "S2", "mode": "error5xx"})).await;
    assert!(matches!(
        client
            .query(TradeRef::TransactionId(s2.transaction_id.unwrap()))
            .await,
        Err(GatewayError::Unknown { .. })
    ));

    control(&sb.base, json!({"notify": {"drop": true}})).await;
    let (status, faults) = control(&sb.base, json!({"reset": true})).await;
    assert_eq!(status, 200);
    assert_eq!(
        faults,
        json!({"notify": null, "notify_by_order": {}, "services": []})
    );
    let shown = json_body(
        http()
            .get(format!("{}/control", sb.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(shown, faults);
    assert!(
        client
            .query(TradeRef::OutTradeNo("S2".into()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn bad_control_bodies_are_refused() {
    let sb = start_sandbox(1.0).await;
    let bad = [
        json!({}),
        json!({"notify": {"drop": true, "lose": true}}),
        json!({"typo": 1}),
        json!({"service": "unified.trade.query"}),
        json!({"service": "unified.trade.nope", "mode": "timeout"}),
        json!({"mode": "timeout", "err_code": "X"}),
        json!({"mode": "sometimes"}),
        json!({"mode": "reject", "times": 0}),
        json!({"notify": {"copies": 0}}),
        json!({"mode": "normal", "times": 2}),
        json!({"reset": "yes"}),
    ];
    for body in bad {
        let (status, answer) = control(&sb.base, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
    }
    let response = http()
        .post(format!("{}/control", sb.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn paying_expired_and_closed_orders_needs_force() {
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&[]).await;
    let client = client(&sb, SignType::Md5);

    let mut expired = native_request(NativeService::Weixin, "X1", 100);
    expired.notify_url = sink.url.clone();
    expired.time_start = Utc::now() - chrono::TimeDelta::hours(3);
    expired.time_expire = Utc::now() - chrono::TimeDelta::hours(1);
    client.native(&expired).await.unwrap();
    let (status, answer) = pay(&sb.base, "X1", None).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("expired"));
    // An expired order is still NOTPAY until the merchant closes it.
    let state = client
        .query(TradeRef::OutTradeNo("X1".into()))
        .await
        .unwrap();
    assert_eq!(state.trade_state, TradeState::NotPay);
    let (status, answer) = pay(&sb.base, "X1", Some(true)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["forced"], true);

    // The race: the merchant closed, the channel took the money anyway.
    let mut closed = native_request(NativeService::Alipay, "X2", 100);
    closed.notify_url = sink.url.clone();
    client.native(&closed).await.unwrap();
    client.close("X2").await.unwrap();
    assert_eq!(pay(&sb.base, "X2", Some(false)).await.0, 409);
    assert_eq!(pay(&sb.base, "X2", Some(true)).await.0, 200);
    let state = client
        .query(TradeRef::OutTradeNo("X2".into()))
        .await
        .unwrap();
    assert_eq!(state.trade_state, TradeState::Success);
    notify_state(&sb.base, "X2", "delivered").await;

    // Paying twice, or an unknown order.
    assert_eq!(pay(&sb.base, "X2", Some(true)).await.0, 409);
    assert_eq!(pay(&sb.base, "nope", None).await.0, 404);
    let response = http()
        .post(format!("{}/orders/X1/pay", sb.base))
        .header("content-type", "application/json")
        .body(r#"{"forse": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // What `curl -d '{"force": true}'` sends: JSON labelled as a form.
    let mut closed = native_request(NativeService::Weixin, "X3", 100);
    closed.notify_url = sink.url.clone();
    client.native(&closed).await.unwrap();
    client.close("X3").await.unwrap();
    let response = http()
        .post(format!("{}/orders/X3/pay", sb.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"force": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["trade_state"], "SUCCESS");
}

#[tokio::test]
async fn the_pay_button_posts_a_form_and_returns_to_the_page() {
    let sb = start_sandbox(0.001).await;
    let client = client(&sb, SignType::Md5);
    let answer = client
        .native(&native_request(NativeService::Weixin, "H1", 250))
        .await
        .unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .post(format!("{}/orders/H1/pay", sb.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        answer.code_url
    );
    let page = eventually("paid page", Duration::from_secs(5), || async {
        let html = http()
            .get(&answer.code_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        html.contains("SUCCESS").then_some(html)
    })
    .await;
    assert!(page.contains("Paid at"), "{page}");
    assert!(!page.contains("<form"), "{page}");
    let missing = http()
        .get(format!("{}/qr/nope", sb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn alter_refund_and_bill_faults_and_the_call_count() {
    let sb = start_sandbox(0.001).await;
    let client = client(&sb, SignType::Md5);
    for no in ["A1", "A2"] {
        client
            .native(&native_request(NativeService::Weixin, no, 500))
            .await
            .unwrap();
        assert_eq!(pay(&sb.base, no, None).await.0, 200);
    }

    // An altered answer is still signed: the client reads what it says.
    control(
        &sb.base,
        json!({"out_trade_no": "A1", "service": "unified.trade.query", "mode": "alter",
               "fields": {"total_fee": null, "trade_type": "pay.alipay.native"}}),
    )
    .await;
    let altered = client
        .query(TradeRef::OutTradeNo("A1".into()))
        .await
        .unwrap();
    assert_eq!(altered.trade_state, TradeState::Success);
    assert_eq!(altered.total_fee, None);
    assert_eq!(altered.trade_type.as_deref(), Some("pay.alipay.native"));
    let plain = client
        .query(TradeRef::OutTradeNo("A2".into()))
        .await
        .unwrap();
    assert_eq!(plain.total_fee, Some(500));
    let view = order_view(&sb.base, "A1").await;
    assert_eq!(view["calls"]["unified.trade.query"], 1);
    assert_eq!(view["calls"]["pay.weixin.native"], 1);

    // A refund that ends FAIL gives its amount back to what can be refunded.
    control(
        &sb.base,
        json!({"out_trade_no": "A1", "refund": {"final_status": "FAIL"}}),
    )
    .await;
    let refund = |no: &str, fee| RefundRequest {
        out_trade_no: "A1".into(),
        out_refund_no: no.into(),
        total_fee: 500,
        refund_fee: fee,
    };
    client.refund(&refund("F1", 500)).await.unwrap();
    let failed = eventually("FAIL", Duration::from_secs(5), || async {
        let q = client
            .refund_query(RefundRef::OutRefundNo("F1".into()))
            .await
            .ok()?;
        (q.refunds[0].refund_status != topup::gateway::swiftpass::RefundStatus::Processing)
            .then_some(q)
    })
    .await;
    assert_eq!(
        failed.refunds[0].refund_status,
        topup::gateway::swiftpass::RefundStatus::Fail
    );
    control(&sb.base, json!({"out_trade_no": "A1", "refund": {}})).await;
    client.refund(&refund("F2", 500)).await.unwrap();

    // Bills read what the bill fault says; the summary follows the lines.
    control(&sb.base, json!({"out_trade_no": "A2", "bill": {"total_fee": 501, "trade_type": "pay.alipay.native"}})).await;
    let today = beijing_date(Utc::now());
    let bill = client.bill(today, BillType::Success).await.unwrap();
    let a2 = bill.rows.iter().find(|r| r.out_trade_no == "A2").unwrap();
    assert_eq!(a2.total_fee, 501);
    assert_eq!(a2.trade_type.as_deref(), Some("pay.alipay.native"));
    assert_eq!(bill.summary.total_fee, Some(1001));
    control(
        &sb.base,
        json!({"out_trade_no": "A2", "bill": {"omit": true}}),
    )
    .await;
    let bill = client.bill(today, BillType::Success).await.unwrap();
    assert!(bill.rows.iter().all(|r| r.out_trade_no != "A2"));
    assert_eq!(bill.summary.count, 1);

    for bad in [
        json!({"mode": "alter"}),
        json!({"fields": {"total_fee": null}, "mode": "timeout"}),
        json!({"bill": {"omit": true}}),
        json!({"refund": {"final_status": "MAYBE"}}),
        json!({"out_trade_no": "A1", "bill": {"total_fee": -1}}),
    ] {
        let (status, answer) = control(&sb.base, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
}
