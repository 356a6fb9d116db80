//! Events (`track`, and exposures when enabled): a bounded queue that never blocks the caller, and a
//! background task that sends batches to `POST /v1/events`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vexil_model::Context;
use vexil_telemetry::ErrorChain;

use crate::backoff::Backoff;

/// Most events in one request (the data plane takes up to 1 000).
pub(crate) const MAX_BATCH_EVENTS: usize = 500;
/// Most bytes of one request body: under the data plane's default 64 KiB limit
/// (`dataplane.max_body_bytes`), with room for the envelope.
pub(crate) const MAX_BATCH_BYTES: usize = 60 * 1024;
/// How many times a batch is sent before it is given up (and counted as dropped).
const ATTEMPTS: u32 = 3;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventKind {
    Exposure,
    Custom,
}

/// One event, as `POST /v1/events` takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    pub(crate) key: String,
    pub(crate) context: Context,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variation: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<Value>,
    pub(crate) timestamp: u64,
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

/// The producer side, held by the client.
#[derive(Debug)]
pub(crate) struct EventQueue {
    sender: Option<mpsc::Sender<Message>>,
    dropped: Arc<AtomicU64>,
}

pub(crate) enum Message {
    Event(Box<Event>),
    /// Send everything queued so far, then answer.
    Flush(oneshot::Sender<()>),
}

impl EventQueue {
    /// A queue that holds at most `capacity` events not yet taken by the sender task; `None` for a
    /// queue that drops everything (offline mode).
    pub(crate) fn new(capacity: usize, dropped: Arc<AtomicU64>) -> (EventQueue, mpsc::Receiver<Message>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (EventQueue { sender: Some(sender), dropped }, receiver)
    }

    /// A queue that drops (and counts) everything: offline mode sends nothing.
    pub(crate) fn disabled(dropped: Arc<AtomicU64>) -> EventQueue {
        EventQueue { sender: None, dropped }
    }

    /// Queues an event, or drops and counts it when the queue is full or closed. Never waits.
    pub(crate) fn push(&self, event: Event) {
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|sender| sender.try_send(Message::Event(Box::new(event))).is_ok());
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the sender task to send what is queued; resolves when it has (or cannot).
    pub(crate) async fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (done, wait) = oneshot::channel();
        if sender.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Encoded events cut into request bodies of at most [`MAX_BATCH_EVENTS`] events and
/// [`MAX_BATCH_BYTES`] bytes, in order. An event too large for any body is returned apart.
pub(crate) fn batches(events: &[Vec<u8>]) -> (Vec<(usize, Vec<u8>)>, usize) {
    const OPEN: &[u8] = b"{\"events\":[";
    const CLOSE: &[u8] = b"]}";
    let mut bodies = Vec::new();
    let mut too_large = 0;
    let mut body = Vec::new();
    let mut count = 0;
    for event in events {
        if OPEN.len() + event.len() + CLOSE.len() > MAX_BATCH_BYTES {
            too_large += 1;
            continue;
        }
        if count > 0
            && (count == MAX_BATCH_EVENTS || body.len() + 1 + event.len() + CLOSE.len() > MAX_BATCH_BYTES)
        {
            body.extend_from_slice(CLOSE);
            bodies.push((count, std::mem::take(&mut body)));
            count = 0;
        }
        if count == 0 {
            body.extend_from_slice(OPEN);
        } else {
            body.push(b',');
        }
        body.extend_from_slice(event);
        count += 1;
    }
    if count > 0 {
        body.extend_from_slice(CLOSE);
        bodies.push((count, body));
    }
    (bodies, too_large)
}

/// The sender task: collects events and sends them every `flush_interval`, when a batch is full, on
/// [`EventQueue::flush`], and once more when `shutdown` is raised (after taking what is still queued).
pub(crate) struct EventSender {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) server_key: String,
    pub(crate) flush_interval: Duration,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl EventSender {
    pub(crate) async fn run(self, mut receiver: mpsc::Receiver<Message>, shutdown: CancellationToken) {
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut tick = tokio::time::interval(self.flush_interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                message = receiver.recv() => match message {
                    Some(Message::Event(event)) => {
                        self.encode(&event, &mut pending);
                        if pending.len() >= MAX_BATCH_EVENTS {
                            self.send(std::mem::take(&mut pending), ATTEMPTS).await;
                        }
                    }
                    Some(Message::Flush(done)) => {
                        self.send(std::mem::take(&mut pending), ATTEMPTS).await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = tick.tick() => self.send(std::mem::take(&mut pending), ATTEMPTS).await,
            }
        }
        // Closing: take what is queued, and send it once (close() bounds how long this may take).
        receiver.close();
        let mut waiting = Vec::new();
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Event(event) => self.encode(&event, &mut pending),
                Message::Flush(done) => waiting.push(done),
            }
        }
        self.send(pending, 1).await;
        for done in waiting {
            let _ = done.send(());
        }
    }

    fn encode(&self, event: &Event, pending: &mut Vec<Vec<u8>>) {
        match serde_json::to_vec(event) {
            Ok(bytes) => pending.push(bytes),
            Err(error) => {
                tracing::warn!(error = %error, "cannot encode an event; dropping it");
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn send(&self, events: Vec<Vec<u8>>, attempts: u32) {
        if events.is_empty() {
            return;
        }
        let (bodies, too_large) = batches(&events);
        if too_large > 0 {
            tracing::warn!(events = too_large, "events larger than a request body; dropping them");
            self.dropped.fetch_add(too_large as u64, Ordering::Relaxed);
        }
        for (count, body) in bodies {
            if !self.post(body, attempts).await {
                self.dropped.fetch_add(count as u64, Ordering::Relaxed);
            }
        }
    }

    /// Sends one body; retries server errors, rate limiting and network failures with backoff; whether it
    /// was accepted.
    async fn post(&self, body: Vec<u8>, attempts: u32) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        for attempt in 1..=attempts {
            let request = self
                .http
                .post(&self.url)
                .bearer_auth(&self.server_key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let retry = match request.send().await {
                Ok(response) if response.status().is_success() => return true,
                Ok(response) => {
                    let status = response.status();
                    let retry = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                    tracing::warn!(%status, attempt, "the data plane refused a batch of events");
                    retry
                }
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), attempt, "cannot send a batch of events");
                    true
                }
            };
            if !retry {
                return false;
            }
            if attempt < attempts {
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8]) -> Vec<serde_json::Value> {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        value["events"].as_array().unwrap().clone()
    }

    #[test]
    fn an_event_is_encoded_as_the_data_plane_reads_it() {
        let event = Event {
            kind: EventKind::Exposure,
            key: "new-checkout".into(),
            context: Context::new("user-1").with("country", "DE"),
            variation: Some(0),
            variant: Some("on".into()),
            value: Some(serde_json::json!(true)),
            timestamp: 1_700_000_000_000,
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"kind": "exposure", "key": "new-checkout",
                "context": {"targetingKey": "user-1", "country": "DE"},
                "variation": 0, "variant": "on", "value": true, "timestamp": 1_700_000_000_000_u64})
        );
        let custom = Event { kind: EventKind::Custom, variation: None, variant: None, value: None, ..event };
        assert_eq!(
            serde_json::to_value(&custom).unwrap(),
            serde_json::json!({"kind": "custom", "key": "new-checkout",
                "context": {"targetingKey": "user-1", "country": "DE"}, "timestamp": 1_700_000_000_000_u64})
        );
    }

    #[test]
    fn events_are_cut_into_bodies_by_count_and_by_size_in_order() {
        let small: Vec<Vec<u8>> = (0..1_200).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let (bodies, too_large) = batches(&small);
        assert_eq!(too_large, 0);
        let counts: Vec<usize> = bodies.iter().map(|(count, _)| *count).collect();
        assert_eq!(counts, [500, 500, 200]);
        let all: Vec<i64> =
            bodies.iter().flat_map(|(_, body)| parse(body)).map(|e| e["n"].as_i64().unwrap()).collect();
        assert_eq!(all, (0..1_200).collect::<Vec<_>>());

        let padding = "x".repeat(20 * 1024);
        let large: Vec<Vec<u8>> =
            (0..5).map(|i| format!("{{\"n\":{i},\"p\":\"{padding}\"}}").into_bytes()).collect();
        let (bodies, _) = batches(&large);
        assert!(bodies.iter().all(|(_, body)| body.len() <= MAX_BATCH_BYTES));
        assert_eq!(bodies.iter().map(|(count, _)| count).sum::<usize>(), 5);
        assert!(bodies.len() >= 2);
    }

    #[test]
    fn an_event_larger_than_any_body_is_set_apart() {
        let huge = format!("{{\"p\":\"{}\"}}", "x".repeat(MAX_BATCH_BYTES)).into_bytes();
        let (bodies, too_large) = batches(&[b"{}".to_vec(), huge, b"{}".to_vec()]);
        assert_eq!(too_large, 1);
        assert_eq!(bodies.len(), 1);
        assert_eq!(parse(&bodies[0].1).len(), 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (queue, _receiver) = EventQueue::new(2, dropped.clone());
        let event = Event {
            kind: EventKind::Custom,
            key: "k".into(),
            context: Context::anonymous(),
            variation: None,
            variant: None,
            value: None,
            timestamp: 0,
        };
        for _ in 0..5 {
            queue.push(event.clone());
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        EventQueue::disabled(dropped.clone()).push(event);
        assert_eq!(dropped.load(Ordering::Relaxed), 4);
    }
}
