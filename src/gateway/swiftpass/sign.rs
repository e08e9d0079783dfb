//! Signing and verifying SwiftPass messages (protocol §2): the string to sign, MD5 with the
//! merchant key, RSA PKCS#1 v1.5 with SHA-256 (`RSA_1_256`) or SHA-1 (`RSA_1_1`), key parsing,
//! and the merchant [`Credentials`] that bundle a signer and a verifier.
//!
//! Secrets (the MD5 key, private keys) never appear in `Debug` output or in error messages.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use super::Params;

/// How a message is signed: the wire value of `sign_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignType {
    /// `MD5`: MD5 over the string to sign plus `&key=<merchant key>`; the default when
    /// `sign_type` is absent.
    Md5,
    /// `RSA_1_256`: RSA PKCS#1 v1.5 with SHA-256, Base64.
    Rsa1_256,
    /// `RSA_1_1`: RSA PKCS#1 v1.5 with SHA-1, Base64.
    Rsa1_1,
}

impl SignType {
    /// The wire value (`MD5`, `RSA_1_256`, `RSA_1_1`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::Rsa1_256 => "RSA_1_256",
            SignType::Rsa1_1 => "RSA_1_1",
        }
    }

    /// True for the two RSA variants.
    pub fn is_rsa(self) -> bool {
        matches!(self, SignType::Rsa1_256 | SignType::Rsa1_1)
    }

    /// The `sign_type` a message declares; an absent one means MD5 (protocol §1).
    pub fn of_message(params: &Params) -> Result<SignType, SignError> {
        match params.get("sign_type") {
            None => Ok(SignType::Md5),
            Some(value) => value.parse(),
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignType {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [SignType::Md5, SignType::Rsa1_256, SignType::Rsa1_1]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| SignError::UnknownSignType(s.to_owned()))
    }
}

/// Why a message could not be signed or verified, or credentials could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The message carries no `sign`.
    #[error("message has no sign")]
    MissingSignature,
    /// The signature does not match the message.
    #[error("signature does not match")]
    BadSignature,
    /// The message's `sign_type` is not the one this key can handle.
    #[error("sign_type {got} does not fit a {expected} key")]
    SignTypeMismatch {
        /// What the key handles.
        expected: &'static str,
        /// What the message declares.
        got: String,
    },
    /// `sign_type` is not one of MD5, RSA_1_256, RSA_1_1.
    #[error("unsupported sign_type {0:?}")]
    UnknownSignType(String),
    /// A key could not be parsed (the message never contains key material).
    #[error("invalid {0}")]
    InvalidKey(&'static str),
    /// A setting needed for the chosen sign type is missing or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The RSA operation failed.
    #[error("RSA signing failed")]
    Rsa,
}

/// The sorted `k=v&k=v` string that both MD5 and RSA signatures cover (protocol §2.1 steps
/// 1–4): `sign`, empty values and a parameter literally named `key` are left out, `sign_type`
/// is kept, values are raw, and there is no `&key=` suffix.
pub fn string_to_sign(params: &Params) -> String {
    let mut out = String::new();
    // BTreeMap<String, _> iterates in byte order, which is the order the protocol signs in.
    for (k, v) in params {
        if v.is_empty() || k == "sign" || k == "key" {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The MD5 signature: upper-case hex MD5 of `string_to_sign(params) + "&key=" + key`.
pub fn md5_sign(params: &Params, key: &str) -> String {
    let mut text = string_to_sign(params);
    text.push_str("&key=");
    text.push_str(key);
    hex::encode_upper(Md5::digest(text.as_bytes()))
}

/// The SHA-1 or SHA-256 digest and PKCS#1 v1.5 scheme for an RSA sign type.
fn rsa_scheme(sign_type: SignType, message: &[u8]) -> Result<(Pkcs1v15Sign, Vec<u8>), SignError> {
    match sign_type {
        SignType::Rsa1_256 => Ok((
            Pkcs1v15Sign::new::<sha2::Sha256>(),
            sha2::Sha256::digest(message).to_vec(),
        )),
        SignType::Rsa1_1 => Ok((
            Pkcs1v15Sign::new::<sha1::Sha1>(),
            sha1::Sha1::digest(message).to_vec(),
        )),
        SignType::Md5 => Err(SignError::SignTypeMismatch {
            expected: "RSA",
            got: SignType::Md5.as_str().to_owned(),
        }),
    }
}

/// Makes signatures with our secret: the MD5 key or the merchant's RSA private key.
#[expect(
    clippy::large_enum_variant,
    reason = "one signer lives per merchant configuration; callers construct the unboxed key"
)]
#[derive(Clone)]
pub enum Signer {
    /// MD5 with the shared merchant key.
    Md5 {
        /// The merchant MD5 key.
        key: String,
    },
    /// RSA with the merchant's private key; `sign_type` must be `Rsa1_256` or `Rsa1_1`.
    Rsa {
        /// Which RSA variant to produce.
        sign_type: SignType,
        /// The merchant's private key.
        key: RsaPrivateKey,
    },
}

impl Signer {
    /// The `sign_type` this signer produces.
    pub fn sign_type(&self) -> SignType {
        match self {
            Signer::Md5 { .. } => SignType::Md5,
            Signer::Rsa { sign_type, .. } => *sign_type,
        }
    }

    /// Signs `params` (any `sign` in them is ignored). The params must already carry this
    /// signer's `sign_type` (it is covered by the signature); MD5 also accepts it absent.
    pub fn sign(&self, params: &Params) -> Result<String, SignError> {
        let declared = params.get("sign_type");
        let fits = match declared {
            None => self.sign_type() == SignType::Md5,
            Some(value) => value.parse::<SignType>().ok() == Some(self.sign_type()),
        };
        if !fits {
            return Err(SignError::SignTypeMismatch {
                expected: self.sign_type().as_str(),
                got: declared.cloned().unwrap_or_default(),
            });
        }
        match self {
            Signer::Md5 { key } => Ok(md5_sign(params, key)),
            Signer::Rsa { sign_type, key } => {
                let (scheme, digest) = rsa_scheme(*sign_type, string_to_sign(params).as_bytes())?;
                // Blinding (the rng) keeps the private-key operation's timing independent of
                // the key.
                let signature = key
                    .sign_with_rng(&mut RsaRng(rand::rng()), scheme, &digest)
                    .map_err(|_| SignError::Rsa)?;
                Ok(BASE64.encode(signature))
            }
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Md5 { .. } => f.write_str("Signer::Md5 { key: <redacted> }"),
            Signer::Rsa { sign_type, key } => write!(
                f,
                "Signer::Rsa {{ sign_type: {sign_type}, key: <redacted {} bit private key> }}",
                key.size() * 8
            ),
        }
    }
}

/// Checks signatures of messages from the other side: the MD5 key, or the peer's RSA
/// public key.
#[derive(Clone)]
pub enum Verifier {
    /// MD5 with the shared merchant key.
    Md5 {
        /// The merchant MD5 key.
        key: String,
    },
    /// RSA with the peer's public key, for one configured `sign_type`: a message claiming
    /// the other RSA hash is refused (no downgrade from SHA-256 to SHA-1).
    Rsa {
        /// The `sign_type` messages must declare (`Rsa1_256` or `Rsa1_1`).
        sign_type: SignType,
        /// The peer's public key.
        key: RsaPublicKey,
    },
}

impl Verifier {
    /// Verifies the `sign` of `params`. A message whose `sign_type` does not fit this
    /// verifier (e.g. MD5 presented to an RSA verifier) is refused.
    pub fn verify(&self, params: &Params) -> Result<(), SignError> {
        let sign = params
            .get("sign")
            .filter(|s| !s.is_empty())
            .ok_or(SignError::MissingSignature)?;
        let declared = SignType::of_message(params)?;
        match self {
            Verifier::Md5 { key } => {
                if declared != SignType::Md5 {
                    return Err(SignError::SignTypeMismatch {
                        expected: "MD5",
                        got: declared.as_str().to_owned(),
                    });
                }
                let expected = md5_sign(params, key);
                // Case-insensitive like the official demos; constant-time so the comparison
                // leaks nothing about the expected value.
                let got = sign.to_ascii_uppercase();
                if bool::from(expected.as_bytes().ct_eq(got.as_bytes())) {
                    Ok(())
                } else {
                    Err(SignError::BadSignature)
                }
            }
            Verifier::Rsa { sign_type, key } => {
                if declared != *sign_type {
                    return Err(SignError::SignTypeMismatch {
                        expected: sign_type.as_str(),
                        got: declared.as_str().to_owned(),
                    });
                }
                // Some Java encoders wrap Base64 lines; whitespace is never part of it.
                let compact: String = sign.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let signature = BASE64
                    .decode(compact.as_bytes())
                    .map_err(|_| SignError::BadSignature)?;
                let (scheme, digest) = rsa_scheme(declared, string_to_sign(params).as_bytes())?;
                key.verify(scheme, &digest, &signature)
                    .map_err(|_| SignError::BadSignature)
            }
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verifier::Md5 { .. } => f.write_str("Verifier::Md5 { key: <redacted> }"),
            Verifier::Rsa { sign_type, key } => write!(
                f,
                "Verifier::Rsa {{ sign_type: {sign_type}, key: <{} bit public key> }}",
                key.size() * 8
            ),
        }
    }
}

/// The PEM label of a text, if it is PEM.
fn pem_label(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix("-----BEGIN ")?;
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

/// Bare Base64 (whitespace ignored) to DER bytes.
fn bare_der(text: &str, what: &'static str) -> Result<Vec<u8>, SignError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64
        .decode(compact.as_bytes())
        .map_err(|_| SignError::InvalidKey(what))
}

/// Parses an RSA private key: PEM PKCS#8 (`BEGIN PRIVATE KEY`), PEM PKCS#1
/// (`BEGIN RSA PRIVATE KEY`), or bare Base64 DER of either (what the Java demos use).
pub fn parse_private_key(text: &str) -> Result<RsaPrivateKey, SignError> {
    const WHAT: &str = "RSA private key";
    let text = text.trim();
    let key = match pem_label(text) {
        Some("PRIVATE KEY") => RsaPrivateKey::from_pkcs8_pem(text).ok(),
        Some("RSA PRIVATE KEY") => RsaPrivateKey::from_pkcs1_pem(text).ok(),
        Some("ENCRYPTED PRIVATE KEY") => {
            return Err(SignError::InvalidKey(
                "RSA private key (encrypted keys are not supported)",
            ));
        }
        Some(_) => None,
        None => {
            let der = bare_der(text, WHAT)?;
            RsaPrivateKey::from_pkcs8_der(&der)
                .or_else(|_| RsaPrivateKey::from_pkcs1_der(&der))
                .ok()
        }
    };
    key.ok_or(SignError::InvalidKey(WHAT))
}

/// Parses an RSA public key: PEM SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), PEM PKCS#1
/// (`BEGIN RSA PUBLIC KEY`), or bare Base64 DER of either.
pub fn parse_public_key(text: &str) -> Result<RsaPublicKey, SignError> {
    const WHAT: &str = "RSA public key";
    let text = text.trim();
    let key = match pem_label(text) {
        Some("PUBLIC KEY") => RsaPublicKey::from_public_key_pem(text).ok(),
        Some("RSA PUBLIC KEY") => RsaPublicKey::from_pkcs1_pem(text).ok(),
        Some(_) => None,
        None => {
            let der = bare_der(text, WHAT)?;
            RsaPublicKey::from_public_key_der(&der)
                .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
                .ok()
        }
    };
    key.ok_or(SignError::InvalidKey(WHAT))
}

/// Generates an RSA private key (for the sandbox and tests; production keys come from the
/// SwiftPass back office).
pub fn generate_rsa_key(bits: usize) -> Result<RsaPrivateKey, SignError> {
    RsaPrivateKey::new(&mut RsaRng(rand::rng()), bits).map_err(|_| SignError::Rsa)
}

/// A merchant's identity towards SwiftPass: its number, how it signs requests and how it
/// checks responses and notifies.
#[derive(Clone)]
pub struct Credentials {
    /// The merchant number (`mch_id`).
    pub mch_id: String,
    /// Signs our requests.
    pub signer: Signer,
    /// Verifies SwiftPass responses and notifies.
    pub verifier: Verifier,
}

impl Credentials {
    /// Builds credentials from configuration strings. MD5 needs `md5_key`; RSA needs the
    /// merchant's private key and the platform's public key (any format
    /// [`parse_private_key`] / [`parse_public_key`] accept). Settings the sign type does not
    /// use are ignored.
    pub fn new(
        mch_id: &str,
        sign_type: SignType,
        md5_key: Option<&str>,
        merchant_private_key: Option<&str>,
        platform_public_key: Option<&str>,
    ) -> Result<Credentials, SignError> {
        fn given(value: Option<&str>) -> Option<&str> {
            value.map(str::trim).filter(|v| !v.is_empty())
        }
        let mch_id = given(Some(mch_id)).ok_or(SignError::Missing("mch_id"))?;
        let (signer, verifier) = match sign_type {
            SignType::Md5 => {
                let key = given(md5_key).ok_or(SignError::Missing("MD5 key (required by MD5)"))?;
                (
                    Signer::Md5 {
                        key: key.to_owned(),
                    },
                    Verifier::Md5 {
                        key: key.to_owned(),
                    },
                )
            }
            SignType::Rsa1_256 | SignType::Rsa1_1 => {
                let private = given(merchant_private_key).ok_or(SignError::Missing(
                    "merchant RSA private key (required by RSA)",
                ))?;
                let public = given(platform_public_key).ok_or(SignError::Missing(
                    "platform RSA public key (required by RSA)",
                ))?;
                (
                    Signer::Rsa {
                        sign_type,
                        key: parse_private_key(private)?,
                    },
                    Verifier::Rsa {
                        sign_type,
                        key: parse_public_key(public)?,
                    },
                )
            }
        };
        Ok(Credentials {
            mch_id: mch_id.to_owned(),
            signer,
            verifier,
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mch_id", &self.mch_id)
            .field("signer", &self.signer)
            .field("verifier", &self.verifier)
            .finish()
    }
}

/// `rsa` 0.9 speaks rand_core 0.6 while the crate uses rand 0.9: this feeds the thread-local
/// CSPRNG of rand 0.9 to `rsa`.
struct RsaRng(rand::rngs::ThreadRng);

impl rsa::rand_core::RngCore for RsaRng {
    fn next_u32(&mut self) -> u32 {
        rand::RngCore::next_u32(&mut self.0)
    }

    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut self.0, dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        rand::RngCore::fill_bytes(&mut self.0, dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for RsaRng {}
