//! Credentials: short-lived HS256 access tokens (JWT) and long-lived, single-use refresh
//! tokens (random, stored only as SHA-256 digests).

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
use crate::error::AppResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

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
    /// Its session ended (logout, a refresh-token replay, a password change, the user
    /// disabled).
    Ended,
}

/// Signs access tokens with one HS256 key and checks them with it (and, during a rotation,
/// with the previous key); the algorithm is pinned.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The key before a rotation, and the end (Unix seconds) of the one token lifetime for
    /// which tokens signed with it are still accepted.
    previous: Option<(DecodingKey, i64)>,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys([redacted])")
    }
}

impl JwtKeys {
    /// Keys from a shared secret, and the secret before a rotation: tokens signed with it
    /// are accepted for one token lifetime from now (a token that expires later, even one
    /// forged with a leaked old secret, is refused).
    pub fn new(secret: &Secret, previous: Option<&Secret>) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS as u64;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            previous: previous.map(|p| {
                let until = Utc::now().timestamp() + ACCESS_TTL.as_secs() as i64 + LEEWAY_SECS;
                (DecodingKey::from_secret(p.expose().as_bytes()), until)
            }),
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
        let decode = |key: &DecodingKey| {
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenProblem::Expired,
                    _ => TokenProblem::Invalid,
                }
            })
        };
        let data = match (decode(&self.decoding), &self.previous) {
            (Err(TokenProblem::Invalid), Some((previous, until))) => {
                let data = decode(previous)?;
                if data.claims.exp > *until {
                    return Err(TokenProblem::Invalid);
                }
                data
            }
            (result, _) => result?,
        };
        let claims = data.claims;
        Ok(Viewer {
            user_id: claims.sub.parse().map_err(|_| TokenProblem::Invalid)?,
            role: Role::parse(&claims.role).ok_or(TokenProblem::Invalid)?,
            session_id: claims.sid,
            expires_at: claims.exp,
        })
    }
}

/// The JWT secret: `TOPUP_JWT_SECRET` when set, else the one kept in the database
/// (generated by the first instance that needs it), so every instance on one database
/// signs and accepts the same tokens.
pub async fn shared_secret(
    conn: &mut AsyncPgConnection,
    configured: Option<&Secret>,
) -> AppResult<Secret> {
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    // Inserted unless there; either way the one that is there is read back.
    let stored: Stored = diesel::sql_query(
        "WITH fresh AS (INSERT INTO app_secrets (name, value) VALUES ('jwt', $1) \
                        ON CONFLICT (name) DO NOTHING RETURNING value) \
         SELECT value FROM fresh UNION ALL \
         SELECT value FROM app_secrets WHERE name = 'jwt' AND NOT EXISTS (SELECT 1 FROM fresh)",
    )
    .bind::<diesel::sql_types::Text, _>(random_token(48))
    .get_result(conn)
    .await?;
    Ok(Secret::new(stored.value))
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
        JwtKeys::new(&Secret::new("unit-test-secret"), None)
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
        let other = JwtKeys::new(&Secret::new("another-secret"), None);
        assert_eq!(other.verify(&token), Err(TokenProblem::Invalid));
    }

    #[test]
    fn the_previous_secret_still_verifies_during_a_rotation() {
        let old = JwtKeys::new(&Secret::new("the-secret-before-the-rotation!!"), None);
        let (token, _) = old.issue(7, Role::Customer, 3).expect("issue");
        let rotated = JwtKeys::new(
            &Secret::new("the-secret-after-the-rotation!!!"),
            Some(&Secret::new("the-secret-before-the-rotation!!")),
        );
        assert_eq!(rotated.verify(&token).expect("still valid").session_id, 3);
        let (fresh, _) = rotated.issue(7, Role::Customer, 4).expect("issue");
        assert_eq!(
            old.verify(&fresh),
            Err(TokenProblem::Invalid),
            "signed with the new key"
        );
        let done = JwtKeys::new(&Secret::new("the-secret-after-the-rotation!!!"), None);
        assert_eq!(done.verify(&token), Err(TokenProblem::Invalid));
    }

    #[test]
    fn the_previous_secret_is_accepted_for_one_token_lifetime_only() {
        let old_secret = "the-secret-before-the-rotation!!";
        let rotated = JwtKeys::new(
            &Secret::new("the-secret-after-the-rotation!!!"),
            Some(&Secret::new(old_secret)),
        );
        // A token forged with the old secret to live past the window is refused.
        let now = Utc::now().timestamp();
        let forged = Claims {
            sub: "7".into(),
            role: "ADMIN".into(),
            sid: 1,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + 2 * ACCESS_TTL.as_secs() as i64,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &forged,
            &EncodingKey::from_secret(old_secret.as_bytes()),
        )
        .expect("encode");
        assert_eq!(rotated.verify(&token), Err(TokenProblem::Invalid));
    }
}
