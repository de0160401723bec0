//! The domain: what tenants register and emit, checked field by field, and
//! the services that act on it. Services read and write through the
//! [`Store`](crate::store::Store); they know nothing of HTTP.
//!
//! Layout: `tenants` (and keys), `plugins`, `callbacks`, `templates`,
//! `subscriptions`, `events` (intake) and `gate` (before-events); `input`
//! and `expr` check what tenants write; `error` says what went wrong.

pub mod callbacks;
pub mod error;
pub mod events;
pub mod expr;
pub mod gate;
pub mod input;
pub mod plugins;
mod resident;
pub mod stats;
pub mod subscriptions;
pub mod templates;
pub mod tenants;

use serde::Serialize;

pub use self::error::{Error, Result};

/// One page of a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
    /// Pass as `after` for the page before this one, where a list pages
    /// both ways; absent on the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` items: the extra one, if there, says
    /// another page follows, which starts after this page's last item.
    pub fn of(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> Self {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(id)
        } else {
            None
        };
        Page {
            items,
            next_cursor,
            prev_cursor: None,
        }
    }
}

/// Page size asked for, clamped to 1..=200 (50 when not given).
pub fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(50).clamp(1, 200)
}
