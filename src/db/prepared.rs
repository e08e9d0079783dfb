//! Raw SQL that each connection prepares once and keeps, like diesel's own query builder
//! statements.
//!
//! diesel's `sql_query` is never kept prepared: every call sends Parse (a round trip) and
//! PostgreSQL parses, analyses and plans the text again. For the payment apply statement
//! (a dozen CTEs) planning is most of its cost. [`prepared`] marks a raw query as safe to
//! keep in the connection's statement cache, keyed by its SQL text and bind types, so it
//! is parsed once per connection and PostgreSQL may settle on a generic plan.
//!
//! The switch is the connection's statement cache itself: a connection whose cache is
//! turned off (`set_prepared_statement_cache_size(CacheSize::Disabled)`, what a transaction
//! pooler such as PgBouncer 1.18 needs) runs these statements unprepared, exactly like every
//! query of the query builder. There is no second setting to forget.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A raw query kept prepared on each connection (see the module doc).
#[derive(Debug, Clone)]
pub struct Prepared<Q>(Q);

/// Keeps `query` (a `diesel::sql_query(…)` with its binds) prepared on each connection whose
/// statement cache is on: the one way raw SQL gets a cached statement.
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    // `sql_query` calls itself unsafe to cache because its text can be built at run time
    // from anything; the callers of `prepared` pass fixed texts (one per statement kind),
    // so the cache holds a bounded number of statements.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

// No static id: the cache keys the statement by its SQL text and bind types.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
