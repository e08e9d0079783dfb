//! Every setting, read from the environment. The README's settings table lists the same
//! names, defaults and meanings; keep the two together.
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` never shows the value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// All settings of a Topup process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: unset means a private cluster in `$TOPUP_DATA_DIR/pg`.
    pub database_url: Option<Secret>,
    /// `TOPUP_DB_POOL_SIZE`: connections per process.
    pub db_pool_size: usize,
    /// `TOPUP_LISTEN`: the address the HTTP server binds.
    pub listen: SocketAddr,
    /// `TOPUP_PUBLIC_URL`: the base URL others (the gateway's notifies) reach us at.
    /// Unset means `http://<the bound address>`.
    pub public_url: Option<Url>,
    /// `TOPUP_DATA_DIR`: the private cluster and the generated JWT secret live here.
    pub data_dir: PathBuf,
    /// `TOPUP_JWT_SECRET`: the HS256 key; generated into the data folder when unset.
    pub jwt_secret: Option<Secret>,
    pub swiftpass: SwiftpassSettings,
    /// `TOPUP_SANDBOX_TIME_SCALE`: multiplies the in-process sandbox's notify schedule.
    pub sandbox_time_scale: f64,
    pub recharge: RechargeSettings,
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
        Ok(Config {
            database_url: secret("DATABASE_URL"),
            db_pool_size: pool_size,
            listen: parse_or(
                &get,
                "TOPUP_LISTEN",
                SocketAddr::from(([127, 0, 0, 1], 8000)),
            )?,
            public_url: parse_opt(&get, "TOPUP_PUBLIC_URL")?,
            data_dir: get("TOPUP_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".topup")),
            jwt_secret: secret("TOPUP_JWT_SECRET"),
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
            sandbox_time_scale: time_scale,
            recharge: RechargeSettings {
                min_amount,
                max_amount,
                order_ttl: Duration::from_secs(parse_or(&get, "TOPUP_ORDER_TTL_SECS", 900u64)?),
                max_open_orders: parse_or(&get, "TOPUP_MAX_OPEN_ORDERS", 5i64)?,
            },
        })
    }
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
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("TOPUP_JWT_SECRET", "jwt-hunter2"),
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
    }
}
