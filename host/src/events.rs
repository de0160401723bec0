//! Event intake: validate, refuse loops, answer repeats from history, run
//! the gate for before-events, and store after-events with their pending
//! deliveries durably before answering.

use serde::Serialize;
use serde_json::{Value, json};

use crate::callbacks::Callbacks;
use crate::error::{Error, Result};
use crate::event::{NewEvent, Phase, now_ms};
use crate::gate::Gate;
use crate::ids::new_id;
use crate::input;
use crate::model::{Activation, Delivery, DeliveryStatus, EventRecord};
use crate::outbound::{CAUSATION_HEADER, parse_causation};
use crate::store::Db;

/// The events service.
#[derive(Clone)]
pub struct Events {
    db: Db,
    callbacks: Callbacks,
    gate: Gate,
    max_depth: usize,
}

/// The answer to an emitted event: an HTTP status and its JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 200 for a before-event, 202 for an after-event.
    pub status: u16,
    /// `{event_id, allowed, decisions}` or `{event_id, deliveries}`.
    pub body: Value,
}

/// An event with everything that happened because of it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// The stored event and answer.
    #[serde(flatten)]
    pub record: EventRecord,
    /// Its deliveries' current state, for an after-event.
    pub delivery_states: Vec<Delivery>,
    /// Every activation: gate decisions or delivery attempts.
    pub activations: Vec<Activation>,
}

impl Events {
    /// The service; `max_depth` bounds chains of events causing events.
    pub fn new(db: Db, callbacks: Callbacks, gate: Gate, max_depth: usize) -> Self {
        Events {
            db,
            callbacks,
            gate,
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
            return Ok(replay(existing));
        }

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
            status: 0,
            answer: Value::Null,
            decisions: Vec::new(),
            deliveries: Vec::new(),
        };
        match record.event.phase {
            Phase::Before => {
                let outcome = self.gate.run(&record.event, &causation, &callbacks).await;
                record.status = 200;
                record.answer = json!({
                    "event_id": record.event.id,
                    "allowed": outcome.allowed,
                    "decisions": outcome.decisions,
                });
                record.decisions = outcome.decisions;
                if let Some(existing) = self
                    .insert(record.clone(), Vec::new(), outcome.activations)
                    .await?
                {
                    return Ok(replay(existing));
                }
                for decision in &record.decisions {
                    self.callbacks
                        .touch(
                            &decision.callback_id,
                            record.event.timestamp_ms,
                            &decision.verdict,
                        )
                        .await?;
                }
            }
            Phase::After => {
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
                        next_attempt_at: Some(now),
                        created_at: now,
                        updated_at: now,
                        last_error: None,
                    })
                    .collect();
                record.status = 202;
                record.answer = json!({
                    "event_id": record.event.id,
                    "deliveries": deliveries.iter()
                        .map(|d| json!({"id": d.id, "callback_id": d.callback_id}))
                        .collect::<Vec<_>>(),
                });
                record.deliveries = deliveries.iter().map(|d| d.id.clone()).collect();
                if let Some(existing) = self.insert(record.clone(), deliveries, Vec::new()).await? {
                    return Ok(replay(existing));
                }
                // Accepted means stored: nothing is acknowledged before it
                // would survive a crash.
                self.db.run(|s| s.flush()).await?;
            }
        }
        Ok(Answer {
            status: record.status,
            body: record.answer,
        })
    }

    /// An event with its deliveries and activations.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<EventView> {
        let record = self
            .find(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("event", id))?;
        let (t, event_id, ids) = (
            tenant.to_string(),
            id.to_string(),
            record.deliveries.clone(),
        );
        let (delivery_states, activations) = self
            .db
            .run(move |s| {
                let deliveries = ids
                    .iter()
                    .filter_map(|d| s.delivery(&t, d).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((deliveries, s.event_activations(&t, &event_id)?))
            })
            .await?;
        Ok(EventView {
            record,
            delivery_states,
            activations,
        })
    }

    async fn find(&self, tenant: &str, id: &str) -> Result<Option<EventRecord>> {
        let (t, key) = (tenant.to_string(), id.to_string());
        Ok(self.db.run(move |s| s.event(&t, &key)).await?)
    }

    async fn insert(
        &self,
        record: EventRecord,
        deliveries: Vec<Delivery>,
        activations: Vec<Activation>,
    ) -> Result<Option<EventRecord>> {
        Ok(self
            .db
            .run(move |s| s.insert_event(&record, &deliveries, &activations))
            .await?)
    }
}

/// The original answer to a repeated event id.
fn replay(existing: EventRecord) -> Answer {
    Answer {
        status: existing.status,
        body: existing.answer,
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
