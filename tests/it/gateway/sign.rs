//! Signing: the real MD5 vectors, the string-to-sign rules, RSA against OpenSSL-made
//! signatures, every key format, credentials, and sign/verify/tamper properties.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use rsa::{RsaPrivateKey, RsaPublicKey};
use topup::gateway::swiftpass::Params;
use topup::gateway::swiftpass::sign::{
    Credentials, SignError, SignType, Signer, Verifier, md5_sign, parse_private_key,
    parse_public_key, string_to_sign,
};

use super::support::{MCH_ID, MD5_KEY, keys};

const VECTORS: &str = include_str!("swiftpass-vectors.json");

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_vector_reproduces_its_string_and_sign() {
    let file: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 4);
    for v in vectors {
        let name = v["description"].as_str().unwrap();
        let key = v["key"].as_str().unwrap();
        let fields: Params = v["fields"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        // The vectors' string includes the MD5 `&key=` suffix; string_to_sign does not.
        assert_eq!(
            format!("{}&key={key}", string_to_sign(&fields)),
            v["string_to_sign"].as_str().unwrap(),
            "{name}"
        );
        let sign = v["sign"].as_str().unwrap();
        assert_eq!(md5_sign(&fields, key), sign, "{name}");

        let mut signed = fields.clone();
        signed.insert("sign".into(), sign.to_owned());
        let verifier = Verifier::Md5 { key: key.into() };
        verifier.verify(&signed).unwrap();
        signed.insert("sign".into(), sign.to_lowercase());
        verifier.verify(&signed).unwrap();
        let wrong = Verifier::Md5 {
            key: "wrong".into(),
        };
        assert!(matches!(
            wrong.verify(&signed),
            Err(SignError::BadSignature)
        ));
    }
}

#[test]
fn test_merchant_7551000001_close_response() {
    let p = params(&[
        ("appid", "wx1f87d44db95cba7a"),
        ("charset", "UTF-8"),
        ("mch_id", MCH_ID),
        ("nonce_str", "1503283782330"),
        ("result_code", "0"),
        ("sign_type", "MD5"),
        ("status", "0"),
        ("version", "2.0"),
    ]);
    assert_eq!(md5_sign(&p, MD5_KEY), "A84E9E02DC3F29FB881AC79DD9818115");
    let signer = Signer::Md5 {
        key: MD5_KEY.into(),
    };
    assert_eq!(signer.sign(&p).unwrap(), "A84E9E02DC3F29FB881AC79DD9818115");
}

#[test]
fn string_to_sign_rules() {
    let p = params(&[
        ("sign", "XYZ"),
        ("key", "never"),
        ("empty", ""),
        ("sign_type", "MD5"),
        ("b", "2"),
        ("B", "upper sorts first"),
        ("a_b", "underscore before letters"),
        ("ab", "x"),
        ("url", "a%3Ab*\"[{ }"),
    ]);
    assert_eq!(
        string_to_sign(&p),
        "B=upper sorts first&a_b=underscore before letters&ab=x&b=2&sign_type=MD5&url=a%3Ab*\"[{ }"
    );
}

#[test]
fn sign_type_wire_names() {
    for t in [SignType::Md5, SignType::Rsa1_256, SignType::Rsa1_1] {
        assert_eq!(t.as_str().parse::<SignType>().unwrap(), t);
    }
    assert_eq!(SignType::Rsa1_256.as_str(), "RSA_1_256");
    assert_eq!(SignType::Rsa1_1.as_str(), "RSA_1_1");
    assert!(matches!(
        "SM3WITHSM2".parse::<SignType>(),
        Err(SignError::UnknownSignType(_))
    ));
}

#[test]
fn signer_refuses_params_declaring_another_sign_type() {
    let signer = Signer::Md5 {
        key: MD5_KEY.into(),
    };
    let p = params(&[("a", "1"), ("sign_type", "RSA_1_256")]);
    assert!(matches!(
        signer.sign(&p),
        Err(SignError::SignTypeMismatch { .. })
    ));
    // MD5 is the default, so an absent sign_type is fine for MD5.
    signer.sign(&params(&[("a", "1")])).unwrap();
}

/// OpenSSL-made 2048-bit test key (not a secret: it exists only for these tests).
mod openssl {
    pub const PKCS8: &str = include_str!("fixtures/merchant_pkcs8.pem");
    pub const PKCS1: &str = include_str!("fixtures/merchant_pkcs1.pem");
    pub const SPKI: &str = include_str!("fixtures/merchant_spki.pem");
    pub const PKCS1_PUB: &str = include_str!("fixtures/merchant_pkcs1_pub.pem");
    /// `openssl dgst -sha256 -sign` of the RSA_1_256 message below.
    pub const SIG_256: &str = include_str!("fixtures/sig256.b64");
    /// `openssl dgst -sha1 -sign` of the RSA_1_1 message below.
    pub const SIG_1: &str = include_str!("fixtures/sig1.b64");
}

/// The PEM body as bare Base64 DER, the way the Java demos store keys.
fn bare(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn openssl_message(sign_type: &str) -> Params {
    params(&[
        ("charset", "UTF-8"),
        ("mch_id", MCH_ID),
        ("nonce_str", "openssl"),
        ("service", "unified.trade.query"),
        ("sign_type", sign_type),
        ("version", "2.0"),
    ])
}

#[test]
fn rsa_matches_openssl_in_every_key_format() {
    let private_texts = [
        openssl::PKCS8.to_owned(),
        openssl::PKCS1.to_owned(),
        bare(openssl::PKCS8),
        bare(openssl::PKCS1),
    ];
    let public_texts = [
        openssl::SPKI.to_owned(),
        openssl::PKCS1_PUB.to_owned(),
        bare(openssl::SPKI),
        bare(openssl::PKCS1_PUB),
    ];
    for (sign_type, expected) in [
        (SignType::Rsa1_256, openssl::SIG_256.trim()),
        (SignType::Rsa1_1, openssl::SIG_1.trim()),
    ] {
        let message = openssl_message(sign_type.as_str());
        for text in &private_texts {
            let key = parse_private_key(text).unwrap();
            let signer = Signer::Rsa { sign_type, key };
            // PKCS#1 v1.5 is deterministic: the signature must equal OpenSSL's byte for byte.
            assert_eq!(signer.sign(&message).unwrap(), expected, "{sign_type}");
        }
        for text in &public_texts {
            let verifier = Verifier::Rsa {
                sign_type,
                key: parse_public_key(text).unwrap(),
            };
            let mut signed = message.clone();
            signed.insert("sign".into(), expected.to_owned());
            verifier.verify(&signed).unwrap();
            // The configured sign_type is the only one taken: claiming the other fails.
            let other = if sign_type == SignType::Rsa1_1 {
                "RSA_1_256"
            } else {
                "RSA_1_1"
            };
            signed.insert("sign_type".into(), other.into());
            assert!(verifier.verify(&signed).is_err());
        }
    }
}

fn pem_variants(key: &RsaPrivateKey) -> (Vec<String>, Vec<String>) {
    let public = RsaPublicKey::from(key);
    let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let pkcs1 = key.to_pkcs1_pem(LineEnding::CRLF).unwrap().to_string();
    let spki = public.to_public_key_pem(LineEnding::LF).unwrap();
    let pkcs1_pub = public.to_pkcs1_pem(LineEnding::LF).unwrap();
    let private = vec![
        pkcs8.clone(),
        pkcs1,
        BASE64.encode(key.to_pkcs8_der().unwrap().as_bytes()),
        BASE64.encode(key.to_pkcs1_der().unwrap().as_bytes()),
    ];
    let public = vec![
        spki,
        pkcs1_pub,
        BASE64.encode(public.to_public_key_der().unwrap().as_bytes()),
        BASE64.encode(public.to_pkcs1_der().unwrap().as_bytes()),
    ];
    (private, public)
}

#[test]
fn rsa_credentials_round_trip_in_every_format() {
    let (private, public) = pem_variants(&keys().merchant);
    for sign_type in [SignType::Rsa1_256, SignType::Rsa1_1] {
        for private_text in &private {
            for public_text in &public {
                let creds = Credentials::new(
                    MCH_ID,
                    sign_type,
                    None,
                    Some(private_text),
                    Some(public_text),
                )
                .unwrap();
                assert_eq!(creds.signer.sign_type(), sign_type);
                let mut p = params(&[("out_trade_no", "R1"), ("sign_type", sign_type.as_str())]);
                let sign = creds.signer.sign(&p).unwrap();
                p.insert("sign".into(), sign);
                creds.verifier.verify(&p).unwrap();
            }
        }
    }
}

#[test]
fn verifiers_refuse_a_foreign_sign_type() {
    let rsa = Verifier::Rsa {
        sign_type: SignType::Rsa1_256,
        key: RsaPublicKey::from(&keys().platform),
    };
    let mut md5_message = params(&[("a", "1"), ("sign_type", "MD5")]);
    md5_message.insert("sign".into(), md5_sign(&md5_message, MD5_KEY));
    assert!(matches!(
        rsa.verify(&md5_message),
        Err(SignError::SignTypeMismatch { .. })
    ));
    // No sign_type means MD5, which an RSA verifier refuses too.
    md5_message.remove("sign_type");
    assert!(rsa.verify(&md5_message).is_err());

    let signer = Signer::Rsa {
        sign_type: SignType::Rsa1_256,
        key: keys().platform.clone(),
    };
    let mut rsa_message = params(&[("a", "1"), ("sign_type", "RSA_1_256")]);
    rsa_message.insert("sign".into(), signer.sign(&rsa_message).unwrap());
    rsa.verify(&rsa_message).unwrap();
    let md5 = Verifier::Md5 {
        key: MD5_KEY.into(),
    };
    assert!(matches!(
        md5.verify(&rsa_message),
        Err(SignError::SignTypeMismatch { .. })
    ));
    rsa_message.remove("sign");
    assert!(matches!(
        rsa.verify(&rsa_message),
        Err(SignError::MissingSignature)
    ));
}

#[test]
fn credentials_name_what_is_missing() {
    let err = Credentials::new(MCH_ID, SignType::Md5, None, None, None).unwrap_err();
    assert!(err.to_string().contains("MD5 key"), "{err}");
    let err = Credentials::new(MCH_ID, SignType::Rsa1_256, None, None, Some("x")).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    let err = Credentials::new(MCH_ID, SignType::Rsa1_1, None, Some("x"), None).unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
    let err = Credentials::new(" ", SignType::Md5, Some(MD5_KEY), None, None).unwrap_err();
    assert!(err.to_string().contains("mch_id"), "{err}");
    let err = Credentials::new(
        MCH_ID,
        SignType::Rsa1_256,
        None,
        Some("garbage!"),
        Some("x"),
    )
    .unwrap_err();
    assert!(matches!(err, SignError::InvalidKey(_)), "{err}");
    assert!(parse_public_key(openssl::PKCS8).is_err());
    assert!(parse_private_key(openssl::SPKI).is_err());
}

#[test]
fn debug_output_never_shows_secrets() {
    let md5 = Credentials::new(MCH_ID, SignType::Md5, Some(MD5_KEY), None, None).unwrap();
    let shown = format!("{md5:?}");
    assert!(shown.contains(MCH_ID));
    assert!(!shown.contains(MD5_KEY), "{shown}");

    let rsa = Credentials::new(
        MCH_ID,
        SignType::Rsa1_256,
        None,
        Some(openssl::PKCS8),
        Some(openssl::SPKI),
    )
    .unwrap();
    let shown = format!("{rsa:?} {:?} {:?}", rsa.signer, rsa.verifier);
    let body_line = openssl::PKCS8.lines().nth(1).unwrap();
    assert!(!shown.contains(&body_line[..20]), "{shown}");
    assert!(!shown.to_lowercase().contains("primes"), "{shown}");
    assert!(shown.contains("2048"), "{shown}");
}

fn arb_params() -> impl Strategy<Value = Params> {
    prop::collection::btree_map("[a-z_]{1,12}", "\\PC{1,20}", 1..8).prop_map(|mut p| {
        p.remove("sign");
        p.remove("key");
        p
    })
}

/// A signed copy of `p` for each verifier kind.
fn sign_with(signer: &Signer, mut p: Params) -> Params {
    p.insert("sign_type".into(), signer.sign_type().as_str().into());
    let sign = signer.sign(&p).unwrap();
    p.insert("sign".into(), sign);
    p
}

fn signers() -> Vec<(Signer, Verifier)> {
    let platform = &keys().platform;
    vec![
        (
            Signer::Md5 {
                key: MD5_KEY.into(),
            },
            Verifier::Md5 {
                key: MD5_KEY.into(),
            },
        ),
        (
            Signer::Rsa {
                sign_type: SignType::Rsa1_256,
                key: platform.clone(),
            },
            Verifier::Rsa {
                sign_type: SignType::Rsa1_256,
                key: RsaPublicKey::from(platform),
            },
        ),
        (
            Signer::Rsa {
                sign_type: SignType::Rsa1_1,
                key: platform.clone(),
            },
            Verifier::Rsa {
                sign_type: SignType::Rsa1_1,
                key: RsaPublicKey::from(platform),
            },
        ),
    ]
}

#[derive(Debug, Clone)]
enum Tamper {
    Change { index: usize, value: String },
    Remove { index: usize },
    Add { key: String, value: String },
}

fn arb_tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), "\\PC{1,10}").prop_map(|(index, value)| Tamper::Change { index, value }),
        any::<usize>().prop_map(|index| Tamper::Remove { index }),
        ("[a-z]{1,6}x", "\\PC{1,10}").prop_map(|(key, value)| Tamper::Add { key, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_params_verify(p in arb_params()) {
        for (signer, verifier) in signers() {
            let signed = sign_with(&signer, p.clone());
            prop_assert!(verifier.verify(&signed).is_ok());
        }
    }

    #[test]
    fn any_single_tampering_fails_verification(p in arb_params(), tamper in arb_tamper()) {
        for (signer, verifier) in signers() {
            let mut signed = sign_with(&signer, p.clone());
            // Fields covered by the signature (everything but `sign`).
            let covered: Vec<String> = signed.keys().filter(|k| *k != "sign").cloned().collect();
            match &tamper {
                Tamper::Change { index, value } => {
                    let key = &covered[index % covered.len()];
                    prop_assume!(&signed[key] != value);
                    signed.insert(key.clone(), value.clone());
                }
                Tamper::Remove { index } => {
                    signed.remove(&covered[index % covered.len()]);
                }
                Tamper::Add { key, value } => {
                    prop_assume!(!signed.contains_key(key));
                    signed.insert(key.clone(), value.clone());
                }
            }
            prop_assert!(verifier.verify(&signed).is_err(), "{tamper:?} verified");
        }
    }
}
