//! Reading request bodies with a hard size limit, whatever the framing (a `Content-Length`
//! can lie or be absent; chunked bodies have none).

use futures_util::StreamExt;
use poem::Body;

/// The body was longer than allowed; holds the first `limit` bytes.
#[derive(Debug)]
pub struct TooLarge(pub Vec<u8>);

/// Reads at most `limit` bytes. A longer body is cut short and reported as [`TooLarge`]
/// (with what was read), without reading the rest.
pub async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut stream = body.into_bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Io(e.to_string()))?;
        if out.len() + chunk.len() > limit {
            let room = limit - out.len();
            out.extend_from_slice(&chunk[..room]);
            return Err(ReadError::TooLarge(TooLarge(out)));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Over the limit.
    TooLarge(TooLarge),
    /// The connection failed mid-body.
    Io(String),
}
