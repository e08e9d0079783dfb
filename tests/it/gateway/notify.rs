//! Notify delivery: the retry schedule (scaled), what counts as an answer, the message's
//! fields and signature, and `Client::parse_notify`.

use std::time::Duration;

use serde_json::Value;
use topup::gateway::swiftpass::sign::{SignType, md5_sign};
use topup::gateway::swiftpass::xml::{parse, to_xml};
use topup::gateway::swiftpass::{NativeService, NotifyError, Params, TradeRef};

use super::client::native_request;
use super::support::{
    MCH_ID, MD5_KEY, NotifySink, client, eventually, order_view, pay, start_sandbox,
};

/// Waits until the sandbox's notify state for an order is `state`; returns the order view.
pub async fn notify_state(base: &str, out_trade_no: &str, state: &str) -> Value {
    eventually(
        &format!("notify state {state} of {out_trade_no}"),
        Duration::from_secs(20),
        || async {
            let view = order_view(base, out_trade_no).await;
            (view["notify"]["state"] == state).then_some(view)
        },
    )
    .await
}

#[tokio::test]
async fn retried_until_the_answer_is_success_then_stopped() {
    // 15 s between attempts becomes 15 ms.
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&["fail", "fail"]).await;
    let client = client(&sb, SignType::Md5);
    let mut request = native_request(NativeService::Weixin, "N1", 4321);
    request.notify_url = sink.url.clone();
    client.native(&request).await.unwrap();
    assert_eq!(pay(&sb.base, "N1", None).await.0, 200);

    let view = notify_state(&sb.base, "N1", "delivered").await;
    let attempts = view["notify"]["attempts"].as_array().unwrap();
    let seen: Vec<(u64, &str, bool)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["answer"].as_str().unwrap(),
                a["accepted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(1, "fail", false), (2, "fail", false), (3, "success", true)]
    );

    // Delivery stopped: the fourth attempt would have come 30 ms later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 3);
    assert_eq!(
        order_view(&sb.base, "N1").await["notify"]["attempts"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Every delivery is the same correctly signed notify.
    let query = client
        .query(TradeRef::OutTradeNo("N1".into()))
        .await
        .unwrap();
    for body in sink.received() {
        let notify = client.parse_notify(&body).unwrap();
        assert_eq!(notify.status, "0");
        assert_eq!(notify.result_code.as_deref(), Some("0"));
        assert_eq!(notify.pay_result.as_deref(), Some("0"));
        assert_eq!(notify.out_trade_no.as_deref(), Some("N1"));
        assert_eq!(notify.total_fee, Some(4321));
        assert_eq!(notify.transaction_id, query.transaction_id);
        assert_eq!(notify.out_transaction_id, query.out_transaction_id);
        assert_eq!(notify.time_end, query.time_end);
        assert_eq!(notify.trade_type.as_deref(), Some("pay.weixin.native"));
        assert_eq!(notify.attach.as_deref(), Some("user=42&plan=a"));
    }
}

#[tokio::test]
async fn notify_fields_follow_the_protocol() {
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&[]).await;
    let client = client(&sb, SignType::Md5);
    for (service, no, bank) in [
        (NativeService::Weixin, "NW", "CFT"),
        (NativeService::Alipay, "NA", "ALIPAYACCOUNT"),
    ] {
        let mut request = native_request(service, no, 77);
        request.notify_url = sink.url.clone();
        client.native(&request).await.unwrap();
        pay(&sb.base, no, None).await;
        notify_state(&sb.base, no, "delivered").await;
        let body = sink
            .received()
            .into_iter()
            .find(|b| {
                String::from_utf8_lossy(b)
                    .contains(&format!("<out_trade_no><![CDATA[{no}]]></out_trade_no>"))
            })
            .unwrap();
        // Alphabetical and fully CDATA-wrapped: writing the parsed params gives the same bytes.
        let p = parse(&body).unwrap();
        assert_eq!(to_xml(&p).as_bytes(), body.as_slice());
        for (field, value) in [
            ("version", "2.0"),
            ("charset", "UTF-8"),
            ("sign_type", "MD5"),
            ("status", "0"),
            ("result_code", "0"),
            ("pay_result", "0"),
            ("mch_id", MCH_ID),
            ("fee_type", "CNY"),
            ("bank_type", bank),
            ("total_fee", "77"),
            ("cash_fee", "77"),
            ("trade_type", service.as_str()),
        ] {
            assert_eq!(p.get(field).map(String::as_str), Some(value), "{field}");
        }
        let transaction_id = &p["transaction_id"];
        assert!(transaction_id.starts_with(MCH_ID) && transaction_id.len() == MCH_ID.len() + 18);
        assert_eq!(p["out_transaction_id"].len(), 28);
        assert!(p["out_transaction_id"].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(p["time_end"].len(), 14);
        assert!(!p["nonce_str"].is_empty());
        assert_eq!(p["sign"], md5_sign(&p, MD5_KEY));
    }
}

#[tokio::test]
async fn rsa_merchants_get_rsa_signed_notifies() {
    let sb = start_sandbox(0.001).await;
    let sink = NotifySink::start(&[]).await;
    let rsa = client(&sb, SignType::Rsa1_256);
    let mut request = native_request(NativeService::Alipay, "NR", 5);
    request.notify_url = sink.url.clone();
    rsa.native(&request).await.unwrap();
    pay(&sb.base, "NR", None).await;
    notify_state(&sb.base, "NR", "delivered").await;
    let body = sink.received().remove(0);
    let notify = rsa.parse_notify(&body).unwrap();
    assert_eq!(notify.params["sign_type"], "RSA_1_256");
    assert_eq!(notify.total_fee, Some(5));
    // A merchant expecting MD5 cannot accept it.
    let md5 = client(&sb, SignType::Md5);
    assert_eq!(md5.parse_notify(&body), Err(NotifyError::BadSignature));
    // Nor is a downgrade taken: the same notify, validly signed by the platform's key but
    // with RSA_1_1 (SHA-1), is refused by a merchant configured for RSA_1_256.
    let mut downgraded = parse(&body).unwrap();
    downgraded.remove("sign");
    downgraded.insert("sign_type".into(), "RSA_1_1".into());
    let sha1 = topup::gateway::swiftpass::sign::Signer::Rsa {
        sign_type: SignType::Rsa1_1,
        key: super::support::keys().platform.clone(),
    };
    let sign = sha1.sign(&downgraded).unwrap();
    downgraded.insert("sign".into(), sign);
    let downgraded = to_xml(&downgraded);
    assert_eq!(
        rsa.parse_notify(downgraded.as_bytes()),
        Err(NotifyError::BadSignature)
    );
    // The RSA_1_1 merchant, with the same keys, takes exactly that message.
    let sha1_merchant = client(&sb, SignType::Rsa1_1);
    assert!(sha1_merchant.parse_notify(downgraded.as_bytes()).is_ok());
}

#[tokio::test]
async fn only_exactly_success_counts_and_delivery_gives_up_after_ten() {
    // The whole 3 h schedule takes about 1.1 s at this scale.
    let sb = start_sandbox(0.0001).await;
    let answers = [
        "SUCCESS",
        "success\n",
        " success",
        "<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>",
        "ok",
        "fail",
        "",
        "failure1",
        "fail",
        "fail",
    ];
    let sink = NotifySink::start(&answers).await;
    let client = client(&sb, SignType::Md5);
    let mut request = native_request(NativeService::Weixin, "NG", 1);
    request.notify_url = sink.url.clone();
    client.native(&request).await.unwrap();
    pay(&sb.base, "NG", None).await;
    let view = notify_state(&sb.base, "NG", "gave_up").await;
    let attempts = view["notify"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 10);
    assert!(attempts.iter().all(|a| a["accepted"] == false));
    let numbers: Vec<u64> = attempts
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
    assert_eq!(sink.received().len(), 10);
}

#[tokio::test]
async fn parse_notify_refusals() {
    let sb = start_sandbox(1.0).await;
    let client = client(&sb, SignType::Md5);
    assert!(matches!(
        client.parse_notify(b"not xml"),
        Err(NotifyError::Malformed(_))
    ));

    let mut p: Params = [
        ("status", "0"),
        ("result_code", "0"),
        ("pay_result", "0"),
        ("mch_id", MCH_ID),
        ("out_trade_no", "R1"),
        ("total_fee", "100"),
        ("sign_type", "MD5"),
        ("nonce_str", "n"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sign = md5_sign(&p, MD5_KEY);
    p.insert("sign".into(), sign);
    let notify = client.parse_notify(to_xml(&p).as_bytes()).unwrap();
    assert_eq!(notify.total_fee, Some(100));
    assert_eq!(notify.time_end, None);

    // Tampered amount.
    let mut tampered = p.clone();
    tampered.insert("total_fee".into(), "1".into());
    assert_eq!(
        client.parse_notify(to_xml(&tampered).as_bytes()),
        Err(NotifyError::BadSignature)
    );

    // Correctly signed for another merchant.
    let mut other = p.clone();
    other.insert("mch_id".into(), "123".into());
    let sign = md5_sign(&other, MD5_KEY);
    other.insert("sign".into(), sign);
    assert_eq!(
        client.parse_notify(to_xml(&other).as_bytes()),
        Err(NotifyError::WrongMerchant { got: "123".into() })
    );

    // Signed, but with an amount that is not an integer.
    let mut odd = p.clone();
    odd.insert("total_fee".into(), "1.00".into());
    let sign = md5_sign(&odd, MD5_KEY);
    odd.insert("sign".into(), sign);
    assert!(matches!(
        client.parse_notify(to_xml(&odd).as_bytes()),
        Err(NotifyError::Malformed(_))
    ));

    // A failed payment is reported, not judged.
    let mut failed = p.clone();
    failed.insert("pay_result".into(), "1".into());
    let sign = md5_sign(&failed, MD5_KEY);
    failed.insert("sign".into(), sign);
    let notify = client.parse_notify(to_xml(&failed).as_bytes()).unwrap();
    assert_eq!(notify.pay_result.as_deref(), Some("1"));
}
