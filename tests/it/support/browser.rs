//! Headless Chromium (Debian's `chromium`) driven over its DevTools protocol: one WebSocket
//! to the browser, one flat session per tab, real mouse clicks and typed text. No
//! chromedriver, nothing from npm. Every host name but loopback is unresolvable, so a page
//! that reached for a CDN would fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Reply = Result<Value, Value>;

/// The DevTools connection: commands out, replies matched by id, page logs kept.
struct Cdp {
    out: mpsc::UnboundedSender<Message>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next: AtomicU64,
    /// Console messages and uncaught exceptions, per session, for failure reports.
    logs: Mutex<HashMap<String, Vec<String>>>,
}

impl Cdp {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("lock").insert(id, tx);
        self.out
            .send(Message::text(message.to_string()))
            .expect("the DevTools connection is open");
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(error))) => panic!("{method} failed: {error}"),
            Ok(Err(_)) => panic!("{method}: the DevTools connection closed"),
            Err(_) => panic!("{method}: no answer in 30 s"),
        }
    }

    fn on_message(&self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = v["id"].as_u64() {
            if let Some(tx) = self.pending.lock().expect("lock").remove(&id) {
                let reply = match v.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(v["result"].clone()),
                };
                let _ = tx.send(reply);
            }
            return;
        }
        let session = v["sessionId"].as_str().unwrap_or("browser").to_string();
        let line = match v["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = v["params"]["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x["value"]
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x["description"].to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "console.{}: {}",
                    v["params"]["type"].as_str().unwrap_or("log"),
                    args.join(" ")
                )
            }
            Some("Runtime.exceptionThrown") => {
                format!("exception: {}", v["params"]["exceptionDetails"])
            }
            Some("Log.entryAdded") => format!(
                "log.{}: {} {}",
                v["params"]["entry"]["level"].as_str().unwrap_or(""),
                v["params"]["entry"]["text"].as_str().unwrap_or(""),
                v["params"]["entry"]["url"].as_str().unwrap_or("")
            ),
            _ => return,
        };
        self.logs
            .lock()
            .expect("lock")
            .entry(session)
            .or_default()
            .push(line);
    }
}

/// A headless Chromium of the test's own (profile in a temporary folder, removed on drop).
pub struct Browser {
    cdp: Arc<Cdp>,
    user_agent: String,
    profile: PathBuf,
    _child: tokio::process::Child,
}

impl Browser {
    pub async fn launch(name: &str) -> Browser {
        let profile = std::env::temp_dir().join(format!("topup-cdp-{name}"));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("profile dir");
        let child = tokio::process::Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                // Nothing resolves but this machine: a CDN link would fail to load.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium (apt-get install chromium)");
        let url = devtools_url(&profile).await;
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to DevTools");
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let cdp = Arc::new(Cdp {
            out,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            logs: Mutex::new(HashMap::new()),
        });
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader = Arc::clone(&cdp);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message {
                    reader.on_message(text.as_str());
                }
            }
        });
        let version = cdp.call(None, "Browser.getVersion", json!({})).await;
        let user_agent = version["userAgent"]
            .as_str()
            .unwrap_or_default()
            .replace("HeadlessChrome", "Chrome");
        Browser {
            cdp,
            user_agent,
            profile,
            _child: child,
        }
    }

    /// A new tab of `width`×`height` CSS pixels (`mobile`: a phone's viewport and touch)
    /// whose browser asks for `language` first.
    pub async fn page(
        &self,
        name: &str,
        width: u32,
        height: u32,
        mobile: bool,
        language: &str,
    ) -> Page {
        let target = self
            .cdp
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let page = Page {
            cdp: Arc::clone(&self.cdp),
            session,
            name: name.to_string(),
        };
        page.call("Runtime.enable", json!({})).await;
        page.call("Log.enable", json!({})).await;
        page.call("Page.enable", json!({})).await;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await;
        page.call(
            "Emulation.setUserAgentOverride",
            json!({ "userAgent": self.user_agent, "acceptLanguage": language }),
        )
        .await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Chromium writes its DevTools port and path into the profile once it listens.
async fn devtools_url(profile: &Path) -> String {
    let file = profile.join("DevToolsActivePort");
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return format!("ws://127.0.0.1:{port}{path}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromium did not start (no {})", file.display());
}

/// One tab.
pub struct Page {
    cdp: Arc<Cdp>,
    session: String,
    pub name: String,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.cdp.call(Some(&self.session), method, params).await
    }

    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates `expression` in the page (awaiting a promise); returns its JSON value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{}: {expression} threw {details}", self.name);
        }
        result["result"]["value"].clone()
    }

    /// What went wrong, for a failure message: the page's text and its console.
    pub async fn report(&self) -> String {
        let text = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": "location.href + '\\n' + (document.body ? document.body.innerText : '')", "returnByValue": true }),
            )
            .await;
        let logs = self
            .cdp
            .logs
            .lock()
            .expect("lock")
            .get(&self.session)
            .cloned()
            .unwrap_or_default();
        format!(
            "--- {} shows:\n{}\n--- its console:\n{}",
            self.name,
            text["result"]["value"].as_str().unwrap_or_default(),
            logs.join("\n")
        )
    }

    /// Waits until the JavaScript condition holds (polled every 100 ms, at most `seconds`).
    pub async fn wait_for(&self, condition: &str, seconds: u64, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let probe = format!(
            "(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"
        );
        loop {
            if self.eval(&probe).await == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{}: timed out waiting for {what} ({condition})\n{}",
                    self.name,
                    self.report().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element `selector` exists.
    pub async fn wait_for_element(&self, selector: &str, seconds: u64) {
        let condition = format!("document.querySelector({})", js(selector));
        self.wait_for(&condition, seconds, selector).await;
    }

    /// Waits until the element `selector`'s text contains `text`.
    pub async fn wait_for_text(&self, selector: &str, text: &str, seconds: u64) {
        let condition = format!(
            "document.querySelector({}).innerText.includes({})",
            js(selector),
            js(text)
        );
        self.wait_for(&condition, seconds, &format!("{selector} to show {text:?}"))
            .await;
    }

    /// The text of the element `selector` (None when there is none).
    pub async fn text(&self, selector: &str) -> Option<String> {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.innerText : null; }})()",
            js(selector)
        ))
        .await
        .as_str()
        .map(str::to_string)
    }

    /// Clicks the middle of the element `selector` with the mouse, as a person would.
    pub async fn click(&self, selector: &str) {
        self.wait_for(
            &format!(
                "(() => {{ const e = document.querySelector({}); return e && !e.disabled; }})()",
                js(selector)
            ),
            10,
            &format!("{selector} to be clickable"),
        )
        .await;
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); e.scrollIntoView({{block: 'center'}}); \
                 const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
                js(selector)
            ))
            .await;
        let (x, y) = (at[0].as_f64().expect("x"), at[1].as_f64().expect("y"));
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Replaces the text of the input `selector` by typing `text` into it.
    pub async fn fill(&self, selector: &str, text: &str) {
        self.wait_for_element(selector, 10).await;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.focus(); e.value = ''; \
             e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()",
            js(selector)
        ))
        .await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// A PNG of what the tab shows (the viewport; with `full`, the whole page).
    pub async fn screenshot(&self, path: &Path, full: bool) {
        // A tab in the background may never paint a new frame.
        self.call("Page.bringToFront", json!({})).await;
        let mut params = json!({ "format": "png" });
        if full {
            let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
            let size = &metrics["cssContentSize"];
            params["captureBeyondViewport"] = json!(true);
            params["clip"] = json!({ "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 });
        }
        let shot = self.call("Page.captureScreenshot", params).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("data"))
            .expect("base64");
        std::fs::write(path, bytes).expect("write the screenshot");
    }
}

/// A Rust string as a JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}
