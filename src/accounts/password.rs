//! Passwords: the policy a new one must meet, and argon2id hashing (run off the async
//! threads on a bounded number of blocking threads, with no database connection held: it is
//! deliberately slow).

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in characters (argon2 has no limit; this bounds the work).
pub const MAX_LEN: usize = 128;

// The passwords attackers try first; each is refused whatever its case.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "passw0rd",
    "12345678",
    "123456789",
    "1234567890",
    "11111111",
    "00000000",
    "qwertyui",
    "qwerty123",
    "qwertyuiop",
    "iloveyou",
    "abc12345",
    "abcd1234",
    "1q2w3e4r",
    "1qaz2wsx",
    "zaq12wsx",
    "letmein1",
    "welcome1",
    "admin123",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "dragon12",
    "monkey12",
    "trustno1",
    "superman",
    "starwars",
    "88888888",
    "66666666",
    "a1234567",
    "aa123456",
    "woaini1314",
    "5201314520",
    "asdfghjk",
    "asdf1234",
    "zxcvbnm1",
    "changeme",
];

/// Checks a new password: long enough, not too long, not a common one, not built from a
/// couple of characters, and not the email's local part.
pub fn check_policy(password: &str, email: &str) -> AppResult<()> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(AppError::BadInput(format!(
            "password too short: at least {MIN_LEN} characters"
        )));
    }
    if len > MAX_LEN {
        return Err(AppError::BadInput(format!(
            "password too long: at most {MAX_LEN} characters"
        )));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err(AppError::BadInput(
            "password too common: choose one that is harder to guess".into(),
        ));
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Err(AppError::BadInput(
            "password too weak: use at least 4 different characters".into(),
        ));
    }
    let local = email.split('@').next().unwrap_or_default();
    if local.len() >= 4 && lower.contains(local) {
        return Err(AppError::BadInput(
            "password too weak: it must not contain your email address".into(),
        ));
    }
    Ok(())
}

/// How many argon2 computations run at once: one per core. Each takes a blocking thread
/// and about 19 MiB; more at once would only queue on the CPU and let a burst of logins
/// take every blocking thread. Callers wait here, holding no database connection.
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
});

/// Runs one argon2 computation on a blocking thread, when a permit is free.
async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    let _permit = HASHING.acquire().await.map_err(AppError::internal)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(AppError::internal)?
}

/// Hashes a password with argon2id (PHC string).
pub async fn hash(password: &str) -> AppResult<String> {
    let password = password.to_owned();
    bounded(move || hash_blocking(&password)).await
}

fn hash_blocking(password: &str) -> AppResult<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(AppError::internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AppError::internal)
}

/// Whether `password` matches `stored`. With no stored hash (unknown email) it spends the
/// same work hashing the password, so timing does not tell which emails exist.
pub async fn verify(password: &str, stored: Option<String>) -> AppResult<bool> {
    let password = password.to_owned();
    bounded(move || match stored {
        Some(phc) => {
            let parsed = PasswordHash::new(&phc).map_err(AppError::internal)?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        }
        None => hash_blocking(&password).map(|_| false),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_weak_passwords() {
        let email = "alice@example.com";
        for weak in [
            "short1",
            "password123",
            "PASSWORD1",
            "aaaaaaaaaa",
            "ababababab",
            "xxalice-secret",
        ] {
            assert!(
                check_policy(weak, email).is_err(),
                "{weak} should be refused"
            );
        }
        assert!(check_policy(&"x1".repeat(65), email).is_err());
        assert!(check_policy("correct horse battery", email).is_ok());
        assert!(check_policy("S3cure-enough", email).is_ok());
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hash("correct horse battery").await.expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify("correct horse battery", Some(h.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !verify("wrong horse battery", Some(h))
                .await
                .expect("verify")
        );
        assert!(!verify("anything", None).await.expect("verify"));
    }
}
