//! Every setting, read from the environment. The README's settings table lists the same
//! names, defaults and meanings; keep the two together.
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` never shows the value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{FixedOffset, NaiveTime, Timelike};
use url::Url;

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A setting that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// SwiftPass credentials and endpoints. When `gateway_url` is unset, Topup serves its own
/// sandbox in-process and talks to it.
#[derive(Debug, Clone)]
pub struct SwiftpassSettings {
    /// `SWIFTPASS_GATEWAY_URL`: the pay gateway (white-label banks run their own copies).
    pub gateway_url: Option<Url>,
    /// `SWIFTPASS_DOWNLOAD_URL`: the bill-download gateway.
    pub download_url: Option<Url>,
    /// `SWIFTPASS_MCH_ID`: the merchant number.
    pub mch_id: Option<String>,
    /// `SWIFTPASS_KEY`: the merchant MD5 key.
    pub key: Option<Secret>,
    /// `SWIFTPASS_SIGN_TYPE`: `MD5`, `RSA_1_256` or `RSA_1_1`.
    pub sign_type: String,
    /// `SWIFTPASS_PRIVATE_KEY`: the merchant RSA private key (PEM or Base64 DER, or a file).
    pub private_key: Option<Secret>,
    /// `SWIFTPASS_PLATFORM_PUBLIC_KEY`: the platform RSA public key (PEM or Base64 DER, or a file).
    pub platform_public_key: Option<Secret>,
    /// `SWIFTPASS_TIMEOUT_MS`: the whole-request timeout of a gateway call.
    pub request_timeout: Duration,
}

/// Rules for recharge orders.
#[derive(Debug, Clone)]
pub struct RechargeSettings {
    /// `TOPUP_RECHARGE_MIN_FEN`: the smallest recharge, in fen.
    pub min_amount: i64,
    /// `TOPUP_RECHARGE_MAX_FEN`: the largest recharge, in fen.
    pub max_amount: i64,
    /// `TOPUP_ORDER_TTL_SECS`: how long a QR code can be paid.
    pub order_ttl: Duration,
    /// `TOPUP_MAX_OPEN_ORDERS`: unpaid orders a customer may hold at once.
    pub max_open_orders: i64,
}

/// When the daily bill job runs: a time of day at a UTC offset (China time by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillTime {
    pub at: NaiveTime,
    pub offset: FixedOffset,
}

impl std::str::FromStr for BillTime {
    type Err = String;

    /// `HH:MM` (China time, GMT+8) or `HH:MM±HH:MM`.
    fn from_str(text: &str) -> Result<BillTime, String> {
        let bad = || format!("{text:?} is not HH:MM or HH:MM+HH:MM");
        let (time, offset) = match text.find(['+', '-']) {
            Some(i) => (&text[..i], Some(&text[i..])),
            None => (text, None),
        };
        let at = NaiveTime::parse_from_str(time, "%H:%M").map_err(|_| bad())?;
        let offset = match offset {
            None => CHINA,
            Some(o) => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let hm = NaiveTime::parse_from_str(&o[1..], "%H:%M").map_err(|_| bad())?;
                let seconds = i32::try_from(hm.num_seconds_from_midnight()).map_err(|_| bad())?;
                FixedOffset::east_opt(sign * seconds).ok_or_else(bad)?
            }
        };
        Ok(BillTime { at, offset })
    }
}

/// China time (GMT+8): SwiftPass's clock and the default zone of the bill job.
const CHINA: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    // Evaluated at compile time: it cannot fail at run time.
    None => panic!("GMT+8 is a valid offset"),
};

/// The consistency job: asking the gateway about unsettled orders and refunds, replaying
/// failed notifies, and the daily bill.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// `TOPUP_RECONCILE`: whether `serve` runs the reconciler.
    pub enabled: bool,
    /// `TOPUP_RECONCILE_SCHEDULE`: the waits between two questions about the same order
    /// (or refund); the last one repeats.
    pub schedule: Vec<Duration>,
    /// `TOPUP_RECONCILE_TIME_SCALE`: multiplies the schedule and the watch window.
    pub time_scale: f64,
    /// `TOPUP_RECONCILE_WATCH`: how long after its expiry a closed order is still asked
    /// about (a payment can slip through a close).
    pub watch: Duration,
    /// `TOPUP_RECONCILE_BILL_TIME`: when the daily bill of the day before is reconciled;
    /// `None` (`off`) leaves it to `topup reconcile bills`.
    pub bill_time: Option<BillTime>,
    /// `TOPUP_NOTIFY_RETENTION_DAYS`: how long raw notify bodies are kept; the daily job
    /// then keeps only the verdict and a summary.
    pub notify_retention: Duration,
}

impl ReconcileSettings {
    /// The wait after the `attempt`-th question (0-based), scaled.
    pub fn delay(&self, attempt: usize) -> Duration {
        let step = self
            .schedule
            .get(attempt)
            .or(self.schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(1800));
        self.scaled(step)
    }

    /// How long closed orders stay watched after expiry, scaled.
    pub fn watch_window(&self) -> Duration {
        self.scaled(self.watch)
    }

    fn scaled(&self, d: Duration) -> Duration {
        Duration::try_from_secs_f64(d.as_secs_f64() * self.time_scale).unwrap_or(Duration::MAX)
    }
}

/// Parses `15s`, `1m`, `2h`, `500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit (ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number and a unit"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(|| format!("{text:?}: unit must be ms, s, m or h"))?;
    Ok(Duration::from_millis(ms))
}

/// Parses `true`/`false` (also `1`/`0`, `on`/`off`, `yes`/`no`).
fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// Rate limits, each in events per minute per key (0 turns it off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// `TOPUP_LIMIT_LOGIN_PER_ACCOUNT`: login attempts per email address.
    pub login_per_account: u32,
    /// `TOPUP_LIMIT_LOGIN_PER_IP`: login attempts per client IP.
    pub login_per_ip: u32,
    /// `TOPUP_LIMIT_REGISTER_PER_IP`: sign-ups per client IP.
    pub register_per_ip: u32,
    /// `TOPUP_LIMIT_NOTIFY_PER_IP`: notifies per sender IP (the gateway's few addresses
    /// send every payment: keep it well above the peak payment rate).
    pub notify_per_ip: u32,
}

/// Bounds of GraphQL over WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// `TOPUP_WS_INIT_TIMEOUT_SECS`: a connection must send `connection_init` this soon.
    pub init_timeout: Duration,
    /// `TOPUP_WS_CONNECTIONS_PER_USER`: open connections one user may hold (0: no cap).
    pub connections_per_user: usize,
}

/// All settings of a Topup process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: unset means a private cluster in `$TOPUP_DATA_DIR/pg`.
    pub database_url: Option<Secret>,
    /// `TOPUP_MIGRATE_DATABASE_URL`: the schema owner's URL. Migrations run as the owner,
    /// which then grants the `DATABASE_URL` role reading and writing rows only. Unset:
    /// migrations run as `DATABASE_URL`'s role.
    pub migrate_database_url: Option<Secret>,
    /// `TOPUP_DB_POOL_SIZE`: connections per process.
    pub db_pool_size: usize,
    /// `TOPUP_NOTIFY_POOL_SIZE`: connections kept for the gateway's notifies, apart from
    /// the main pool, so a burst of other requests cannot starve a payment.
    pub notify_pool_size: usize,
    /// `TOPUP_LISTEN`: the address the HTTP server binds.
    pub listen: SocketAddr,
    /// `TOPUP_PUBLIC_URL`: the base URL others (the gateway's notifies) reach us at.
    /// Unset means `http://<the bound address>`.
    pub public_url: Option<Url>,
    /// `TOPUP_DATA_DIR`: the private cluster and the generated JWT secret live here.
    pub data_dir: PathBuf,
    /// `TOPUP_JWT_SECRET`: the HS256 key (at least 32 bytes); generated once into the
    /// database when unset, so every instance on it shares one.
    pub jwt_secret: Option<Secret>,
    /// `TOPUP_JWT_SECRET_PREVIOUS`: the key before a rotation; tokens it signed are still
    /// accepted (until they expire, 15 minutes at most). Remove it after that.
    pub jwt_secret_previous: Option<Secret>,
    pub swiftpass: SwiftpassSettings,
    /// `TOPUP_SANDBOX`: `Some(true)` asks for the in-process sandbox, `Some(false)` forbids
    /// it; unset leaves it to [`Config::sandbox_mode`] (zero-configuration only).
    pub sandbox: Option<bool>,
    /// `TOPUP_SANDBOX_TIME_SCALE`: multiplies the in-process sandbox's notify schedule.
    pub sandbox_time_scale: f64,
    pub recharge: RechargeSettings,
    pub reconcile: ReconcileSettings,
    /// `TOPUP_GRAPHIQL`: serve GraphiQL on `GET /graphql`.
    pub graphiql: bool,
    /// `TOPUP_INTROSPECTION`: answer introspection queries (GraphiQL needs them).
    pub introspection: bool,
    /// `TOPUP_CONSOLE`: serve the web console on `GET /`.
    pub console: bool,
    pub sales: SalesSettings,
    pub limits: LimitSettings,
    pub ws: WsSettings,
    /// `TOPUP_LISTEN_DATABASE_URL`: where the event hub's LISTEN connection goes; it must
    /// reach PostgreSQL directly (a pooler in transaction mode drops LISTEN). Unset: the
    /// `DATABASE_URL`.
    pub listen_database_url: Option<Secret>,
    /// `TOPUP_DB_PREPARED_STATEMENTS`: `false` sends every pooled statement unnamed in one
    /// round trip, as PgBouncer in transaction mode needs.
    pub db_prepared_statements: bool,
    /// `TOPUP_READ_DATABASE_URL`: a streaming replica (or a pooler in front of replicas)
    /// that sales reports read from. Unset: reports read the primary.
    pub read_database_url: Option<Secret>,
}

/// Sales reports and their rollup.
#[derive(Debug, Clone)]
pub struct SalesSettings {
    /// `TOPUP_REPORT_TIME_ZONE`: the IANA zone whose calendar days (weeks from Monday,
    /// months) reports count in; checked against PostgreSQL at start-up.
    pub time_zone: String,
    /// `TOPUP_ROLLUP_INTERVAL_MS`: how often each instance folds pending sales into the
    /// rollup (reports are exact either way; this only moves work).
    pub rollup_interval: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests). Empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = |name: &str| get(name).map(Secret::new);
        let min_amount = parse_or(&get, "TOPUP_RECHARGE_MIN_FEN", 1i64)?;
        let max_amount = parse_or(&get, "TOPUP_RECHARGE_MAX_FEN", 5_000_000i64)?;
        if min_amount < 1 || max_amount < min_amount {
            return Err(ConfigError {
                name: "TOPUP_RECHARGE_MAX_FEN",
                problem: format!(
                    "need 1 <= TOPUP_RECHARGE_MIN_FEN <= TOPUP_RECHARGE_MAX_FEN, got {min_amount}..={max_amount}"
                ),
            });
        }
        let time_scale: f64 = parse_or(&get, "TOPUP_SANDBOX_TIME_SCALE", 1.0)?;
        if !(time_scale > 0.0 && time_scale.is_finite()) {
            return Err(ConfigError {
                name: "TOPUP_SANDBOX_TIME_SCALE",
                problem: "must be a positive number".into(),
            });
        }
        let pool_size: usize = parse_or(&get, "TOPUP_DB_POOL_SIZE", 16)?;
        if pool_size == 0 {
            return Err(ConfigError {
                name: "TOPUP_DB_POOL_SIZE",
                problem: "must be at least 1".into(),
            });
        }
        let notify_pool_size: usize = parse_or(&get, "TOPUP_NOTIFY_POOL_SIZE", 4)?;
        if notify_pool_size == 0 {
            return Err(ConfigError {
                name: "TOPUP_NOTIFY_POOL_SIZE",
                problem: "must be at least 1".into(),
            });
        }
        let reconcile = reconcile_settings(&get)?;
        let flag = |name: &'static str| {
            get(name)
                .map(|v| parse_bool(&v))
                .transpose()
                .map_err(|problem| ConfigError { name, problem })
                .map(|v| v.unwrap_or(true))
        };
        let graphiql = flag("TOPUP_GRAPHIQL")?;
        let introspection = flag("TOPUP_INTROSPECTION")?;
        let console = flag("TOPUP_CONSOLE")?;
        Ok(Config {
            database_url: secret("DATABASE_URL"),
            migrate_database_url: secret("TOPUP_MIGRATE_DATABASE_URL"),
            db_pool_size: pool_size,
            notify_pool_size,
            listen: parse_or(
                &get,
                "TOPUP_LISTEN",
                SocketAddr::from(([127, 0, 0, 1], 8000)),
            )?,
            public_url: parse_opt(&get, "TOPUP_PUBLIC_URL")?,
            data_dir: get("TOPUP_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".topup")),
            jwt_secret: jwt_secret(secret("TOPUP_JWT_SECRET"), "TOPUP_JWT_SECRET")?,
            jwt_secret_previous: jwt_secret(
                secret("TOPUP_JWT_SECRET_PREVIOUS"),
                "TOPUP_JWT_SECRET_PREVIOUS",
            )?,
            swiftpass: SwiftpassSettings {
                gateway_url: parse_opt(&get, "SWIFTPASS_GATEWAY_URL")?,
                download_url: parse_opt(&get, "SWIFTPASS_DOWNLOAD_URL")?,
                mch_id: get("SWIFTPASS_MCH_ID"),
                key: secret("SWIFTPASS_KEY"),
                sign_type: get("SWIFTPASS_SIGN_TYPE").unwrap_or_else(|| "MD5".into()),
                private_key: secret("SWIFTPASS_PRIVATE_KEY"),
                platform_public_key: secret("SWIFTPASS_PLATFORM_PUBLIC_KEY"),
                request_timeout: Duration::from_millis(parse_or(
                    &get,
                    "SWIFTPASS_TIMEOUT_MS",
                    10_000u64,
                )?),
            },
            sandbox: get("TOPUP_SANDBOX")
                .map(|v| parse_bool(&v))
                .transpose()
                .map_err(|problem| ConfigError {
                    name: "TOPUP_SANDBOX",
                    problem,
                })?,
            sandbox_time_scale: time_scale,
            recharge: RechargeSettings {
                min_amount,
                max_amount,
                order_ttl: Duration::from_secs(parse_or(&get, "TOPUP_ORDER_TTL_SECS", 900u64)?),
                max_open_orders: parse_or(&get, "TOPUP_MAX_OPEN_ORDERS", 5i64)?,
            },
            reconcile,
            graphiql,
            introspection,
            console,
            sales: sales_settings(&get)?,
            limits: LimitSettings {
                login_per_account: parse_or(&get, "TOPUP_LIMIT_LOGIN_PER_ACCOUNT", 10)?,
                login_per_ip: parse_or(&get, "TOPUP_LIMIT_LOGIN_PER_IP", 60)?,
                register_per_ip: parse_or(&get, "TOPUP_LIMIT_REGISTER_PER_IP", 20)?,
                notify_per_ip: parse_or(&get, "TOPUP_LIMIT_NOTIFY_PER_IP", 60_000)?,
            },
            ws: WsSettings {
                init_timeout: Duration::from_secs(parse_or(
                    &get,
                    "TOPUP_WS_INIT_TIMEOUT_SECS",
                    10u64,
                )?),
                connections_per_user: parse_or(&get, "TOPUP_WS_CONNECTIONS_PER_USER", 10)?,
            },
            listen_database_url: secret("TOPUP_LISTEN_DATABASE_URL"),
            db_prepared_statements: get("TOPUP_DB_PREPARED_STATEMENTS")
                .map(|v| parse_bool(&v))
                .transpose()
                .map_err(|problem| ConfigError {
                    name: "TOPUP_DB_PREPARED_STATEMENTS",
                    problem,
                })?
                .unwrap_or(true),
            read_database_url: secret("TOPUP_READ_DATABASE_URL"),
        })
    }
}

fn sales_settings(get: &impl Fn(&str) -> Option<String>) -> Result<SalesSettings, ConfigError> {
    let time_zone = get("TOPUP_REPORT_TIME_ZONE")
        .map(|z| z.trim().to_owned())
        .unwrap_or_else(|| "Asia/Shanghai".into());
    if !time_zone
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
    {
        return Err(ConfigError {
            name: "TOPUP_REPORT_TIME_ZONE",
            problem: format!("{time_zone:?} is not a time zone name (like Asia/Shanghai)"),
        });
    }
    let interval: u64 = parse_or(get, "TOPUP_ROLLUP_INTERVAL_MS", 1000u64)?;
    if interval == 0 {
        return Err(ConfigError {
            name: "TOPUP_ROLLUP_INTERVAL_MS",
            problem: "must be at least 1".into(),
        });
    }
    Ok(SalesSettings {
        time_zone,
        rollup_interval: Duration::from_millis(interval),
    })
}

/// The public SwiftPass test merchant's MD5 key (from the protocol's documentation): the only
/// configured key the in-process sandbox signs with, since it is no one's real key.
pub const PUBLIC_TEST_KEY: &str = "9d101c97133837e13dde2d32a5054abb";

impl Config {
    /// Whether `serve` runs the in-process SwiftPass sandbox, or why it cannot start.
    ///
    /// The sandbox pays any order on request, so it never runs by accident: it is on with
    /// `TOPUP_SANDBOX=1`, or in zero-configuration mode (no `DATABASE_URL`, no
    /// `SWIFTPASS_GATEWAY_URL`, no `TOPUP_PUBLIC_URL`, a loopback `TOPUP_LISTEN`). Anything
    /// else without a gateway URL is a start-up error naming the setting. A sandbox never
    /// signs with a configured merchant key (only with the public test key).
    pub fn sandbox_mode(&self) -> Result<bool, ConfigError> {
        let sp = &self.swiftpass;
        if sp.gateway_url.is_some() {
            if self.sandbox == Some(true) {
                return Err(ConfigError {
                    name: "TOPUP_SANDBOX",
                    problem: "the in-process sandbox replaces the gateway: unset \
                              SWIFTPASS_GATEWAY_URL or TOPUP_SANDBOX"
                        .into(),
                });
            }
            return Ok(false);
        }
        let on = match self.sandbox {
            Some(asked) => asked,
            None => {
                self.database_url.is_none()
                    && self.public_url.is_none()
                    && self.listen.ip().is_loopback()
            }
        };
        if !on {
            let why = match self.sandbox {
                Some(false) => "TOPUP_SANDBOX is off".to_string(),
                _ => {
                    let mut set = Vec::new();
                    if self.database_url.is_some() {
                        set.push("DATABASE_URL");
                    }
                    if self.public_url.is_some() {
                        set.push("TOPUP_PUBLIC_URL");
                    }
                    if !self.listen.ip().is_loopback() {
                        set.push("a non-loopback TOPUP_LISTEN");
                    }
                    format!("{} set, so this is not a local trial", set.join(", "))
                }
            };
            return Err(ConfigError {
                name: "SWIFTPASS_GATEWAY_URL",
                problem: format!(
                    "required: {why}, and the in-process sandbox (which pays any order on \
                     request) only runs in zero-configuration mode or with TOPUP_SANDBOX=1"
                ),
            });
        }
        if sp
            .key
            .as_ref()
            .is_some_and(|k| k.expose() != PUBLIC_TEST_KEY)
        {
            return Err(ConfigError {
                name: "SWIFTPASS_KEY",
                problem: "the in-process sandbox never signs with a configured merchant key \
                          (only the public test key): unset it, or set SWIFTPASS_GATEWAY_URL"
                    .into(),
            });
        }
        if sp.private_key.is_some() || sp.platform_public_key.is_some() {
            return Err(ConfigError {
                name: "SWIFTPASS_PRIVATE_KEY",
                problem: "the in-process sandbox never uses configured RSA keys: unset \
                          SWIFTPASS_PRIVATE_KEY and SWIFTPASS_PLATFORM_PUBLIC_KEY, or set \
                          SWIFTPASS_GATEWAY_URL"
                    .into(),
            });
        }
        Ok(true)
    }
}

/// The shortest accepted HS256 key: 256 bits, the hash's own size.
pub const JWT_SECRET_MIN_BYTES: usize = 32;

fn jwt_secret(value: Option<Secret>, name: &'static str) -> Result<Option<Secret>, ConfigError> {
    match value {
        Some(secret) if secret.expose().len() < JWT_SECRET_MIN_BYTES => Err(ConfigError {
            name,
            problem: format!(
                "too short: at least {JWT_SECRET_MIN_BYTES} bytes (e.g. `openssl rand -base64 48`)"
            ),
        }),
        other => Ok(other),
    }
}

fn reconcile_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<ReconcileSettings, ConfigError> {
    let with = |name: &'static str, problem: String| ConfigError { name, problem };
    let enabled = get("TOPUP_RECONCILE")
        .map(|v| parse_bool(&v))
        .transpose()
        .map_err(|p| with("TOPUP_RECONCILE", p))?
        .unwrap_or(true);
    let schedule = get("TOPUP_RECONCILE_SCHEDULE")
        .unwrap_or_else(|| "15s,30s,1m,2m,5m,10m,30m".into())
        .split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|p| with("TOPUP_RECONCILE_SCHEDULE", p))?;
    if schedule.iter().any(Duration::is_zero) {
        return Err(with(
            "TOPUP_RECONCILE_SCHEDULE",
            "every wait must be longer than zero".into(),
        ));
    }
    let time_scale: f64 = parse_or(get, "TOPUP_RECONCILE_TIME_SCALE", 1.0)?;
    if !(time_scale > 0.0 && time_scale.is_finite()) {
        return Err(with(
            "TOPUP_RECONCILE_TIME_SCALE",
            "must be a positive number".into(),
        ));
    }
    let watch = get("TOPUP_RECONCILE_WATCH")
        .map(|v| parse_duration(&v))
        .transpose()
        .map_err(|p| with("TOPUP_RECONCILE_WATCH", p))?
        .unwrap_or(Duration::from_secs(24 * 3600));
    let bill_time = match get("TOPUP_RECONCILE_BILL_TIME") {
        Some(v) if v.trim().eq_ignore_ascii_case("off") => None,
        Some(v) => Some(
            v.trim()
                .parse::<BillTime>()
                .map_err(|p| with("TOPUP_RECONCILE_BILL_TIME", p))?,
        ),
        None => Some(BillTime {
            at: NaiveTime::from_hms_opt(10, 0, 0).unwrap_or_default(),
            offset: CHINA,
        }),
    };
    let retention_days: u64 = parse_or(get, "TOPUP_NOTIFY_RETENTION_DAYS", 180)?;
    if retention_days == 0 {
        return Err(with(
            "TOPUP_NOTIFY_RETENTION_DAYS",
            "must be at least 1".into(),
        ));
    }
    Ok(ReconcileSettings {
        enabled,
        schedule,
        time_scale,
        watch,
        bill_time,
        notify_retention: Duration::from_secs(retention_days * 24 * 3600),
    })
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    Ok(parse_opt(get, name)?.unwrap_or(default))
}

fn parse_opt<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    get(name)
        .map(|raw| {
            raw.trim().parse::<T>().map_err(|e| ConfigError {
                name,
                problem: format!("cannot parse {raw:?}: {e}"),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_environment() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.data_dir, PathBuf::from(".topup"));
        assert!(c.database_url.is_none());
        assert_eq!(c.recharge.min_amount, 1);
        assert_eq!(c.recharge.max_amount, 5_000_000);
        assert_eq!(c.recharge.order_ttl, Duration::from_secs(900));
        assert_eq!(c.recharge.max_open_orders, 5);
        assert_eq!(c.swiftpass.sign_type, "MD5");
        assert!(c.reconcile.enabled);
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(
            c.reconcile.schedule,
            [
                Duration::from_secs(15),
                Duration::from_secs(30),
                minutes(1),
                minutes(2),
                minutes(5),
                minutes(10),
                minutes(30)
            ]
        );
        assert_eq!(c.reconcile.delay(0), Duration::from_secs(15));
        assert_eq!(c.reconcile.delay(100), minutes(30), "the last wait repeats");
        assert_eq!(c.reconcile.watch_window(), minutes(24 * 60));
        let bill = c.reconcile.bill_time.expect("a daily bill job");
        assert_eq!(bill.at, NaiveTime::from_hms_opt(10, 0, 0).expect("time"));
        assert_eq!(bill.offset.local_minus_utc(), 8 * 3600, "China time");
    }

    #[test]
    fn reconcile_settings_parse_and_scale() {
        let c = config(&[
            ("TOPUP_RECONCILE", "off"),
            ("TOPUP_RECONCILE_SCHEDULE", "500ms, 2s,1h"),
            ("TOPUP_RECONCILE_TIME_SCALE", "0.5"),
            ("TOPUP_RECONCILE_WATCH", "2h"),
            ("TOPUP_RECONCILE_BILL_TIME", "03:30-01:00"),
        ])
        .expect("config");
        assert!(!c.reconcile.enabled);
        assert_eq!(c.reconcile.delay(0), Duration::from_millis(250));
        assert_eq!(c.reconcile.delay(1), Duration::from_secs(1));
        assert_eq!(c.reconcile.delay(9), Duration::from_secs(1800));
        assert_eq!(c.reconcile.watch_window(), Duration::from_secs(3600));
        let bill = c.reconcile.bill_time.expect("bill time");
        assert_eq!(bill.offset.local_minus_utc(), -3600);
        let off = config(&[("TOPUP_RECONCILE_BILL_TIME", "off")]).expect("config");
        assert!(off.reconcile.bill_time.is_none());
        for (name, bad) in [
            ("TOPUP_RECONCILE", "maybe"),
            ("TOPUP_RECONCILE_SCHEDULE", "15"),
            ("TOPUP_RECONCILE_SCHEDULE", "15s,0s"),
            ("TOPUP_RECONCILE_SCHEDULE", "1d"),
            ("TOPUP_RECONCILE_TIME_SCALE", "-1"),
            ("TOPUP_RECONCILE_WATCH", "soon"),
            ("TOPUP_RECONCILE_BILL_TIME", "25:00"),
            ("TOPUP_RECONCILE_BILL_TIME", "10:00+8"),
        ] {
            let err = config(&[(name, bad)]).expect_err(bad);
            assert_eq!(err.name, name, "{bad}");
        }
    }

    #[test]
    fn the_sandbox_runs_only_when_nothing_says_production() {
        let mode = |pairs: &[(&str, &str)]| config(pairs).expect("config").sandbox_mode();
        let on = |pairs: &[(&str, &str)]| mode(pairs).expect("sandbox on");
        let refused = |pairs: &[(&str, &str)]| mode(pairs).expect_err("start-up error").name;
        let db = ("DATABASE_URL", "postgres://db/x");
        let gw = ("SWIFTPASS_GATEWAY_URL", "https://gw.example/pay/gateway");
        // Zero configuration: on.
        assert!(on(&[]));
        assert!(on(&[("TOPUP_LISTEN", "[::1]:8000")]));
        // Asked for: on, whatever else is set.
        assert!(on(&[db, ("TOPUP_SANDBOX", "1")]));
        assert!(on(&[
            ("TOPUP_LISTEN", "0.0.0.0:80"),
            ("TOPUP_SANDBOX", "true")
        ]));
        // A gateway URL: off.
        assert!(!on(&[gw]));
        assert!(!on(&[db, gw, ("TOPUP_SANDBOX", "0")]));
        // Anything that says production, without a gateway: a start-up error.
        assert_eq!(refused(&[db]), "SWIFTPASS_GATEWAY_URL");
        assert_eq!(
            refused(&[("TOPUP_PUBLIC_URL", "https://pay.example")]),
            "SWIFTPASS_GATEWAY_URL"
        );
        assert_eq!(
            refused(&[("TOPUP_LISTEN", "0.0.0.0:8000")]),
            "SWIFTPASS_GATEWAY_URL"
        );
        assert_eq!(
            refused(&[("TOPUP_SANDBOX", "off")]),
            "SWIFTPASS_GATEWAY_URL"
        );
        assert_eq!(refused(&[gw, ("TOPUP_SANDBOX", "1")]), "TOPUP_SANDBOX");
        // Never a real merchant key.
        assert_eq!(refused(&[("SWIFTPASS_KEY", "a-real-key")]), "SWIFTPASS_KEY");
        assert!(on(&[("SWIFTPASS_KEY", PUBLIC_TEST_KEY)]));
        assert_eq!(
            refused(&[("SWIFTPASS_PRIVATE_KEY", "/etc/merchant.pem")]),
            "SWIFTPASS_PRIVATE_KEY"
        );
        let bad = config(&[("TOPUP_SANDBOX", "maybe")]).expect_err("not a boolean");
        assert_eq!(bad.name, "TOPUP_SANDBOX");
    }

    #[test]
    fn scaling_out_settings_default_to_one_direct_database() {
        let c = config(&[]).expect("defaults");
        assert!(c.db_prepared_statements);
        assert!(c.listen_database_url.is_none() && c.read_database_url.is_none());
        let c = config(&[
            ("TOPUP_DB_PREPARED_STATEMENTS", "false"),
            (
                "TOPUP_LISTEN_DATABASE_URL",
                "postgres://u:listen-pw@primary/x",
            ),
            ("TOPUP_READ_DATABASE_URL", "postgres://u:read-pw@replica/x"),
        ])
        .expect("config");
        assert!(!c.db_prepared_statements);
        assert_eq!(
            c.read_database_url.as_ref().map(Secret::expose),
            Some("postgres://u:read-pw@replica/x")
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("-pw"), "{shown}");
        let bad = config(&[("TOPUP_DB_PREPARED_STATEMENTS", "sometimes")]).expect_err("bool");
        assert_eq!(bad.name, "TOPUP_DB_PREPARED_STATEMENTS");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("TOPUP_JWT_SECRET", "jwt-hunter2-jwt-hunter2-jwt-hunter2"),
            ("SWIFTPASS_KEY", "md5-hunter2"),
        ])
        .expect("config");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = config(&[("TOPUP_LISTEN", "nowhere")]).expect_err("must fail");
        assert_eq!(err.name, "TOPUP_LISTEN");
        let err = config(&[
            ("TOPUP_RECHARGE_MIN_FEN", "10"),
            ("TOPUP_RECHARGE_MAX_FEN", "5"),
        ])
        .expect_err("must fail");
        assert_eq!(err.name, "TOPUP_RECHARGE_MAX_FEN");
        assert!(config(&[("TOPUP_SANDBOX_TIME_SCALE", "0")]).is_err());
        assert!(config(&[("TOPUP_DB_POOL_SIZE", "0")]).is_err());
        for name in ["TOPUP_JWT_SECRET", "TOPUP_JWT_SECRET_PREVIOUS"] {
            let err = config(&[(name, "only-31-bytes-of-secret-here!!!")]).expect_err("short");
            assert_eq!(err.name, name);
            assert!(!err.to_string().contains("only-31"), "{err}");
            assert!(config(&[(name, "exactly-32-bytes-of-secret-here!")]).is_ok());
        }
    }
}
