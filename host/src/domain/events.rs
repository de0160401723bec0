//! Event intake: validate, refuse loops, answer repeats from history, run
//! the gate for before-events, and store after-events with their pending
//! deliveries durably before answering.

use std::sync::Arc;

use serde::Serialize;

use super::callbacks::Callbacks;
use super::gate::Gate;
use super::{Error, Result, input};
use crate::clock::SharedClock;
use crate::model::ids::new_id;
use crate::model::{
    Activation, Callback, Delivery, DeliveryRef, DeliveryStatus, Event, EventAnswer, EventRecord,
    NewEvent, Phase,
};
use crate::outbound::{CAUSATION_HEADER, parse_causation};
use crate::store::{EventWrite, Store};

/// The events service.
#[derive(Clone)]
pub struct Events {
    store: Store,
    callbacks: Callbacks,
    gate: Gate,
    clock: SharedClock,
    limits: IntakeLimits,
}

/// What intake refuses beyond.
#[derive(Debug, Clone, Copy)]
pub struct IntakeLimits {
    /// Longest chain of events causing events.
    pub max_depth: usize,
    /// Pending deliveries beyond which after-events are refused for now.
    pub max_pending: usize,
}

/// An event with everything that happened because of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// The stored event.
    #[serde(flatten)]
    pub record: EventRecord,
    /// What the events endpoint answered.
    pub answer: EventAnswer,
    /// Its deliveries' current state, for an after-event.
    pub delivery_states: Vec<Delivery>,
    /// Every activation: gate decisions or delivery attempts.
    pub activations: Vec<Activation>,
}

impl Events {
    /// The events service.
    pub fn new(
        store: Store,
        callbacks: Callbacks,
        gate: Gate,
        clock: SharedClock,
        limits: IntakeLimits,
    ) -> Self {
        Events {
            store,
            callbacks,
            gate,
            clock,
            limits,
        }
    }

    /// Takes in an event. `causation` is the incoming causation header.
    /// A repeated client id answers the original answer and runs nothing;
    /// see [`repeat`].
    pub async fn emit(
        &self,
        tenant: &str,
        new: NewEvent,
        causation: Option<&str>,
    ) -> Result<EventAnswer> {
        check(&new)?;
        let ancestors = self.ancestors(causation)?;
        let client_id = new.id.is_some();
        let record = EventRecord {
            tenant_id: tenant.to_string(),
            event: new.into_event(self.clock.now_ms()),
            causation: ancestors,
            decisions: Vec::new(),
            deliveries: Vec::new(),
        };
        if client_id && let Some(existing) = self.find(tenant, &record.event.id).await? {
            return repeat(&existing, &record.event);
        }
        let callbacks = self
            .callbacks
            .matching(
                tenant,
                record.event.phase,
                &record.event.object_type,
                &record.event.action,
            )
            .await?;
        metrics::counter!("hookgate_events_total", "phase" => record.event.phase.as_str())
            .increment(1);
        match record.event.phase {
            Phase::Before => self.gate(record, &callbacks, client_id).await,
            Phase::After => self.accept(record, &callbacks, client_id).await,
        }
    }

    /// The event's ancestors from its causation header, refused past the
    /// loop limit.
    fn ancestors(&self, causation: Option<&str>) -> Result<Vec<String>> {
        let ancestors = causation.map(parse_causation).unwrap_or_default();
        for id in &ancestors {
            input::identifier(CAUSATION_HEADER, id, 128)?;
        }
        if ancestors.len() >= self.limits.max_depth {
            return Err(Error::Conflict {
                code: "event_loop",
                message: format!(
                    "refused: this event would be {} deep in a chain of events causing events \
                     ({}), over the limit of {}. A callback is probably emitting events that \
                     trigger itself; break the loop, or raise max_event_depth",
                    ancestors.len() + 1,
                    ancestors.join(" → "),
                    self.limits.max_depth
                ),
            });
        }
        Ok(ancestors)
    }

    /// A before-event: the gate answers, and its history is kept.
    async fn gate(
        &self,
        mut record: EventRecord,
        callbacks: &[Callback],
        client_id: bool,
    ) -> Result<EventAnswer> {
        let mut chain = record.causation.clone();
        chain.push(record.event.id.clone());
        let outcome = self
            .gate
            .run(&record.event, &chain.join(","), callbacks)
            .await;
        record.decisions = outcome.decisions;
        let answer = record.answer();
        let record = Arc::new(record);
        let write = EventWrite {
            record: record.clone(),
            deliveries: Vec::new(),
            activations: outcome.activations,
            client_id,
        };
        // The answer does not depend on the history write, so it is queued
        // behind the answer, in order, and reads wait for it. With a client
        // idempotency key it is written first, so that a simultaneous
        // repeat still gets the original answer.
        if client_id {
            if let Some(existing) = self.store.events().insert_event(write, false).await? {
                return repeat(&existing, &record.event);
            }
        } else {
            self.store.events().record_event(write);
        }
        Ok(answer)
    }

    /// An after-event: stored with one pending delivery per callback, on
    /// disk before the answer. Accepted means stored.
    async fn accept(
        &self,
        mut record: EventRecord,
        callbacks: &[Callback],
        client_id: bool,
    ) -> Result<EventAnswer> {
        let pending = self.store.deliveries().pending_count().await?;
        if pending + callbacks.len() > self.limits.max_pending {
            return Err(Error::Unavailable {
                message: format!(
                    "{pending} deliveries are waiting, the most Hookgate queues; try again shortly"
                ),
                retry_after_secs: 5,
            });
        }
        let now = self.clock.now_ms();
        let deliveries: Vec<Delivery> = callbacks
            .iter()
            .map(|callback| new_delivery(&record, callback, now))
            .collect();
        record.deliveries = deliveries
            .iter()
            .zip(callbacks)
            .map(|(d, callback)| DeliveryRef {
                id: d.id.clone(),
                callback_id: d.callback_id.clone(),
                callback_name: callback.name.clone(),
            })
            .collect();
        let answer = record.answer();
        let record = Arc::new(record);
        let write = EventWrite {
            record: record.clone(),
            deliveries,
            activations: Vec::new(),
            client_id,
        };
        match self.store.events().insert_event(write, true).await? {
            Some(existing) => repeat(&existing, &record.event),
            None => Ok(answer),
        }
    }

    /// An event with its deliveries and activations.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<EventView> {
        let record = self
            .find(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("event", id))?;
        let repo = self.store.deliveries();
        let mut delivery_states = Vec::new();
        for delivery in &record.deliveries {
            if let Some(state) = repo.delivery(tenant, &delivery.id).await? {
                delivery_states.push(state);
            }
        }
        let mut activations = Vec::new();
        for decision in &record.decisions {
            activations.extend(
                repo.activation(tenant, &decision.callback_id, &decision.activation_id)
                    .await?,
            );
        }
        Ok(EventView {
            answer: record.answer(),
            record,
            delivery_states,
            activations,
        })
    }

    async fn find(&self, tenant: &str, id: &str) -> Result<Option<EventRecord>> {
        Ok(self.store.events().event(tenant, id).await?)
    }
}

/// The answer to an event whose client id the tenant already used. The
/// same event sent again is a retry, answered with the first answer. Any
/// other event is refused: answered with the first one's answer, it would
/// be reported accepted and never stored.
fn repeat(existing: &EventRecord, event: &Event) -> Result<EventAnswer> {
    let first = &existing.event;
    let differs = [
        ("phase", first.phase != event.phase),
        ("object_type", first.object_type != event.object_type),
        ("action", first.action != event.action),
        ("actor", first.actor != event.actor),
        ("data", first.data != event.data),
    ]
    .into_iter()
    .find_map(|(field, differs)| differs.then_some(field));
    match differs {
        None => Ok(existing.answer()),
        Some(field) => Err(Error::Conflict {
            code: "event_id_reused",
            message: format!(
                "event id `{}` was already used by another event, whose `{field}` differs: \
                 a repeated id must repeat its event, so give each event its own id",
                event.id
            ),
        }),
    }
}

/// A delivery of `record` to `callback`, due now.
fn new_delivery(record: &EventRecord, callback: &Callback, now: u64) -> Delivery {
    Delivery {
        id: new_id("dlv"),
        tenant_id: record.tenant_id.clone(),
        callback_id: callback.id.clone(),
        event_id: record.event.id.clone(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        round_start: 0,
        attempt_ids: Vec::new(),
        next_attempt_at: Some(now),
        created_at: now,
        updated_at: now,
        last_error: None,
    }
}

fn check(new: &NewEvent) -> Result<()> {
    if let Some(id) = &new.id {
        input::identifier("id", id, 128)?;
    }
    input::identifier("object_type", &new.object_type, 64)?;
    input::identifier("action", &new.action, 64)?;
    if let Some(actor) = &new.actor {
        input::text("actor", actor, 256)?;
    }
    Ok(())
}
