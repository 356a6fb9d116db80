//! Data-plane events (`POST /v1/events`): exposures of flag evaluations and custom events, validated and
//! appended to the environment's events stream for the control plane to aggregate.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use vexil_bus::{Bus, BusError};
use vexil_dataplane::EnvironmentState;
use vexil_keys::KeyKind;
use vexil_model::{Context, FieldError, FlagKey};

/// Most events in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 1_000;

/// A batch of events, as SDKs send it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Up to [`MAX_EVENTS_PER_BATCH`] events, oldest first.
    pub events: Vec<Event>,
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A flag was evaluated and its value used: `key` is the flag.
    Exposure,
    /// Something the application tracks (a conversion, a metric): `key` is the event's name.
    Custom,
}

/// One event.
///
/// ```json
/// {"kind": "exposure", "key": "new-checkout", "context": {"targetingKey": "user-1"},
///  "variation": 0, "variant": "on", "value": true, "timestamp": 1700000000000}
/// {"kind": "custom", "key": "checkout-completed", "context": {"targetingKey": "user-1"}, "value": 42.5}
/// ```
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// `exposure` or `custom`.
    pub kind: EventKind,
    /// The flag (exposure) or the event's name (custom): `[A-Za-z0-9._-]`, at most 256 bytes.
    pub key: String,
    /// Who the event is about (OpenFeature context: `targetingKey` plus attributes).
    #[schema(value_type = Object)]
    pub context: Context,
    /// Exposure only: the index of the variation served.
    #[serde(default)]
    pub variation: Option<usize>,
    /// Exposure only: the OpenFeature variant served.
    #[serde(default)]
    pub variant: Option<String>,
    /// Exposure: the value served (any JSON). Custom: a number to aggregate (a metric's value).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// When it happened, Unix milliseconds; the time it was received when absent.
    #[serde(default)]
    pub timestamp: Option<u64>,
}

impl EventBatch {
    /// Checks every event, reporting each problem with its path (`events[3].value`).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut push = |field: String, message: String| errors.push(FieldError { field, message });
        if self.events.len() > MAX_EVENTS_PER_BATCH {
            push(
                "events".into(),
                format!("at most {MAX_EVENTS_PER_BATCH} events per batch, got {}", self.events.len()),
            );
        }
        for (i, event) in self.events.iter().enumerate() {
            let at = |field: &str| format!("events[{i}].{field}");
            // Event names follow the flag-key rules: the same charset travels safely everywhere.
            if let Err(error) = FlagKey::parse(event.key.as_str()) {
                push(at("key"), error.to_string());
            }
            match event.kind {
                EventKind::Exposure => {}
                EventKind::Custom => {
                    if event.variation.is_some() {
                        push(at("variation"), "only exposures name a variation".into());
                    }
                    if event.variant.is_some() {
                        push(at("variant"), "only exposures name a variant".into());
                    }
                    if event.value.as_ref().is_some_and(|value| !value.is_number()) {
                        push(at("value"), "a custom event's value must be a number".into());
                    }
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// An event as it is stored in the events stream: the event, plus where and when it was received.
#[derive(Debug, Serialize)]
struct StoredEvent<'a> {
    kind: EventKind,
    key: &'a str,
    context: &'a Context,
    #[serde(skip_serializing_if = "Option::is_none")]
    variation: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
    timestamp: u64,
    received_at: u64,
    environment_id: i64,
    project: &'a str,
    environment: &'a str,
    sdk_key_id: &'a str,
    sdk_key_kind: &'static str,
}

/// Encodes a validated batch as the JSON documents the events stream holds, one per event.
pub fn encode(
    batch: &EventBatch,
    environment: &EnvironmentState,
    key_id: &str,
    key_kind: KeyKind,
) -> serde_json::Result<Vec<Vec<u8>>> {
    let received_at =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
    batch
        .events
        .iter()
        .map(|event| {
            serde_json::to_vec(&StoredEvent {
                kind: event.kind,
                key: &event.key,
                context: &event.context,
                variation: event.variation,
                variant: event.variant.as_deref(),
                value: event.value.as_ref(),
                timestamp: event.timestamp.unwrap_or(received_at),
                received_at,
                environment_id: environment.id(),
                project: environment.project(),
                environment: environment.environment(),
                sdk_key_id: key_id,
                sdk_key_kind: key_kind.as_str(),
            })
        })
        .collect()
}

/// Where events go: the bus's per-environment events stream (`vexil:{env:<id>}:events` on Redis, a
/// ring in process), capped at `events_stream_max_len`.
#[derive(Debug, Clone)]
pub struct EventSink {
    bus: Bus,
    max_len: u64,
}

impl EventSink {
    /// A sink appending to `bus`, keeping about the newest `max_len` events per environment.
    pub fn new(bus: Bus, max_len: u64) -> EventSink {
        EventSink { bus, max_len }
    }

    /// Appends encoded events to an environment's stream, in order.
    pub async fn append(&self, environment_id: i64, events: &[Vec<u8>]) -> Result<(), BusError> {
        self.bus.append_events(environment_id, events, self.max_len).await
    }

    /// The bus events go to (tests read them back with `Bus::recent_events`).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn batch(events: Value) -> Result<EventBatch, serde_json::Error> {
        serde_json::from_value(json!({ "events": events }))
    }

    #[test]
    fn exposures_and_custom_events_are_accepted() {
        let batch = batch(json!([
            {"kind": "exposure", "key": "new-checkout", "context": {"targetingKey": "u"}, "variation": 1,
             "variant": "off", "value": false, "timestamp": 1_700_000_000_000_u64},
            {"kind": "custom", "key": "checkout-completed", "context": {}, "value": 3.5}
        ]))
        .unwrap();
        assert!(batch.validate().is_ok());
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let batch = batch(json!([
            {"kind": "custom", "key": "bad key", "context": {}, "value": "x", "variation": 0},
        ]))
        .unwrap();
        let errors = batch.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["events[0].key", "events[0].variation", "events[0].value"]);
    }

    #[test]
    fn a_batch_over_the_limit_is_refused() {
        let one = json!({"kind": "custom", "key": "k", "context": {}});
        let batch = batch(Value::Array(vec![one; MAX_EVENTS_PER_BATCH + 1])).unwrap();
        assert_eq!(batch.validate().unwrap_err()[0].field, "events");
    }

    #[test]
    fn unknown_kinds_and_fields_do_not_parse() {
        assert!(batch(json!([{"kind": "click", "key": "k", "context": {}}])).is_err());
        assert!(batch(json!([{"kind": "custom", "key": "k", "context": {}, "extra": 1}])).is_err());
        assert!(batch(json!([{"kind": "custom", "key": "k"}])).is_err(), "the context is required");
        assert!(batch(json!([{"kind": "custom", "key": "k", "context": {}, "timestamp": -1}])).is_err());
    }
}
