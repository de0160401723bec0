//! The sled backend's delivery queue, in memory, with leases.
//!
//! One process owns a sled database, so its queue lives in that process:
//! at start every stored pending delivery is loaded, unleased and due at
//! its `next_attempt_at`, which is what a crash leaves behind. Leases work
//! as they would in a shared database: a claimed delivery is its owner's
//! until the lease ends; an expired lease lets anyone claim the delivery
//! again, and only the owner of record may complete it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::model::{Delivery, DeliveryStatus, EventRecord};
use crate::store::{Claim, Claimed, Handover};

/// A delivery's place in the queue: `tenant/id`.
type Key = String;

/// Pending deliveries, due or leased.
#[derive(Default)]
pub(super) struct Queue {
    entries: HashMap<Key, Entry>,
    /// Unleased pending deliveries (and those whose lease expired), per
    /// tenant and callback, by due time: a claim looks only at the first
    /// of each callback, so a callback at its limit costs nothing to skip.
    due: BTreeMap<String, BTreeMap<String, BTreeSet<(u64, Key)>>>,
    /// Live leases, by the time they end.
    leases: BTreeSet<(u64, Key)>,
    /// Live leases per callback.
    active: HashMap<String, usize>,
    /// Leases on finished deliveries, taken for a manual attempt.
    manual: HashMap<Key, Lease>,
    /// Where the next claim's round over the tenants starts.
    turn: usize,
}

struct Entry {
    delivery: Delivery,
    event: Option<Arc<EventRecord>>,
    /// The owner of record: kept after the lease ends, until someone
    /// claims the delivery again, so a late owner can still complete it.
    lease: Option<Lease>,
}

#[derive(Clone)]
struct Lease {
    owner: String,
    until: u64,
}

/// What [`Queue::claim_one`] found.
pub(super) enum One {
    /// Leased to the caller now.
    Claimed,
    /// Pending: in the queue, waiting for its due time or being attempted.
    Pending,
    /// Finished, and another owner attempts it manually right now.
    Leased,
}

pub(super) fn key(delivery: &Delivery) -> Key {
    super::trees::key(&delivery.tenant_id, &delivery.id)
}

fn due_at(delivery: &Delivery) -> u64 {
    delivery.next_attempt_at.unwrap_or(0)
}

impl Queue {
    /// Adds (or reschedules) a pending delivery, unleased.
    pub(super) fn add(&mut self, delivery: Delivery, event: Option<Arc<EventRecord>>) {
        let key = key(&delivery);
        self.unlist(&key);
        self.list_due(&delivery, &key);
        self.entries.insert(
            key,
            Entry {
                delivery,
                event,
                lease: None,
            },
        );
    }

    /// How many deliveries are pending, leased or not.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn list_due(&mut self, delivery: &Delivery, key: &Key) {
        self.due
            .entry(delivery.tenant_id.clone())
            .or_default()
            .entry(delivery.callback_id.clone())
            .or_default()
            .insert((due_at(delivery), key.clone()));
    }

    /// Takes an entry out of the due lists and the live leases.
    fn unlist(&mut self, key: &Key) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let at = (due_at(&entry.delivery), key.clone());
        let (tenant, callback) = (&entry.delivery.tenant_id, &entry.delivery.callback_id);
        if let Some(callbacks) = self.due.get_mut(tenant) {
            if let Some(set) = callbacks.get_mut(callback) {
                set.remove(&at);
                if set.is_empty() {
                    callbacks.remove(callback);
                }
            }
            if callbacks.is_empty() {
                self.due.remove(tenant);
            }
        }
        if let Some(lease) = &entry.lease
            && self.leases.remove(&(lease.until, key.clone()))
        {
            let callback = entry.delivery.callback_id.clone();
            self.release_slot(&callback);
        }
    }

    fn release_slot(&mut self, callback: &str) {
        if let Some(n) = self.active.get_mut(callback) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(callback);
            }
        }
    }

    /// Moves leases that ended by `now` back among the due deliveries.
    fn expire(&mut self, now: u64) {
        while let Some((until, key)) = self.leases.first().cloned() {
            if until > now {
                break;
            }
            self.leases.pop_first();
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            let (delivery, callback) = (entry.delivery.clone(), entry.delivery.callback_id.clone());
            self.release_slot(&callback);
            self.list_due(&delivery, &key);
        }
        self.manual.retain(|_, lease| lease.until > now);
    }

    /// Claims due deliveries: round-robin over the tenants, the earliest
    /// due first within each, and no callback over its limit of leases.
    pub(super) fn claim(&mut self, claim: &Claim<'_>) -> Vec<Claimed> {
        self.expire(claim.now);
        let tenants: Vec<String> = self
            .due
            .iter()
            .filter(|(tenant, callbacks)| {
                !claim.exclude_tenants.contains(tenant)
                    && callbacks
                        .values()
                        .any(|set| set.first().is_some_and(|(at, _)| *at <= claim.now))
            })
            .map(|(tenant, _)| tenant.clone())
            .collect();
        if tenants.is_empty() || claim.limit == 0 {
            return Vec::new();
        }
        let start = self.turn % tenants.len();
        self.turn = self.turn.wrapping_add(1);
        let mut taken = Vec::new();
        loop {
            let before = taken.len();
            for tenant in tenants[start..].iter().chain(&tenants[..start]) {
                if taken.len() == claim.limit {
                    return taken;
                }
                if let Some(key) = self.next_for(tenant, claim) {
                    taken.push(self.lease(&key, claim.owner, claim.now + claim.lease_ms));
                }
            }
            if taken.len() == before {
                return taken;
            }
        }
    }

    /// A tenant's earliest due delivery whose callback has room.
    fn next_for(&self, tenant: &str, claim: &Claim<'_>) -> Option<Key> {
        self.due
            .get(tenant)?
            .iter()
            .filter(|(callback, _)| {
                self.active.get(*callback).copied().unwrap_or(0) < claim.per_callback
            })
            .filter_map(|(_, set)| set.first())
            .filter(|(at, _)| *at <= claim.now)
            .min()
            .map(|(_, key)| key.clone())
    }

    fn lease(&mut self, key: &Key, owner: &str, until: u64) -> Claimed {
        self.unlist(key);
        let entry = self.entries.get_mut(key).expect("claimed entries exist");
        entry.lease = Some(Lease {
            owner: owner.to_string(),
            until,
        });
        let claimed = Claimed {
            delivery: entry.delivery.clone(),
            event: entry.event.clone(),
            lease_until: until,
        };
        let callback = entry.delivery.callback_id.clone();
        self.leases.insert((until, key.clone()));
        *self.active.entry(callback).or_insert(0) += 1;
        claimed
    }

    /// Leases a delivery for a manual attempt: only a finished one, which
    /// is not in the queue, and only if no one else attempts it.
    pub(super) fn claim_one(&mut self, owner: &str, key: &Key, now: u64, lease_ms: u64) -> One {
        self.expire(now);
        if self.entries.contains_key(key) {
            return One::Pending;
        }
        if self.manual.contains_key(key) {
            return One::Leased;
        }
        self.manual.insert(
            key.clone(),
            Lease {
                owner: owner.to_string(),
                until: now + lease_ms,
            },
        );
        One::Claimed
    }

    /// Drops the manual lease just taken on a delivery that turned out not
    /// to exist, or could not be read.
    pub(super) fn unclaim_one(&mut self, key: &Key) {
        self.manual.remove(key);
    }

    /// The finished deliveries being attempted by hand: their manual leases
    /// still run at `now`. Those that ended go, so that an attempt that
    /// outlived its lease cannot complete after this answer left it out.
    pub(super) fn attempted_by_hand(&mut self, now: u64) -> HashSet<Key> {
        self.expire(now);
        self.manual.keys().cloned().collect()
    }

    /// Moves the end of `owner`'s lease on a delivery; false if that lease
    /// is not `owner`'s, is not the one claimed (it ended and the delivery
    /// was leased again), or no longer runs at `live_at`.
    pub(super) fn extend(
        &mut self,
        owner: &str,
        claimed: &Claimed,
        live_at: u64,
        until: u64,
    ) -> bool {
        let key = key(&claimed.delivery);
        let held = |lease: &Lease| {
            lease.owner == owner && lease.until == claimed.lease_until && lease.until > live_at
        };
        if let Some(lease) = self.manual.get_mut(&key) {
            if !held(lease) {
                return false;
            }
            lease.until = until;
            return true;
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            return false;
        };
        match &mut entry.lease {
            // One no longer listed among the live ones has ended, and its
            // callback's count gave its slot back already.
            Some(lease) if held(lease) && self.leases.remove(&(lease.until, key.clone())) => {
                self.leases.insert((until, key));
                lease.until = until;
                true
            }
            _ => false,
        }
    }

    /// Ends `owner`'s lease, the one ending at `lease_until`, with the
    /// delivery's new state; false (and nothing changes) if that lease is
    /// not held any more. With a
    /// `handover`, a lease still live passes to the callback's earliest due
    /// delivery, which is returned.
    pub(super) fn complete(
        &mut self,
        owner: &str,
        lease_until: u64,
        updated: &Delivery,
        handover: Option<Handover>,
    ) -> (bool, Option<Claimed>) {
        let key = key(updated);
        let held = |lease: &Lease| lease.owner == owner && lease.until == lease_until;
        if let Some(lease) = self.manual.get(&key) {
            if !held(lease) {
                return (false, None);
            }
            self.manual.remove(&key);
            return (true, None);
        }
        let Some(lease) = self
            .entries
            .get(&key)
            .and_then(|e| e.lease.clone())
            .filter(held)
        else {
            return (false, None);
        };
        // Only a lease still counted among the callback's may pass on: an
        // expired one's slot was given back to the claims already.
        let live = self.leases.contains(&(lease.until, key.clone()));
        self.unlist(&key);
        let entry = self.entries.remove(&key).expect("held entries exist");
        if updated.status == DeliveryStatus::Pending {
            self.add(updated.clone(), entry.event);
        }
        let next = handover
            .filter(|handover| live && lease.until > handover.now)
            .and_then(|handover| {
                let at = handover.now;
                // Never the delivery just completed, even if due again at
                // once: it waits for a claim, as on PostgreSQL.
                let next = self
                    .due
                    .get(&updated.tenant_id)?
                    .get(&updated.callback_id)?
                    .iter()
                    .find(|(_, next)| *next != key)
                    .filter(|(due, _)| *due <= at)?
                    .1
                    .clone();
                Some(self.lease(&next, owner, at + handover.lease_ms))
            });
        (true, next)
    }

    /// Gives `owner`'s leases on these deliveries back, unattempted.
    pub(super) fn release(&mut self, owner: &str, claimed: &[Claimed]) {
        for claimed in claimed {
            let key = key(&claimed.delivery);
            let held = |lease: &Lease| lease.owner == owner && lease.until == claimed.lease_until;
            if self.manual.get(&key).is_some_and(held) {
                self.manual.remove(&key);
                continue;
            }
            let holds = self
                .entries
                .get(&key)
                .and_then(|e| e.lease.as_ref())
                .is_some_and(held);
            if holds {
                self.unlist(&key);
                let entry = self.entries.get_mut(&key).expect("held entries exist");
                entry.lease = None;
                let delivery = entry.delivery.clone();
                self.list_due(&delivery, &key);
            }
        }
    }

    /// The first moment after `after` when a delivery falls due or a live
    /// lease ends.
    pub(super) fn next_due(&self, after: u64) -> Option<u64> {
        let later = (after.saturating_add(1), String::new())..;
        let due = self
            .due
            .values()
            .flat_map(|callbacks| callbacks.values())
            .filter_map(|set| set.range(later.clone()).next().map(|(at, _)| *at))
            .min();
        let lease = self.leases.range(later).next().map(|(until, _)| *until);
        due.into_iter().chain(lease).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(tenant: &str, callback: &str, id: &str, due: u64) -> Delivery {
        Delivery {
            id: id.into(),
            tenant_id: tenant.into(),
            callback_id: callback.into(),
            event_id: "evt".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            round_start: 0,
            attempt_ids: Vec::new(),
            next_attempt_at: Some(due),
            created_at: 0,
            updated_at: 0,
            last_error: None,
        }
    }

    fn claim<'a>(owner: &'a str, now: u64, limit: usize) -> Claim<'a> {
        Claim {
            owner,
            now,
            lease_ms: 1_000,
            limit,
            depth: 1,
            per_callback: 2,
            exclude_tenants: &[],
        }
    }

    fn ids(claimed: &[Claimed]) -> Vec<&str> {
        claimed.iter().map(|c| c.delivery.id.as_str()).collect()
    }

    #[test]
    fn claims_go_round_robin_over_tenants_and_respect_callback_limits() {
        let mut q = Queue::default();
        for n in 0..4 {
            q.add(delivery("a", "a1", &format!("a{n}"), n), None);
        }
        q.add(delivery("b", "b1", "b0", 10), None);
        q.add(delivery("b", "b1", "late", 500), None);
        let got = q.claim(&claim("n1", 100, 10));
        let mut got = ids(&got);
        got.sort();
        assert_eq!(
            got,
            ["a0", "a1", "b0"],
            "two for a1, and nothing not yet due"
        );
        assert!(
            q.claim(&claim("n2", 100, 10)).is_empty(),
            "all leased or full"
        );
        assert_eq!(q.len(), 6);
    }

    #[test]
    fn only_the_lease_holder_completes_and_an_expired_lease_is_claimed_again() {
        let mut q = Queue::default();
        q.add(delivery("a", "a1", "d", 0), None);
        let first = q.claim(&claim("ghost", 10, 1));
        assert_eq!(ids(&first), ["d"]);
        assert_eq!(q.next_due(10), Some(1_010), "the lease's end");
        assert!(q.claim(&claim("n2", 500, 1)).is_empty(), "leased");
        let again = q.claim(&claim("n2", 1_010, 1));
        assert_eq!(ids(&again), ["d"], "taken over once the lease ended");
        let mut done = again[0].delivery.clone();
        done.status = DeliveryStatus::Succeeded;
        assert!(
            !q.complete("ghost", first[0].lease_until, &done, None).0,
            "the vanished owner may not complete"
        );
        assert!(q.complete("n2", again[0].lease_until, &done, None).0);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_late_owner_completes_an_expired_lease_nobody_took() {
        let mut q = Queue::default();
        q.add(delivery("a", "a1", "d", 0), None);
        let claimed = q.claim(&claim("slow", 0, 1));
        let mut retry = claimed[0].delivery.clone();
        retry.next_attempt_at = Some(5_000);
        // The lease ended while the attempt ran; no one claimed it since.
        assert!(q.claim(&claim("other", 1_500, 0)).is_empty());
        assert!(q.complete("slow", claimed[0].lease_until, &retry, None).0);
        assert!(q.claim(&claim("other", 4_999, 1)).is_empty(), "due later");
        assert_eq!(ids(&q.claim(&claim("other", 5_000, 1))), ["d"]);
    }

    #[test]
    fn excluded_tenants_are_left_out_and_released_leases_are_due_again() {
        let mut q = Queue::default();
        q.add(delivery("a", "a1", "a0", 0), None);
        q.add(delivery("b", "b1", "b0", 0), None);
        let exclude = ["a".to_string()];
        let only_b = q.claim(&Claim {
            exclude_tenants: &exclude,
            ..claim("n", 1, 5)
        });
        assert_eq!(ids(&only_b), ["b0"]);
        q.release("n", &only_b);
        let mut all = ids(&q.claim(&claim("n", 1, 5))).join(",");
        all = all.replace("b0,a0", "a0,b0");
        assert_eq!(all, "a0,b0");
    }

    #[test]
    fn a_finished_delivery_is_claimed_once_for_a_manual_attempt() {
        let mut q = Queue::default();
        let done = delivery("a", "a1", "d", 0);
        let key = key(&done);
        assert!(matches!(q.claim_one("n1", &key, 0, 100), One::Claimed));
        assert!(matches!(q.claim_one("n2", &key, 50, 100), One::Leased));
        assert_eq!(q.attempted_by_hand(50), HashSet::from([key.clone()]));
        assert!(q.complete("n1", 100, &done, None).0);
        assert!(q.attempted_by_hand(50).is_empty());
        assert!(matches!(q.claim_one("n2", &key, 60, 100), One::Claimed));
        assert!(
            q.attempted_by_hand(160).is_empty(),
            "n2's lease ends at 160"
        );
        assert!(
            !q.complete("n2", 160, &done, None).0,
            "a lease seen ended completes nothing"
        );
        assert!(matches!(q.claim_one("n3", &key, 170, 100), One::Claimed));
        q.unclaim_one(&key);
        assert!(matches!(q.claim_one("n4", &key, 170, 100), One::Claimed));
        q.add(delivery("a", "a1", "p", 0), None);
        assert!(matches!(
            q.claim_one("n2", &"a/p".to_string(), 60, 100),
            One::Pending
        ));
    }

    #[test]
    fn a_live_lease_passes_to_the_callbacks_next_due_delivery() {
        let mut q = Queue::default();
        for (id, due) in [("d0", 0), ("d1", 5), ("d2", 10), ("later", 900)] {
            q.add(delivery("a", "a1", id, due), None);
        }
        q.add(delivery("a", "other", "o0", 0), None);
        let first = q.claim(&Claim {
            limit: 1,
            depth: 1,
            ..claim("n1", 20, 1)
        });
        assert_eq!(ids(&first), ["d0"]);
        let mut done = first[0].delivery.clone();
        done.status = DeliveryStatus::Succeeded;
        let handover = Handover {
            now: 30,
            lease_ms: 1_000,
        };
        let (held, next) = q.complete("n1", first[0].lease_until, &done, Some(handover));
        assert!(held);
        let next = next.expect("the callback had a delivery due");
        assert_eq!(
            (next.delivery.id.as_str(), next.lease_until),
            ("d1", 1_030),
            "its earliest due, never another callback's"
        );
        // d1 holds one of a1's two slots, as d0 did: one more fits.
        assert_eq!(ids(&q.claim(&claim("n2", 30, 5))), ["o0", "d2"]);
        assert!(q.claim(&claim("n2", 30, 5)).is_empty());

        // Nothing due: the slot goes back.
        let mut done = next.delivery;
        done.status = DeliveryStatus::Succeeded;
        let (held, next) = q.complete("n1", next.lease_until, &done, Some(handover));
        assert!(held && next.is_none(), "`later` is not due yet");
    }

    #[test]
    fn an_expired_lease_is_not_passed_on() {
        let mut q = Queue::default();
        q.add(delivery("a", "a1", "d0", 0), None);
        q.add(delivery("a", "a1", "d1", 0), None);
        let first = q.claim(&Claim {
            limit: 1,
            depth: 1,
            ..claim("slow", 0, 1)
        });
        // A claim after the lease ended gave its slot back, though it took
        // nothing; the late owner's clock still says the lease is live.
        assert!(q.claim(&claim("n2", 1_500, 0)).is_empty());
        let mut done = first[0].delivery.clone();
        done.status = DeliveryStatus::Succeeded;
        let handover = Handover {
            now: 900,
            lease_ms: 1_000,
        };
        let (held, next) = q.complete("slow", first[0].lease_until, &done, Some(handover));
        assert!(held, "no one took it over");
        assert!(next.is_none(), "an expired lease handed over a slot");
        assert_eq!(ids(&q.claim(&claim("n2", 1_500, 5))), ["d1"]);
    }

    #[test]
    fn a_delivery_due_again_at_once_is_not_handed_to_itself() {
        let mut q = Queue::default();
        q.add(delivery("a", "a1", "d", 0), None);
        let first = q.claim(&claim("n1", 10, 1));
        let retry = first[0].delivery.clone();
        let handover = Handover {
            now: 10,
            lease_ms: 1_000,
        };
        let (held, next) = q.complete("n1", first[0].lease_until, &retry, Some(handover));
        assert!(held && next.is_none(), "handed itself over");
        assert_eq!(ids(&q.claim(&claim("n2", 10, 1))), ["d"]);
    }
}
