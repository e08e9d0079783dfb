//! Credentials: short-lived HS256 access tokens (JWT) and long-lived, single-use refresh
//! tokens (random, stored only as SHA-256 digests).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Role;
use crate::config::Secret;

/// Who issues access tokens (`iss`).
pub const ISSUER: &str = "topup";
/// Who access tokens are for (`aud`).
pub const AUDIENCE: &str = "topup-api";
/// How long an access token lives.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a refresh token lives unless used.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's role when the token was issued.
    pub role: String,
    /// The session the token belongs to.
    pub sid: i64,
    pub iss: String,
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Seconds of clock skew tolerated on `exp`.
pub const LEEWAY_SECS: i64 = 5;

/// An authenticated caller, read from a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: i64,
    pub role: Role,
    pub session_id: i64,
    /// When the token expires (Unix seconds). A WebSocket connection authenticates once,
    /// so every operation on it checks this again.
    pub expires_at: i64,
}

impl Viewer {
    /// Whether the token it came from has expired.
    pub fn is_expired(&self) -> bool {
        Utc::now().timestamp() >= self.expires_at + LEEWAY_SECS
    }
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Past its `exp`.
    Expired,
    /// Bad signature, algorithm, issuer, audience, or shape.
    Invalid,
}

/// Signs and checks access tokens with one HS256 key; the algorithm is pinned.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys([redacted])")
    }
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn new(secret: &Secret) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS as u64;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// Issues an access token for a user's session; returns it with its expiry.
    pub fn issue(
        &self,
        user_id: i64,
        role: Role,
        session_id: i64,
    ) -> Result<(String, DateTime<Utc>), String> {
        let now = Utc::now();
        let exp = now + ACCESS_TTL;
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.as_str().to_string(),
            sid: session_id,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(|token| (token, exp))
            .map_err(|e| e.to_string())
    }

    /// Checks an access token and reads the caller from it.
    pub fn verify(&self, token: &str) -> Result<Viewer, TokenProblem> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenProblem::Expired,
                _ => TokenProblem::Invalid,
            })?;
        let claims = data.claims;
        Ok(Viewer {
            user_id: claims.sub.parse().map_err(|_| TokenProblem::Invalid)?,
            role: Role::parse(&claims.role).ok_or(TokenProblem::Invalid)?,
            session_id: claims.sid,
            expires_at: claims.exp,
        })
    }
}

/// The JWT secret: `TOPUP_JWT_SECRET` when set, else the one kept in `<data dir>/jwt-secret`
/// (generated on first use, readable only by this user).
pub fn load_or_create_secret(
    configured: Option<&Secret>,
    data_dir: &Path,
) -> std::io::Result<Secret> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    let path = data_dir.join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = random_token(48);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(secret.as_bytes())?;
    Ok(Secret::new(secret))
}

/// A fresh refresh token (256 random bits, URL-safe Base64).
pub fn new_refresh_token() -> String {
    random_token(32)
}

/// The digest a refresh token is stored and looked up by.
pub fn refresh_token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("unit-test-secret"))
    }

    #[test]
    fn issued_tokens_verify() {
        let (token, exp) = keys().issue(7, Role::Admin, 3).expect("issue");
        assert!(exp > Utc::now());
        let viewer = keys().verify(&token).expect("verify");
        assert_eq!(
            (viewer.user_id, viewer.role, viewer.session_id),
            (7, Role::Admin, 3)
        );
        assert_eq!(viewer.expires_at, exp.timestamp());
        assert!(!viewer.is_expired());
        let old = Viewer {
            expires_at: Utc::now().timestamp() - 60,
            ..viewer
        };
        assert!(old.is_expired());
        let other = JwtKeys::new(&Secret::new("another-secret"));
        assert_eq!(other.verify(&token), Err(TokenProblem::Invalid));
    }

    #[test]
    fn secret_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("topup-jwt-{}", std::process::id()));
        let a = load_or_create_secret(None, &dir).expect("create");
        let b = load_or_create_secret(None, &dir).expect("read");
        assert_eq!(a, b);
        let configured = Secret::new("from-env");
        assert_eq!(
            load_or_create_secret(Some(&configured), &dir).expect("env"),
            configured
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
