//! Rate limits of the expensive or abusable doors: login (per account and per client IP),
//! sign-up (per IP) and the notify route (per IP). Each is a keyed GCRA limiter
//! (`governor`) held in memory by each instance, allowing its number per minute with bursts
//! up to that number; a refusal is `LIMIT_EXCEEDED` (HTTP 429). A limit of 0 is off.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitSettings;
use crate::error::AppError;

/// How many checks between two sweeps of keys no longer limited.
const SWEEP_EVERY: u64 = 4096;

/// One instance's limiters.
pub struct Limits {
    login_account: Option<DefaultKeyedRateLimiter<String>>,
    login_ip: Option<DefaultKeyedRateLimiter<String>>,
    register_ip: Option<DefaultKeyedRateLimiter<String>>,
    notify_ip: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limits")
    }
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl Limits {
    /// Limiters for the configured rates.
    pub fn new(settings: &LimitSettings) -> Limits {
        Limits {
            login_account: limiter(settings.login_per_account),
            login_ip: limiter(settings.login_per_ip),
            register_ip: limiter(settings.register_per_ip),
            notify_ip: limiter(settings.notify_per_ip),
            checks: AtomicU64::new(0),
        }
    }

    /// A login attempt from `ip` for `email`.
    pub fn login(&self, ip: &str, email: &str) -> Result<(), AppError> {
        self.check(
            &self.login_ip,
            ip,
            "too many logins from your address: wait a minute",
        )?;
        let account = email.trim().to_lowercase();
        self.check(
            &self.login_account,
            &account,
            "too many logins for this account: wait a minute",
        )
    }

    /// A sign-up from `ip`.
    pub fn register(&self, ip: &str) -> Result<(), AppError> {
        self.check(
            &self.register_ip,
            ip,
            "too many sign-ups from your address: wait a minute",
        )
    }

    /// Whether a notify from `ip` may be handled now.
    pub fn notify(&self, ip: &str) -> bool {
        self.check(&self.notify_ip, ip, "").is_ok()
    }

    fn check(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<String>>,
        key: &str,
        message: &str,
    ) -> Result<(), AppError> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&key.to_owned())
            .map_err(|_| AppError::LimitExceeded(message.to_owned()))
    }
}
