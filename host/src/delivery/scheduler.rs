//! How many deliveries a node claims, and for whom: its attempt slots,
//! shared fairly between tenants.
//!
//! A node holds a fixed number of slots (the global limit). The store
//! hands out due deliveries round-robin across tenants and keeps each
//! callback under its own limit; this module decides how many to ask for.
//! A claim may fill every slot but a reserve (an eighth); the reserve goes
//! only to tenants holding less than their fair share (the slots divided
//! among the tenants holding some, plus one for a tenant that may come).
//! So one tenant alone can use all but the reserve, the reserve is there
//! for a tenant that shows up, and competing tenants converge on equal
//! shares: a tenant whose receivers hang cannot hold up another tenant's
//! deliveries.

use std::collections::HashMap;

/// This node's attempt slots and who holds them.
pub(super) struct Slots {
    global: usize,
    reserve: usize,
    in_flight: usize,
    by_tenant: HashMap<String, usize>,
}

impl Slots {
    pub(super) fn new(global: usize) -> Self {
        Slots {
            global,
            reserve: global / 8,
            in_flight: 0,
            by_tenant: HashMap::new(),
        }
    }

    /// Attempts in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many deliveries any tenant may have now: the free slots less
    /// the reserve.
    pub(super) fn open(&self) -> usize {
        (self.global - self.in_flight).saturating_sub(self.reserve)
    }

    /// How many reserved slots are free, and the tenants that may not take
    /// them because they hold their share already.
    pub(super) fn reserved(&self) -> (usize, Vec<String>) {
        let free = (self.global - self.in_flight).min(self.reserve);
        let share = self.global.div_ceil(self.by_tenant.len() + 1);
        let full = self
            .by_tenant
            .iter()
            .filter(|(_, held)| **held >= share)
            .map(|(tenant, _)| tenant.clone())
            .collect();
        (free, full)
    }

    /// A slot taken for one of `tenant`'s deliveries.
    pub(super) fn take(&mut self, tenant: &str) {
        self.in_flight += 1;
        *self.by_tenant.entry(tenant.to_string()).or_insert(0) += 1;
    }

    /// Whether `tenant` may keep a slot it is done with for its next
    /// delivery: only while it holds no more than its share among the
    /// tenants holding slots, so that a tenant that took many slots alone
    /// gives them back as others come.
    pub(super) fn may_keep(&self, tenant: &str) -> bool {
        let share = self.global.div_ceil(self.by_tenant.len().max(1));
        self.by_tenant
            .get(tenant)
            .is_some_and(|held| *held <= share)
    }

    /// A slot given back.
    pub(super) fn give_back(&mut self, tenant: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(held) = self.by_tenant.get_mut(tenant) {
            *held -= 1;
            if *held == 0 {
                self.by_tenant.remove(tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(slots: &mut Slots, tenant: &str, n: usize) {
        for _ in 0..n {
            slots.take(tenant);
        }
    }

    #[test]
    fn a_busy_tenant_leaves_the_reserve_for_another() {
        let mut slots = Slots::new(16);
        assert_eq!(slots.open(), 14, "16 slots less the reserve of 2");
        fill(&mut slots, "a", 14);
        assert_eq!(slots.open(), 0);
        let (free, full) = slots.reserved();
        assert_eq!(free, 2);
        assert_eq!(full, ["a"], "the tenant holding 14 of 16 is past its share");
        fill(&mut slots, "b", 2);
        assert_eq!(slots.reserved().0, 0);
    }

    #[test]
    fn competing_tenants_converge_on_fair_shares() {
        let mut slots = Slots::new(8);
        fill(&mut slots, "a", 7);
        let (_, full) = slots.reserved();
        assert_eq!(full, ["a"]);
        fill(&mut slots, "b", 1);
        // As a's attempts end, the freed slots are reserved, and only b,
        // below its share of 8 / 3, may take them.
        for _ in 0..2 {
            slots.give_back("a");
            assert_eq!(slots.open(), 0, "a freed slot is reserved");
            let (free, full) = slots.reserved();
            assert_eq!((free, full), (1, vec!["a".to_string()]));
            slots.take("b");
        }
        assert_eq!((slots.by_tenant["a"], slots.by_tenant["b"]), (5, 3));
        // Both hold their share: the reserve waits, and what frees beyond
        // it is open to both again.
        slots.give_back("a");
        let (free, mut full) = slots.reserved();
        full.sort();
        assert_eq!((free, full), (1, vec!["a".to_string(), "b".to_string()]));
        slots.give_back("a");
        assert_eq!(slots.open(), 1);
        for _ in 0..3 {
            slots.give_back("a");
            slots.give_back("b");
        }
        assert_eq!(slots.in_flight(), 0);
        assert!(slots.by_tenant.is_empty(), "idle tenants are forgotten");
    }

    #[test]
    fn only_a_tenant_within_its_share_keeps_a_slot() {
        let mut slots = Slots::new(8);
        fill(&mut slots, "a", 6);
        assert!(slots.may_keep("a"), "alone, a may hold all but the reserve");
        fill(&mut slots, "b", 1);
        // Shares are now 8 / 2: a gives back what it is done with until
        // it holds four.
        assert!(!slots.may_keep("a"));
        assert!(slots.may_keep("b"));
        for _ in 0..2 {
            slots.give_back("a");
        }
        assert!(slots.may_keep("a"));
        assert!(!slots.may_keep("c"), "a tenant without a slot keeps none");
    }
}
