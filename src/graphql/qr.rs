//! QR codes drawn locally from the gateway's `code_url` (no image from a third party).

use crate::error::AppError;

/// Draws a QR code as an SVG document.
pub fn svg(data: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(data.as_bytes())
        .map_err(|e| AppError::internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}
