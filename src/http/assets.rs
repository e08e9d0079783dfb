//! Browser assets embedded in the binary (`assets/vendor/`, see its README, and the web
//! console's own modules in `assets/console/`): GraphiQL, the console and what they run on,
//! so every page works without a CDN.
//!
//! Each asset is served at `/assets/<hash>/<name>`, the hash being the first 16 hex digits of
//! its SHA-256: a URL names one content forever, so it is cached as `immutable`, and a new
//! version gets a new URL. Pages link assets through [`url`].

use std::sync::LazyLock;

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{IntoResponse, Response, handler};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! vendored {
    ($package:literal, $file:literal, $content_type:literal) => {
        Asset {
            name: $file,
            content_type: $content_type,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/vendor/",
                $package,
                "/",
                $file
            )),
        }
    };
}

macro_rules! console {
    ($file:literal, $content_type:expr) => {
        Asset {
            name: $file,
            content_type: $content_type,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/console/",
                $file
            )),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    vendored!(
        "graphiql@3.9.0",
        "graphiql.min.js",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "graphiql@3.9.0",
        "graphiql.min.css",
        "text/css; charset=utf-8"
    ),
    vendored!(
        "react@18.3.1",
        "react.production.min.js",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "react-dom@18.3.1",
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "graphql-ws@5.16.0",
        "graphql-ws.min.js",
        "text/javascript; charset=utf-8"
    ),
    // The web console: Preact and htm in one ES module, uPlot for the charts.
    vendored!(
        "htm@3.1.1",
        "standalone.module.js",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "uplot@1.6.32",
        "uPlot.esm.js",
        "text/javascript; charset=utf-8"
    ),
    vendored!("uplot@1.6.32", "uPlot.min.css", "text/css; charset=utf-8"),
    console!("console.css", CSS),
    console!("app.js", JS),
    console!("api.js", JS),
    console!("i18n.js", JS),
    console!("ui.js", JS),
    console!("customer.js", JS),
    console!("agent.js", JS),
    console!("admin.js", JS),
];

/// What the console's modules import by bare name, and the embedded file each name is.
/// Each module's URL carries its own content hash, so a relative import between two of them
/// could not name the other's current URL: the page's import map does.
static MODULES: &[(&str, &str)] = &[
    ("preact", "standalone.module.js"),
    ("uplot", "uPlot.esm.js"),
    ("console/app.js", "app.js"),
    ("console/api.js", "api.js"),
    ("console/i18n.js", "i18n.js"),
    ("console/ui.js", "ui.js"),
    ("console/customer.js", "customer.js"),
    ("console/agent.js", "agent.js"),
    ("console/admin.js", "admin.js"),
];

/// The import map (`<script type="importmap">`) naming every console module's hashed URL.
pub fn import_map() -> String {
    let imports: serde_json::Map<String, serde_json::Value> = MODULES
        .iter()
        .filter_map(|(specifier, file)| Some(((*specifier).to_owned(), url(file)?.into())))
        .collect();
    serde_json::json!({ "imports": imports }).to_string()
}

/// Each asset's content hash, computed once.
static HASHES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| hex::encode(&Sha256::digest(a.bytes)[..8]))
        .collect()
});

/// The URL of the embedded asset `name` (a file name listed above).
pub fn url(name: &str) -> Option<String> {
    ASSETS
        .iter()
        .zip(HASHES.iter())
        .find(|(a, _)| a.name == name)
        .map(|(a, hash)| format!("/assets/{hash}/{}", a.name))
}

/// Replaces every `{{asset:<name>}}` in a page with that asset's URL.
pub fn link(page: &str) -> String {
    let mut out = page.to_owned();
    for asset in ASSETS {
        if let Some(url) = url(asset.name) {
            out = out.replace(&format!("{{{{asset:{}}}}}", asset.name), &url);
        }
    }
    out
}

/// `GET /assets/<hash>/<name>`: the asset, if the hash is its current one.
#[handler]
pub fn serve(Path((hash, name)): Path<(String, String)>) -> Response {
    let found = ASSETS
        .iter()
        .zip(HASHES.iter())
        .find(|(a, h)| a.name == name && **h == hash);
    match found {
        Some((asset, hash)) => Response::builder()
            .header(header::CONTENT_TYPE, asset.content_type)
            .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
            .header(header::ETAG, format!("\"{hash}\""))
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .body(asset.bytes),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_url_and_links_replace_placeholders() {
        for asset in ASSETS {
            assert!(!asset.bytes.is_empty(), "{}", asset.name);
            let url = url(asset.name).expect("listed");
            assert!(url.starts_with("/assets/") && url.ends_with(asset.name));
        }
        let page = link("<script src=\"{{asset:react.production.min.js}}\"></script>");
        assert!(!page.contains("{{"), "{page}");
        assert_eq!(url("nope.js"), None);
        let names: std::collections::HashSet<&str> = ASSETS.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), ASSETS.len(), "file names are unique");
        let map: serde_json::Value = serde_json::from_str(&import_map()).expect("JSON");
        for (specifier, file) in MODULES {
            assert_eq!(
                map["imports"][specifier],
                url(file).expect("listed"),
                "{specifier}"
            );
        }
    }
}
