//! The customer's and the tester's side of the sandbox: the page behind `code_url`, the QR
//! image behind `code_img_url`, "scan and pay", the JSON order view and fault control.

use chrono::Utc;
use poem::http::StatusCode;
use poem::{Request, Response};
use serde::Deserialize;

use super::Sandbox;
use super::control::ControlRequest;
use super::notify;
use super::state::{OrderStatus, Payment, payer_id, upstream_id};
use crate::gateway::swiftpass::types::{BEIJING, NativeService, format_yuan};

/// The optional JSON body of `POST /orders/{out_trade_no}/pay`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayRequest {
    /// Pay even a closed or expired order.
    #[serde(default)]
    force: bool,
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(value.to_string())
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// `POST /orders/{out_trade_no}/pay`: the customer pays.
pub(crate) async fn pay(sb: Sandbox, mut req: Request) -> Response {
    let out_trade_no = req
        .raw_path_param("out_trade_no")
        .unwrap_or_default()
        .to_owned();
    let is_form = req
        .content_type()
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let Ok(body) = req.take_body().into_bytes_limit(4096).await else {
        return json_error(StatusCode::BAD_REQUEST, "body too large");
    };
    // Told apart by the body first: `curl -d '{"force": true}'` labels its JSON as a form.
    let trimmed = body.trim_ascii();
    let (force, from_page) = if trimmed.starts_with(b"{") {
        match serde_json::from_slice::<PayRequest>(trimmed) {
            Ok(request) => (request.force, false),
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("body must be {{\"force\": bool}}: {e}"),
                );
            }
        }
    } else if is_form {
        let force = url::form_urlencoded::parse(trimmed)
            .any(|(k, v)| k == "force" && matches!(v.as_ref(), "true" | "on" | "1"));
        (force, true)
    } else if trimmed.is_empty() {
        (false, false)
    } else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "body must be empty, {\"force\": bool}, or the page's form",
        );
    };
    if let Err((status, message)) = sb.mark_paid(&out_trade_no, force) {
        return json_error(status, &message);
    }
    notify::start(&sb, &out_trade_no);
    let state = sb.state();
    let Some(order) = state.orders.get(&out_trade_no) else {
        return json_error(StatusCode::NOT_FOUND, "order not found");
    };
    if from_page {
        // Back to the order page, which now shows it paid.
        return Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(
                "Location",
                format!("{}/qr/{}", sb.inner.base_url, order.uuid),
            )
            .finish();
    }
    json(StatusCode::OK, &order.view(Utc::now()))
}

impl Sandbox {
    /// Marks an order paid, refusing what a real channel would refuse (unless forced).
    fn mark_paid(&self, out_trade_no: &str, force: bool) -> Result<(), (StatusCode, String)> {
        let now = Utc::now();
        let mut state = self.state();
        let order = state
            .orders
            .get_mut(out_trade_no)
            .ok_or((StatusCode::NOT_FOUND, "order not found".to_owned()))?;
        let expired = now >= order.expires_at;
        match order.status {
            OrderStatus::Paid => {
                return Err((StatusCode::CONFLICT, "order already paid".into()));
            }
            OrderStatus::Closed if !force => {
                return Err((
                    StatusCode::CONFLICT,
                    "order is closed (pay with {\"force\": true} to simulate the race)".into(),
                ));
            }
            OrderStatus::NotPay if expired && !force => {
                return Err((
                    StatusCode::CONFLICT,
                    "order expired (pay with {\"force\": true} to simulate the race)".into(),
                ));
            }
            _ => {}
        }
        let forced = order.status == OrderStatus::Closed || expired;
        order.payment = Some(Payment {
            time_end: now,
            out_transaction_id: upstream_id(order.service, now),
            bank_type: match order.service {
                NativeService::Weixin => "CFT",
                NativeService::Alipay => "ALIPAYACCOUNT",
            },
            payer: payer_id(order.service),
            forced,
        });
        order.status = OrderStatus::Paid;
        tracing::info!(out_trade_no, forced, "sandbox: order paid");
        Ok(())
    }
}

/// `GET /orders/{out_trade_no}`: the sandbox's view of an order.
pub(crate) async fn order_view(sb: Sandbox, req: Request) -> Response {
    let out_trade_no = req.raw_path_param("out_trade_no").unwrap_or_default();
    match sb.state().orders.get(out_trade_no) {
        Some(order) => json(StatusCode::OK, &order.view(Utc::now())),
        None => json_error(StatusCode::NOT_FOUND, "order not found"),
    }
}

/// `POST /control`: fault injection.
pub(crate) async fn control(sb: Sandbox, mut req: Request) -> Response {
    let Ok(body) = req.take_body().into_bytes_limit(16 * 1024).await else {
        return json_error(StatusCode::BAD_REQUEST, "body too large");
    };
    let request: ControlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("bad control body: {e}")),
    };
    tracing::info!(?request, "sandbox: control");
    if let Err(message) = sb.state().faults.apply(request) {
        return json_error(StatusCode::BAD_REQUEST, &message);
    }
    control_view(&sb)
}

/// `GET /control`: the faults in force.
pub(crate) fn control_view(sb: &Sandbox) -> Response {
    let faults = sb.state().faults.clone();
    match serde_json::to_value(&faults) {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /pay/qrcode?uuid={code_url}`: an SVG QR code of the code URL.
pub(crate) fn qr_image(req: Request) -> Response {
    let query = req.uri().query().unwrap_or_default();
    let Some(data) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "uuid")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty() && v.len() <= 1024)
    else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body("uuid (the code URL) required");
    };
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(code) => Response::builder().content_type("image/svg+xml").body(
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(240, 240)
                .build(),
        ),
        Err(_) => Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body("cannot encode"),
    }
}

/// `GET /qr/{uuid}`: the page a customer reaches by scanning `code_url`.
pub(crate) async fn qr_page(sb: Sandbox, req: Request) -> Response {
    let uuid = req.raw_path_param("uuid").unwrap_or_default();
    let state = sb.state();
    let Some(order) = state.by_uuid.get(uuid).and_then(|no| state.orders.get(no)) else {
        return html(
            StatusCode::NOT_FOUND,
            "Unknown code",
            "<p>This code is unknown.</p>",
        );
    };
    let now = Utc::now();
    let yuan = format_yuan(order.total_fee);
    let channel = match order.service {
        NativeService::Weixin => "WeChat Pay 微信支付",
        NativeService::Alipay => "Alipay 支付宝",
    };
    let action = format!(
        "{}/orders/{}/pay",
        sb.inner.base_url,
        path_segment(&order.out_trade_no)
    );
    let expired = now >= order.expires_at;
    let button = match order.status {
        OrderStatus::Paid => String::new(),
        OrderStatus::NotPay if !expired => format!(
            "<form method=\"post\" action=\"{}\"><button>Pay ¥{yuan}</button></form>",
            escape(&action)
        ),
        _ => format!(
            "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"force\" \
             value=\"true\"><button>Pay anyway</button> <small>(force: the channel takes the \
             money although the order is {})</small></form>",
            escape(&action),
            if order.status == OrderStatus::Closed {
                "closed"
            } else {
                "expired"
            }
        ),
    };
    let paid = order
        .payment
        .as_ref()
        .map(|p| {
            format!(
                "<dt>Paid at</dt><dd>{}</dd>",
                p.time_end
                    .with_timezone(&BEIJING)
                    .format("%Y-%m-%d %H:%M:%S")
            )
        })
        .unwrap_or_default();
    let content = format!(
        "<h1>¥{yuan}</h1><p>{}</p><dl><dt>Channel</dt><dd>{channel}</dd><dt>Order</dt><dd>{}</dd>\
         <dt>State</dt><dd>{}{}</dd><dt>Expires</dt><dd>{}</dd>{paid}</dl>{button}",
        escape(&order.body),
        escape(&order.out_trade_no),
        order.trade_state().as_wire(),
        if expired && order.status == OrderStatus::NotPay {
            " (expired)"
        } else {
            ""
        },
        order
            .expires_at
            .with_timezone(&BEIJING)
            .format("%Y-%m-%d %H:%M:%S GMT+8"),
    );
    html(
        StatusCode::OK,
        &format!("Pay {}", order.out_trade_no),
        &content,
    )
}

fn html(status: StatusCode, title: &str, content: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width\"><title>{} – SwiftPass sandbox</title><style>\
             body{{font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em}}\
             dt{{color:#666}}button{{font-size:1.2em;padding:.5em 2em}}</style></head>\
             <body>{content}<p><small>SwiftPass sandbox: no real money moves.</small></p>\
             </body></html>",
            escape(title)
        ))
}

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a URL path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
