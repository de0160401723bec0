//! Who gets the next attempt slot: a fair scheduler over tenants.
//!
//! Attempts in flight are bounded globally and per callback. Within those
//! bounds, slots go round-robin to the tenants with deliveries ready, and
//! round-robin to the callbacks within a tenant. A tenant may take a slot
//! while more than a reserve of slots (an eighth) stays free, or, when
//! other tenants compete, while it holds less than its fair share (the
//! global limit divided by the tenants that hold or want slots). So one
//! tenant alone can use all but the reserve, the reserve is there for a
//! tenant that shows up, and competing tenants converge on equal shares:
//! a tenant whose receivers hang cannot hold up another tenant's
//! deliveries.
//!
//! This module only decides; the engine runs what it grants.

use std::collections::{HashMap, VecDeque};

/// The bounds the scheduler keeps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Slots in all.
    pub(super) global: usize,
    /// Slots one callback may hold.
    pub(super) per_callback: usize,
}

/// A queue of ready items, handed out fairly within the bounds.
pub(super) struct Scheduler<T> {
    bounds: Bounds,
    /// Slots kept free for tenants below their fair share.
    reserve: usize,
    free: usize,
    tenants: HashMap<String, Tenant<T>>,
    /// Tenants with ready items, in the order they are served.
    ring: VecDeque<String>,
}

struct Tenant<T> {
    held: usize,
    callbacks: HashMap<String, Callback<T>>,
    /// Callbacks with ready items, in the order they are served.
    ring: VecDeque<String>,
}

struct Callback<T> {
    held: usize,
    ready: VecDeque<T>,
}

impl<T> Tenant<T> {
    fn new() -> Self {
        Tenant {
            held: 0,
            callbacks: HashMap::new(),
            ring: VecDeque::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.held == 0 && self.ring.is_empty()
    }

    /// The next ready item of a callback below its limit, round-robin.
    fn take(&mut self, per_callback: usize) -> Option<(String, T)> {
        for _ in 0..self.ring.len() {
            let id = self.ring.pop_front()?;
            let callback = self.callbacks.get_mut(&id).expect("ringed callbacks exist");
            if callback.held < per_callback
                && let Some(item) = callback.ready.pop_front()
            {
                callback.held += 1;
                if !callback.ready.is_empty() {
                    self.ring.push_back(id.clone());
                }
                return Some((id, item));
            }
            self.ring.push_back(id);
        }
        None
    }
}

impl<T> Scheduler<T> {
    pub(super) fn new(bounds: Bounds) -> Self {
        Scheduler {
            bounds,
            reserve: bounds.global / 8,
            free: bounds.global,
            tenants: HashMap::new(),
            ring: VecDeque::new(),
        }
    }

    /// Slots taken and not yet released.
    pub(super) fn in_flight(&self) -> usize {
        self.bounds.global - self.free
    }

    /// Adds a ready item for a tenant's callback.
    pub(super) fn push(&mut self, tenant: &str, callback: &str, item: T) {
        let state = self
            .tenants
            .entry(tenant.to_string())
            .or_insert_with(Tenant::new);
        if state.ring.is_empty() {
            self.ring.push_back(tenant.to_string());
        }
        let queue = state
            .callbacks
            .entry(callback.to_string())
            .or_insert_with(|| Callback {
                held: 0,
                ready: VecDeque::new(),
            });
        if queue.ready.is_empty() {
            state.ring.push_back(callback.to_string());
        }
        queue.ready.push_back(item);
    }

    /// The next item to run, with its slot taken, if the bounds allow one.
    pub(super) fn next(&mut self) -> Option<T> {
        if self.free == 0 {
            return None;
        }
        let active = self.tenants.len();
        let share = self.bounds.global.div_ceil(active.max(1));
        for _ in 0..self.ring.len() {
            let id = self.ring.pop_front()?;
            let tenant = self.tenants.get_mut(&id).expect("ringed tenants exist");
            // The reserve is for a tenant below its share while others
            // compete; a tenant alone leaves it free for whoever comes.
            let allowed = self.free > self.reserve || (active > 1 && tenant.held < share);
            let taken = if allowed {
                tenant.take(self.bounds.per_callback)
            } else {
                None
            };
            if !tenant.ring.is_empty() {
                self.ring.push_back(id);
            }
            if let Some((_, item)) = taken {
                tenant.held += 1;
                self.free -= 1;
                return Some(item);
            }
        }
        None
    }

    /// Gives back the slot of an item [`Scheduler::next`] handed out.
    pub(super) fn release(&mut self, tenant: &str, callback: &str) {
        let Some(state) = self.tenants.get_mut(tenant) else {
            return;
        };
        state.held = state.held.saturating_sub(1);
        self.free = (self.free + 1).min(self.bounds.global);
        if let Some(queue) = state.callbacks.get_mut(callback) {
            queue.held = queue.held.saturating_sub(1);
            if queue.held == 0 && queue.ready.is_empty() {
                state.callbacks.remove(callback);
            }
        }
        if state.is_idle() {
            self.tenants.remove(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Scheduler<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| s.next()).collect()
    }

    #[test]
    fn a_busy_tenant_leaves_the_reserve_for_another() {
        let mut s = Scheduler::new(Bounds {
            global: 16,
            per_callback: 4,
        });
        for cb in ["a1", "a2", "a3", "a4", "a5"] {
            for _ in 0..4 {
                s.push("a", cb, "a");
            }
        }
        let first = drain(&mut s);
        assert_eq!(first.len(), 14, "16 slots less the reserve of 2");
        s.push("b", "b1", "b");
        assert_eq!(s.next(), Some("b"), "the newcomer gets a reserved slot");
        assert_eq!(s.in_flight(), 15);
    }

    #[test]
    fn competing_tenants_converge_on_fair_shares() {
        let mut s = Scheduler::new(Bounds {
            global: 8,
            per_callback: 8,
        });
        for _ in 0..20 {
            s.push("a", "a1", "a");
        }
        assert_eq!(drain(&mut s).len(), 7);
        for _ in 0..20 {
            s.push("b", "b1", "b");
        }
        assert_eq!(drain(&mut s), ["b"]);
        // As a's attempts finish, the freed slots go to b until both hold
        // their share of four.
        let mut granted = Vec::new();
        for _ in 0..3 {
            s.release("a", "a1");
            granted.extend(drain(&mut s));
        }
        assert_eq!(granted, ["b", "b", "b"]);
        s.release("a", "a1");
        assert_eq!(drain(&mut s), ["a"], "a is below its share again");
    }

    #[test]
    fn callbacks_are_bounded_and_served_round_robin() {
        let mut s = Scheduler::new(Bounds {
            global: 100,
            per_callback: 2,
        });
        for item in ["x1", "x2", "x3"] {
            s.push("t", "x", item);
        }
        s.push("t", "y", "y1");
        assert_eq!(drain(&mut s), ["x1", "y1", "x2"]);
        s.release("t", "x");
        assert_eq!(drain(&mut s), ["x3"]);
        for callback in ["x", "x", "y"] {
            s.release("t", callback);
        }
        assert!(s.tenants.is_empty(), "idle tenants are forgotten");
        assert_eq!(s.in_flight(), 0);
    }
}
