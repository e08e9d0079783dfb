//! The admins' view of accounts: every user, searchable, in pages; users by id for loaders.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::User;
use crate::db::Page;
use crate::db::schema::users;
use crate::error::AppResult;

/// A page of users, newest first, after the cursor; `search` keeps those whose email
/// contains it (case-insensitive).
pub async fn list_users(
    conn: &mut AsyncPgConnection,
    search: Option<&str>,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<User>> {
    let mut query = users::table
        .select(User::as_select())
        .order(users::id.desc())
        .limit(first + 1)
        .into_boxed();
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        query = query.filter(users::email.like(contains(&search.to_lowercase())));
    }
    if let Some(after) = after {
        query = query.filter(users::id.lt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}

/// A LIKE pattern matching text that contains `needle` literally.
fn contains(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Users by id.
pub async fn users_by_ids(conn: &mut AsyncPgConnection, ids: &[i64]) -> AppResult<Vec<User>> {
    Ok(users::table
        .filter(users::id.eq_any(ids))
        .select(User::as_select())
        .load(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(contains("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
