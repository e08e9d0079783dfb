//! Reading request bodies with a hard size limit, whatever the framing (a `Content-Length`
//! can lie or be absent; chunked bodies have none).

use futures_util::StreamExt;
use poem::Body;

/// The body was longer than allowed; holds the first `limit` bytes.
#[derive(Debug)]
pub struct TooLarge(pub Vec<u8>);

/// Beyond this, an oversized body is no longer drained: the connection is dropped.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// Reads at most `limit` bytes. A longer body is reported as [`TooLarge`] with its first
/// `limit` bytes; the rest is read and discarded (up to 4 MiB) so the client gets the answer
/// instead of a reset connection.
pub async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut stream = body.into_bytes_stream();
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Io(e.to_string()))?;
        seen += chunk.len();
        if out.len() < limit {
            let room = (limit - out.len()).min(chunk.len());
            out.extend_from_slice(&chunk[..room]);
        }
        if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        Err(ReadError::TooLarge(TooLarge(out)))
    } else {
        Ok(out)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Over the limit.
    TooLarge(TooLarge),
    /// The connection failed mid-body.
    Io(String),
}
