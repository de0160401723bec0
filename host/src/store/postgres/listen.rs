//! Changes made on other nodes, heard with `LISTEN` and announced to this
//! node's caches.
//!
//! A write that changes something a cache may hold sends
//! `NOTIFY hookgate, '<origin> <change>'` in its transaction, so the
//! notification goes out at commit. Every node listens; it ignores its own
//! (it announced them at once) and announces the others'. A lost
//! connection is made again with backoff, and then every cache is emptied
//! (`Change::Resync`), since notifications sent meanwhile are lost; so is
//! every cache each minute, as a safety net.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};

use crate::store::{Change, Changes};

/// The channel every node listens on.
const CHANNEL: &str = "hookgate";
/// How often every cache is emptied anyway.
const RESYNC: Duration = Duration::from_secs(60);
/// Longest wait between attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A change as a notification's payload.
pub(super) fn payload(origin: &str, change: &Change) -> String {
    let what = match change {
        Change::Keys => "keys".to_string(),
        Change::Callbacks { tenant } => format!("callbacks {tenant}"),
        Change::Plugin { id } => format!("plugin {id}"),
        Change::PluginReady { tenant, id } => format!("plugin-ready {tenant} {id}"),
        Change::DeliveriesDue => "due".to_string(),
        Change::Health { callback } => format!("health {callback}"),
        Change::Resync => "resync".to_string(),
    };
    format!("{origin} {what}")
}

/// The change in a payload, and the node it came from.
fn parse(payload: &str) -> Option<(&str, Change)> {
    let (origin, what) = payload.split_once(' ')?;
    let (kind, arg) = what.split_once(' ').unwrap_or((what, ""));
    let change = match kind {
        "keys" => Change::Keys,
        "callbacks" => Change::Callbacks {
            tenant: arg.to_string(),
        },
        "plugin" => Change::Plugin {
            id: arg.to_string(),
        },
        "plugin-ready" => {
            let (tenant, id) = arg.split_once(' ')?;
            Change::PluginReady {
                tenant: tenant.to_string(),
                id: id.to_string(),
            }
        }
        "due" => Change::DeliveriesDue,
        "health" => Change::Health {
            callback: arg.to_string(),
        },
        "resync" => Change::Resync,
        _ => return None,
    };
    Some((origin, change))
}

/// Listens until the pool closes.
pub(super) fn start(pool: PgPool, changes: Changes, origin: String) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            if pool.is_closed() {
                return;
            }
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!("cannot listen for other nodes' changes: {err}; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if let Err(err) = listener.listen(CHANNEL).await {
                tracing::warn!("cannot listen for other nodes' changes: {err}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            // Whatever changed while nobody listened is unknown.
            changes.publish(&Change::Resync);
            backoff = Duration::from_millis(100);
            loop {
                tokio::select! {
                    _ = resync.tick() => changes.publish(&Change::Resync),
                    heard = listener.try_recv() => match heard {
                        Ok(Some(notification)) => {
                            match parse(notification.payload()) {
                                Some((from, change)) if from != origin => changes.publish(&change),
                                Some(_) => {}
                                None => tracing::warn!(
                                    "ignoring an unknown notification: {}",
                                    notification.payload()
                                ),
                            }
                        }
                        // The connection was lost; it is made again on the
                        // next call, and nothing heard meanwhile is known.
                        Ok(None) => {
                            tracing::warn!("lost the connection that listens for other nodes' changes");
                            changes.publish(&Change::Resync);
                        }
                        Err(err) => {
                            tracing::warn!("listening for other nodes' changes failed: {err}");
                            break;
                        }
                    },
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_survives_its_payload() {
        for change in [
            Change::Keys,
            Change::Callbacks {
                tenant: "ten_1".into(),
            },
            Change::Plugin { id: "plg_1".into() },
            Change::PluginReady {
                tenant: "ten_1".into(),
                id: "plg_1".into(),
            },
            Change::DeliveriesDue,
            Change::Health {
                callback: "cb_1".into(),
            },
            Change::Resync,
        ] {
            let text = payload("node_1", &change);
            assert_eq!(parse(&text), Some(("node_1", change)));
        }
        assert_eq!(parse("node_1 unknown"), None);
    }
}
