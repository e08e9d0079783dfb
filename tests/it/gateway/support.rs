//! Shared test helpers: keys made once per process, sandboxes and tiny HTTP servers on
//! 127.0.0.1:0, and polling with a deadline.

use std::sync::OnceLock;

use rsa::RsaPrivateKey;
use topup::gateway::swiftpass::sign::generate_rsa_key;

/// The public test merchant of the protocol notes.
pub const MCH_ID: &str = "7551000001";
/// Its MD5 key.
pub const MD5_KEY: &str = "9d101c97133837e13dde2d32a5054abb";

/// RSA key pairs for the merchant and the platform.
pub struct TestKeys {
    pub merchant: RsaPrivateKey,
    pub platform: RsaPrivateKey,
}

/// Generated once per test process. 1024 bits because 2048-bit generation takes ~7 s in a
/// debug build; 2048-bit keys are covered by the OpenSSL fixtures.
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        merchant: generate_rsa_key(1024).expect("merchant key"),
        platform: generate_rsa_key(1024).expect("platform key"),
    })
}
