//! The sandbox against requests built by hand from the documented algorithm (protocol §1,
//! §2.1): literal XML, an MD5 computed here, and answers checked the same way.

use md5::{Digest, Md5};
use topup::gateway::swiftpass::Params;
use topup::gateway::swiftpass::xml::parse;

use super::support::{MCH_ID, MD5_KEY, Running, http, start_sandbox};

/// Sign by the book: non-empty fields except `sign`, byte order, `k=v&…&key=KEY`, MD5,
/// upper-case hex.
fn by_hand(fields: &[(&str, &str)]) -> String {
    let mut kept: Vec<&(&str, &str)> = fields
        .iter()
        .filter(|(k, v)| !v.is_empty() && *k != "sign")
        .collect();
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined: Vec<String> = kept.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let text = format!("{}&key={MD5_KEY}", joined.join("&"));
    hex::encode_upper(Md5::digest(text.as_bytes()))
}

/// A request document with every value in CDATA and the sign appended.
fn document(fields: &[(&str, &str)], sign: &str) -> String {
    let mut xml = String::from("<xml>");
    for (k, v) in fields {
        xml.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>"));
    }
    xml.push_str(&format!("<sign><![CDATA[{sign}]]></sign></xml>"));
    xml
}

async fn post(sb: &Running, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = http()
        .post(format!("{}{path}", sb.base))
        .header("content-type", "text/xml; charset=UTF-8")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Posts a correctly signed request and returns the answer params.
async fn call(sb: &Running, fields: &[(&str, &str)]) -> Params {
    let (status, body) = post(sb, "/pay/gateway", document(fields, &by_hand(fields))).await;
    assert_eq!(status, 200, "{body}");
    parse(body.as_bytes()).unwrap()
}

/// A signed answer must verify by the book.
fn assert_signed(answer: &Params) {
    let fields: Vec<(&str, &str)> = answer
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(answer["sign"], by_hand(&fields), "{answer:?}");
    assert_eq!(answer["mch_id"], MCH_ID);
}

/// An unsigned protocol refusal with exactly the four documented fields.
fn assert_refused(answer: &Params, message: &str) {
    let expected: Params = [
        ("charset", "UTF-8"),
        ("message", message),
        ("status", "400"),
        ("version", "2.0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(answer, &expected);
}

fn native_fields<'a>(out_trade_no: &'a str, total_fee: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("service", "pay.weixin.native"),
        ("version", "2.0"),
        ("charset", "UTF-8"),
        ("sign_type", "MD5"),
        ("mch_id", MCH_ID),
        ("nonce_str", "handmade0001"),
        ("out_trade_no", out_trade_no),
        ("body", "Topup 充值"),
        ("total_fee", total_fee),
        ("mch_create_ip", "127.0.0.1"),
        ("notify_url", "http://127.0.0.1:9/notify"),
    ]
}

#[tokio::test]
async fn a_literal_request_is_accepted_and_the_answer_is_signed() {
    let sb = start_sandbox(1.0).await;
    // Written out by hand, escaped text instead of CDATA (as Go's encoding/xml sends it).
    let to_sign = "body=A&B<C>&charset=UTF-8&mch_create_ip=127.0.0.1&mch_id=7551000001\
        &nonce_str=literal&notify_url=http://127.0.0.1:9/n?x=1&out_trade_no=LIT1\
        &service=pay.alipay.native&sign_type=MD5&total_fee=88&version=2.0\
        &key=9d101c97133837e13dde2d32a5054abb";
    let sign = hex::encode_upper(Md5::digest(to_sign.as_bytes()));
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n<service>pay.alipay.native</service>\n\
         <version>2.0</version><charset>UTF-8</charset><sign_type>MD5</sign_type>\
         <mch_id>7551000001</mch_id><nonce_str>literal</nonce_str><out_trade_no>LIT1</out_trade_no>\
         <body>A&amp;B&lt;C&gt;</body><total_fee>88</total_fee><mch_create_ip>127.0.0.1</mch_create_ip>\
         <notify_url>http://127.0.0.1:9/n?x=1</notify_url><device_info></device_info>\
         <sign>{sign}</sign>\n</xml>"
    );
    let (status, body) = post(&sb, "/pay/gateway", xml).await;
    assert_eq!(status, 200);
    // Answers are alphabetical and fully CDATA-wrapped, like the real gateway's.
    assert!(
        body.starts_with("<xml><charset><![CDATA[UTF-8]]></charset>"),
        "{body}"
    );
    let answer = parse(body.as_bytes()).unwrap();
    assert_eq!(answer["status"], "0");
    assert_eq!(answer["result_code"], "0");
    assert_eq!(answer["sign_type"], "MD5");
    assert!(answer["code_url"].starts_with(&format!("{}/qr/", sb.base)));
    assert_signed(&answer);

    // No sign_type means MD5; a lower-case sign is accepted too.
    let mut fields = native_fields("LIT2", "1");
    fields.retain(|(k, _)| *k != "sign_type");
    let sign = by_hand(&fields).to_lowercase();
    let (_, body) = post(&sb, "/pay/gateway", document(&fields, &sign)).await;
    let answer = parse(body.as_bytes()).unwrap();
    assert_eq!(answer["result_code"], "0", "{answer:?}");
    assert_signed(&answer);
}

#[tokio::test]
async fn protocol_refusals_are_unsigned() {
    let sb = start_sandbox(1.0).await;
    let fields = native_fields("S1", "100");

    let forged = document(&fields, "0123456789ABCDEF0123456789ABCDEF");
    let (status, body) = post(&sb, "/pay/gateway", forged).await;
    assert_eq!(status, 200);
    assert_refused(&parse(body.as_bytes()).unwrap(), "Signature error");

    // Correctly signed with the key, but for another merchant.
    let mut other = fields.clone();
    other.retain(|(k, _)| *k != "mch_id");
    other.push(("mch_id", "7551000002"));
    let (_, body) = post(&sb, "/pay/gateway", document(&other, &by_hand(&other))).await;
    assert_refused(&parse(body.as_bytes()).unwrap(), "Signature error");

    // Unsigned.
    let mut xml = document(&fields, "");
    xml = xml.replace("<sign><![CDATA[]]></sign>", "");
    let (_, body) = post(&sb, "/pay/gateway", xml).await;
    assert_refused(&parse(body.as_bytes()).unwrap(), "Signature error");

    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let response = http()
            .request(method, format!("{}/pay/gateway", sb.base))
            .send()
            .await
            .unwrap();
        let body = response.text().await.unwrap();
        assert_refused(&parse(body.as_bytes()).unwrap(), "Require POST method");
    }

    for garbage in [
        b"<xml><body>\xff\xfe</body></xml>".to_vec(),
        b"hello".to_vec(),
        b"<xml><a><b/></a></xml>".to_vec(),
        Vec::new(),
    ] {
        let (_, body) = post(&sb, "/pay/gateway", garbage).await;
        assert_refused(
            &parse(body.as_bytes()).unwrap(),
            "Parse xml error,please use UTF-8 encoded",
        );
    }

    // Nothing was created by any of this.
    let query = [
        ("service", "unified.trade.query"),
        ("mch_id", MCH_ID),
        ("nonce_str", "q"),
        ("out_trade_no", "S1"),
    ];
    let answer = call(&sb, &query).await;
    assert_eq!(answer["err_code"], "Order not exists");
}

#[tokio::test]
async fn missing_fields_are_named_in_a_signed_business_error() {
    let sb = start_sandbox(1.0).await;
    for missing in [
        "out_trade_no",
        "body",
        "total_fee",
        "mch_create_ip",
        "notify_url",
    ] {
        let mut fields = native_fields("M1", "100");
        fields.retain(|(k, _)| *k != missing);
        let answer = call(&sb, &fields).await;
        assert_eq!(answer["status"], "0");
        assert_eq!(answer["result_code"], "1");
        assert_eq!(answer["err_msg"], format!("{missing}:Required"));
        assert_signed(&answer);
    }
}

#[tokio::test]
async fn total_fee_bounds() {
    let sb = start_sandbox(1.0).await;
    let cases = [
        ("0", Some("total_fee:Must be greater or equal to [1]")),
        (
            "5000001",
            Some("total_fee:Must be less or equal to [5000000]"),
        ),
        ("1.5", Some("total_fee:Invalid")),
        ("-1", Some("total_fee:Invalid")),
        ("abc", Some("total_fee:Invalid")),
        ("1", None),
        ("5000000", None),
    ];
    for (i, (fee, expected)) in cases.iter().enumerate() {
        let no = format!("AMT{i}");
        let answer = call(&sb, &native_fields(&no, fee)).await;
        assert_signed(&answer);
        match expected {
            Some(message) => {
                assert_eq!(answer["result_code"], "1", "{fee}");
                assert_eq!(&answer["err_msg"], message);
            }
            None => assert_eq!(answer["result_code"], "0", "{fee}: {answer:?}"),
        }
    }
}

#[tokio::test]
async fn repeated_order_numbers() {
    let sb = start_sandbox(1.0).await;
    let first = call(&sb, &native_fields("D1", "100")).await;
    assert_eq!(first["result_code"], "0");

    // Same content, new nonce: the same code again.
    let mut again = native_fields("D1", "100");
    again.retain(|(k, _)| *k != "nonce_str");
    again.push(("nonce_str", "another-nonce"));
    let second = call(&sb, &again).await;
    assert_eq!(second["code_url"], first["code_url"]);
    assert_eq!(second["uuid"], first["uuid"]);

    // Different content under the same number.
    let clash = call(&sb, &native_fields("D1", "101")).await;
    assert_eq!(clash["result_code"], "1");
    assert_eq!(clash["err_code"], "INVALID_REQUEST");
    assert_eq!(clash["err_msg"], "201 商户订单号重复");
    assert_eq!(clash["need_query"], "Y");
    assert_signed(&clash);

    // Paid: "Order paid".
    let response = http()
        .post(format!("{}/orders/D1/pay", sb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let paid = call(&sb, &native_fields("D1", "100")).await;
    assert_eq!(paid["err_code"], "Order paid");
    assert_signed(&paid);
}

#[tokio::test]
async fn unknown_service_and_bill_by_hand() {
    let sb = start_sandbox(1.0).await;
    let fields = [
        ("service", "pay.tenpay.native"),
        ("mch_id", MCH_ID),
        ("nonce_str", "x"),
    ];
    let answer = call(&sb, &fields).await;
    assert_eq!(answer["result_code"], "1");
    assert_eq!(answer["err_code"], "Auth valid fail");
    assert_eq!(answer["err_msg"], "商户未开通[pay.tenpay.native]支付类型");
    assert_signed(&answer);

    let bill = [
        ("service", "pay.bill.merchant"),
        ("mch_id", MCH_ID),
        ("nonce_str", "x"),
        ("bill_date", "20240101"),
        ("bill_type", "ALL"),
    ];
    let (status, text) = post(&sb, "/download/gateway", document(&bill, &by_hand(&bill))).await;
    assert_eq!(status, 200);
    assert!(text.starts_with("\u{feff}交易时间,公众账号ID,"), "{text}");
    assert!(text.contains("总交易单数,总交易额,总退款金额,总企业红包退款金额,总手续费金额,总实收金额\n`0,`0.00,`0.00,`0.00,`0.00,`0.00"), "{text}");

    let mut bad_date = bill;
    bad_date[3] = ("bill_date", "2024-01-01");
    let (_, body) = post(
        &sb,
        "/download/gateway",
        document(&bad_date, &by_hand(&bad_date)),
    )
    .await;
    let answer = parse(body.as_bytes()).unwrap();
    assert_eq!(answer["err_msg"], "bill_date:Invalid");
    assert_signed(&answer);
}
