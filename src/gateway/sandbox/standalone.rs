//! Running the sandbox as its own HTTP server (`topup sandbox`).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use poem::Server;
use poem::listener::TcpAcceptor;

use super::{Sandbox, SandboxConfig};
use crate::gateway::swiftpass::sign::{parse_private_key, parse_public_key};

/// The public test key of merchant 7551000001 from the SwiftPass SDK samples: fine to print.
const DEV_KEY: &str = "9d101c97133837e13dde2d32a5054abb";

/// Command-line settings of a standalone sandbox.
#[derive(Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Merchant number the sandbox accepts.
    #[arg(long, default_value = "7551000001")]
    pub mch_id: String,
    /// MD5 key shared with the merchant.
    #[arg(long, default_value = DEV_KEY, hide_default_value = true)]
    pub key: String,
    /// Multiplies the notify retry schedule and the refund delay (0.01 = 100× faster).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// PEM or Base64 file with the merchant's RSA public key (enables RSA requests).
    #[arg(long, requires = "platform_private_key")]
    pub merchant_public_key: Option<PathBuf>,
    /// PEM or Base64 file with the platform's RSA private key (signs RSA answers).
    #[arg(long, requires = "merchant_public_key")]
    pub platform_private_key: Option<PathBuf>,
    /// Base URL the outside uses to reach the sandbox (default: http://LISTEN).
    #[arg(long)]
    pub public_base_url: Option<String>,
}

impl std::fmt::Debug for SandboxArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxArgs")
            .field("listen", &self.listen)
            .field("mch_id", &self.mch_id)
            .field("key", &"<redacted>")
            .field("time_scale", &self.time_scale)
            .field("merchant_public_key", &self.merchant_public_key)
            .field("platform_private_key", &self.platform_private_key)
            .field("public_base_url", &self.public_base_url)
            .finish()
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn read_key<T, E>(path: &PathBuf, parse: impl Fn(&str) -> Result<T, E>) -> io::Result<T>
where
    E: std::fmt::Display,
{
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    parse(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Serves a sandbox on `args.listen` until Ctrl-C.
pub async fn run_standalone(args: SandboxArgs) -> io::Result<()> {
    let merchant_public_key = args
        .merchant_public_key
        .as_ref()
        .map(|path| read_key(path, parse_public_key))
        .transpose()?;
    let platform_private_key = args
        .platform_private_key
        .as_ref()
        .map(|path| read_key(path, parse_private_key))
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;
    let public_base_url = args
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let rsa = merchant_public_key.is_some();
    let sandbox = Sandbox::new(SandboxConfig {
        mch_id: args.mch_id.clone(),
        key: args.key.clone(),
        merchant_public_key,
        platform_private_key,
        time_scale: args.time_scale,
        public_base_url: public_base_url.clone(),
    })?;
    // The well-known dev key is printed so a developer can configure the server; any
    // other key is a real secret and stays out of logs.
    let key = if args.key == DEV_KEY {
        DEV_KEY
    } else {
        "<set>"
    };
    tracing::info!(
        base_url = %public_base_url,
        gateway_url = %format!("{public_base_url}/pay/gateway"),
        download_url = %format!("{public_base_url}/download/gateway"),
        mch_id = %args.mch_id,
        key,
        rsa,
        time_scale = args.time_scale,
        "SwiftPass sandbox listening"
    );
    let result = Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?)
        .run_with_graceful_shutdown(
            sandbox.endpoint(),
            async {
                if let Err(e) = tokio::signal::ctrl_c().await {
                    tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                    std::future::pending::<()>().await;
                }
            },
            Some(Duration::from_secs(5)),
        )
        .await;
    sandbox.shutdown();
    result
}
