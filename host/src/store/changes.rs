//! The cache-coherence seam: a backend announces what changed once it is
//! durable, and every cache that could hold it forgets it.
//!
//! Listeners are called synchronously, before the write that caused the
//! change returns, so that whoever made a change sees it in their next
//! request. Changes made elsewhere (by another node sharing the database)
//! arrive through the same seam, from whatever the backend listens to.

use std::sync::{Arc, RwLock};

/// Something a cache may hold has changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A key was revoked: cached keys must be checked again.
    Keys,
    /// A tenant's callbacks changed.
    Callbacks {
        /// The tenant.
        tenant: String,
    },
    /// A plugin version was added or deleted.
    Plugin {
        /// The plugin version's id.
        id: String,
    },
    /// A plugin version compiled: every node may compile it now, before a
    /// call needs it.
    PluginReady {
        /// Its tenant.
        tenant: String,
        /// The plugin version's id.
        id: String,
    },
    /// Deliveries became due: new ones, a replay, or a retry now.
    DeliveriesDue,
    /// A callback's run of failures grew.
    Health {
        /// The callback.
        callback: String,
    },
    /// Anything may have changed, unheard: every cache starts over. Sent
    /// when a node could not hear the others for a while.
    Resync,
}

type Listener = Box<dyn Fn(&Change) + Send + Sync>;

/// Where changes are announced and heard. Clones share the listeners.
#[derive(Clone, Default)]
pub struct Changes(Arc<RwLock<Vec<Listener>>>);

impl Changes {
    /// Calls `listener` with every change from now on.
    pub fn subscribe(&self, listener: impl Fn(&Change) + Send + Sync + 'static) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(listener));
    }

    /// Tells every listener of `change`, before returning.
    pub fn publish(&self, change: &Change) {
        for listener in self.0.read().unwrap_or_else(|p| p.into_inner()).iter() {
            listener(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_listener_hears_every_change_before_publish_returns() {
        let changes = Changes::default();
        let heard = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let heard = heard.clone();
            changes.subscribe(move |change| {
                if *change == Change::Keys {
                    heard.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        changes.publish(&Change::Keys);
        assert_eq!(heard.load(Ordering::SeqCst), 2);
        changes.publish(&Change::DeliveriesDue);
        assert_eq!(heard.load(Ordering::SeqCst), 2);
    }
}
