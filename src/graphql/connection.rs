//! Relay connections: checked page arguments, opaque cursors, and [`connection!`], the one
//! way a list's connection and edge types are declared and built.

use async_graphql::SimpleObject;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::AppError;

/// Most items one page can hold.
pub const MAX_PAGE: i32 = 100;

/// Where a page ends.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Whether more items follow.
    pub has_next_page: bool,
    /// Pass as `after` to get the next page.
    pub end_cursor: Option<String>,
}

/// A list's page arguments, checked: `first` between 1 and [`MAX_PAGE`] (default 20), and
/// `after` a cursor of the same list.
#[derive(Debug, Clone, Copy)]
pub struct PageArgs {
    pub first: i64,
    /// The id after which the page starts.
    pub after: Option<i64>,
}

impl PageArgs {
    /// Checks `first` and `after` of a list whose cursors are of `kind`.
    pub fn parse(
        kind: &str,
        first: Option<i32>,
        after: Option<&str>,
    ) -> Result<PageArgs, AppError> {
        let first = match first.unwrap_or(20) {
            n @ 1..=MAX_PAGE => i64::from(n),
            n => {
                return Err(AppError::BadInput(format!(
                    "first must be between 1 and {MAX_PAGE}, got {n}"
                )));
            }
        };
        let after = after.map(|c| decode_cursor(kind, c)).transpose()?;
        Ok(PageArgs { first, after })
    }
}

/// The cursor of item `id` of a list of `kind`: opaque to clients (URL-safe Base64).
pub fn encode_cursor(kind: &str, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// Reads a cursor made by [`encode_cursor`] for the same `kind`.
pub fn decode_cursor(kind: &str, cursor: &str) -> Result<i64, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(kind)?.strip_prefix(':')?.parse().ok())
        .ok_or_else(|| AppError::BadInput("invalid cursor".into()))
}

/// Declares a connection type and its edge type for a node type, with their descriptions,
/// and `Connection::new(page, id, node)` that builds one from a [`Page`](crate::db::Page).
macro_rules! connection {
    (
        $connection:ident($connection_doc:tt, edges: $edges_doc:tt),
        $edge:ident($edge_doc:tt, cursor: $cursor_doc:tt, node: $node_doc:tt),
        $node:ty,
        cursor_kind: $kind:literal $(,)?
    ) => {
        #[doc = $edge_doc]
        #[derive(async_graphql::SimpleObject)]
        pub struct $edge {
            #[doc = $cursor_doc]
            cursor: String,
            #[doc = $node_doc]
            node: $node,
        }

        #[doc = $connection_doc]
        #[derive(async_graphql::SimpleObject)]
        pub struct $connection {
            #[doc = $edges_doc]
            edges: Vec<$edge>,
            /// Whether more follow.
            page_info: $crate::graphql::connection::PageInfo,
        }

        impl $connection {
            /// The cursor kind of this list.
            pub const CURSOR_KIND: &'static str = $kind;

            /// A connection over a page; `id` is an item's cursor position.
            pub fn new<T>(
                page: $crate::db::Page<T>,
                id: impl Fn(&T) -> i64,
                node: impl Fn(T) -> $node,
            ) -> Self {
                let end_cursor = page
                    .items
                    .last()
                    .map(|item| $crate::graphql::connection::encode_cursor($kind, id(item)));
                $connection {
                    edges: page
                        .items
                        .into_iter()
                        .map(|item| $edge {
                            cursor: $crate::graphql::connection::encode_cursor($kind, id(&item)),
                            node: node(item),
                        })
                        .collect(),
                    page_info: $crate::graphql::connection::PageInfo {
                        has_next_page: page.has_next,
                        end_cursor,
                    },
                }
            }
        }
    };
}
pub(crate) use connection;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_keep_their_kind() {
        assert_eq!(
            decode_cursor("order", &encode_cursor("order", 42)).ok(),
            Some(42)
        );
        assert!(decode_cursor("posting", &encode_cursor("order", 42)).is_err());
        assert!(decode_cursor("order", "garbage").is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(
            PageArgs::parse("order", None, None).map(|p| p.first).ok(),
            Some(20)
        );
        assert!(PageArgs::parse("order", Some(0), None).is_err());
        assert!(PageArgs::parse("order", Some(101), None).is_err());
    }
}
