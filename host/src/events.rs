//! Event intake: validate, refuse loops, answer repeats from history, run
//! the gate for before-events, and store after-events with their pending
//! deliveries durably before answering.

use std::sync::Arc;

use serde::Serialize;

use crate::callbacks::Callbacks;
use crate::delivery::Deliverer;
use crate::error::{Error, Result};
use crate::event::{NewEvent, Phase, now_ms};
use crate::gate::Gate;
use crate::ids::new_id;
use crate::input;
use crate::model::{Activation, Delivery, DeliveryRef, DeliveryStatus, EventAnswer, EventRecord};
use crate::outbound::{CAUSATION_HEADER, parse_causation};
use crate::store::{Db, EventWrite};

/// The events service.
#[derive(Clone)]
pub struct Events {
    db: Db,
    callbacks: Callbacks,
    gate: Gate,
    deliverer: Deliverer,
    max_depth: usize,
}

/// The answer to an emitted event: an HTTP status and its JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 200 for a before-event, 202 for an after-event.
    pub status: u16,
    /// The verdict, or the deliveries made.
    pub body: EventAnswer,
}

/// An event with everything that happened because of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// The stored event.
    #[serde(flatten)]
    pub record: EventRecord,
    /// The status the events endpoint answered.
    pub status: u16,
    /// The body it answered.
    pub answer: EventAnswer,
    /// Its deliveries' current state, for an after-event.
    pub delivery_states: Vec<Delivery>,
    /// Every activation: gate decisions or delivery attempts.
    pub activations: Vec<Activation>,
}

impl Events {
    /// The service; `max_depth` bounds chains of events causing events.
    pub fn new(
        db: Db,
        callbacks: Callbacks,
        gate: Gate,
        deliverer: Deliverer,
        max_depth: usize,
    ) -> Self {
        Events {
            db,
            callbacks,
            gate,
            deliverer,
            max_depth,
        }
    }

    /// Takes in an event. `causation` is the incoming causation header.
    pub async fn emit(
        &self,
        tenant: &str,
        new: NewEvent,
        causation: Option<&str>,
    ) -> Result<Answer> {
        check(&new)?;
        let ancestors = causation.map(parse_causation).unwrap_or_default();
        for id in &ancestors {
            input::identifier(CAUSATION_HEADER, id, 128)?;
        }
        if ancestors.len() >= self.max_depth {
            return Err(Error::Conflict {
                code: "event_loop",
                message: format!(
                    "refused: this event would be {} deep in a chain of events causing events \
                     ({}), over the limit of {}. A callback is probably emitting events that \
                     trigger itself; break the loop, or raise max_event_depth",
                    ancestors.len() + 1,
                    ancestors.join(" → "),
                    self.max_depth
                ),
            });
        }
        if let Some(id) = &new.id
            && let Some(existing) = self.find(tenant, id).await?
        {
            return Ok(replay(&existing));
        }

        let client_id = new.id.is_some();
        let event = new.into_event(now_ms());
        let mut chain = ancestors.clone();
        chain.push(event.id.clone());
        let causation = chain.join(",");
        let callbacks = self
            .callbacks
            .matching(tenant, event.phase, &event.object_type, &event.action)
            .await?;
        metrics::counter!("hookgate_events_total", "phase" => event.phase.as_str()).increment(1);

        let mut record = EventRecord {
            tenant_id: tenant.to_string(),
            event,
            causation: ancestors,
            decisions: Vec::new(),
            deliveries: Vec::new(),
        };
        match record.event.phase {
            Phase::Before => {
                let outcome = self.gate.run(&record.event, &causation, &callbacks).await;
                record.decisions = outcome.decisions;
                let write = EventWrite {
                    record: record.clone(),
                    deliveries: Vec::new(),
                    activations: outcome.activations,
                    client_id,
                };
                // The answer does not depend on the history write, so it is
                // queued behind the answer, in order, and reads wait for it.
                // With a client idempotency key it is written first, so
                // that a simultaneous repeat still gets the original answer.
                if client_id {
                    if let Some(existing) = self.db.insert_event(write, false).await? {
                        return Ok(replay(&existing));
                    }
                } else {
                    self.db.record_event(write);
                }
            }
            Phase::After => {
                if !self.deliverer.has_room(callbacks.len()) {
                    return Err(Error::Unavailable {
                        message: format!(
                            "{} deliveries are waiting, the most Hookgate queues; try again shortly",
                            self.deliverer.pending()
                        ),
                        retry_after_secs: 5,
                    });
                }
                let now = now_ms();
                let deliveries: Vec<Delivery> = callbacks
                    .iter()
                    .map(|callback| Delivery {
                        id: new_id("dlv"),
                        tenant_id: tenant.to_string(),
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
                    })
                    .collect();
                record.deliveries = deliveries
                    .iter()
                    .map(|d| DeliveryRef {
                        id: d.id.clone(),
                        callback_id: d.callback_id.clone(),
                    })
                    .collect();
                // Accepted means stored: nothing is acknowledged before it
                // would survive a crash.
                let write = EventWrite {
                    record: record.clone(),
                    deliveries: deliveries.clone(),
                    activations: Vec::new(),
                    client_id,
                };
                if let Some(existing) = self.db.insert_event(write, true).await? {
                    return Ok(replay(&existing));
                }
                let answer = replay(&record);
                self.deliverer.accepted(deliveries, Some(Arc::new(record)));
                return Ok(answer);
            }
        }
        Ok(replay(&record))
    }

    /// An event with its deliveries and activations.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<EventView> {
        let record = self
            .find(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("event", id))?;
        let (t, stored) = (tenant.to_string(), record.clone());
        let (delivery_states, activations) = self
            .db
            .run(move |s| {
                let deliveries = stored
                    .deliveries
                    .iter()
                    .filter_map(|d| s.delivery(&t, &d.id).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                let activations = stored
                    .decisions
                    .iter()
                    .filter_map(|d| {
                        s.activation(&t, &d.callback_id, &d.activation_id)
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((deliveries, activations))
            })
            .await?;
        let (status, answer) = record.answer();
        Ok(EventView {
            record,
            status,
            answer,
            delivery_states,
            activations,
        })
    }

    async fn find(&self, tenant: &str, id: &str) -> Result<Option<EventRecord>> {
        let (t, key) = (tenant.to_string(), id.to_string());
        Ok(self.db.run(move |s| s.event(&t, &key)).await?)
    }
}

/// The answer for a stored event: the original one, for a repeated id.
fn replay(record: &EventRecord) -> Answer {
    let (status, body) = record.answer();
    Answer { status, body }
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
