//! The web console on `GET /`: one page whose ES modules (`assets/console/`) use nothing but
//! the public GraphQL API. The page is small and never cached; everything it loads is an
//! embedded asset under a content-hashed URL, the modules found through the page's import
//! map, so a new build is picked up at the next load and nothing comes from a CDN.

use std::sync::{Arc, LazyLock};

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{IntoResponse, Response, handler};

use super::assets;
use crate::state::AppState;

/// The page with its stylesheets and scripts linked to the embedded copies.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    assets::link(include_str!("../../assets/console/index.html"))
        .replace("{{importmap}}", &assets::import_map())
});

/// The console (404 when `TOPUP_CONSOLE` is off). Client-side routes live after `#`, so this
/// one path serves them all.
#[handler]
pub fn index(Data(state): Data<&Arc<AppState>>) -> Response {
    if !state.config.console {
        return StatusCode::NOT_FOUND.into_response();
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header("referrer-policy", "no-referrer")
        .body(PAGE.as_str())
}
