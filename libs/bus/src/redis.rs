//! The Redis bus: sharded pub/sub for change events, plain keys for the snapshot cache, one hash for the
//! environment registry. Works unchanged against a single Redis and a Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use fred::util::group_by_hash_slot;
use prost::Message as _;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vexil_proto::{ChangeEvent, EnvironmentSnapshot};

use crate::delivery::Delivery;
use crate::error::{BusError, Result};
use crate::keys;

/// Every command (including `publish`'s) fails after this long instead of waiting for Redis to come
/// back: the relay retries later and readiness checks must answer promptly.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Opening a TCP connection, and the commands fred sends on it by itself (`AUTH`, `CLUSTER SLOTS`, ...).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection with a command waiting this long for its answer is presumed dead and reconnected.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(10);
/// Reconnect backoff: 100 ms doubling up to 5 s, forever (`0` attempts = no limit), so a data plane
/// outlives any Redis outage and is back within ~5 s of Redis.
const RECONNECT_MIN_DELAY_MS: u32 = 100;
const RECONNECT_MAX_DELAY_MS: u32 = 5_000;
/// How many messages fred buffers for a subscriber before the subscriber starts missing some (fred's
/// default is 32). A subscriber that misses events sees a revision gap and re-syncs.
const MESSAGE_BUFFER: usize = 4096;
/// Backoff between attempts to re-subscribe after a reconnect.
const RESUBSCRIBE_MIN_DELAY: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(5);

/// Publishes events on one sharded channel, in order, in one round trip. KEYS: the channel (declared
/// so that a cluster routes the script to the channel's node). ARGV: the encoded events.
const PUBLISH_IN_ORDER: &str = r"
for i = 1, #ARGV do
  redis.call('SPUBLISH', KEYS[1], ARGV[i])
end
";
/// Events per `PUBLISH_IN_ORDER` call: a script blocks its node while it runs, and a batch after a long
/// outage can hold thousands.
const EVENTS_PER_SCRIPT: usize = 500;

/// Stores the snapshot only if it is newer than the cached one. KEYS: revision key, snapshot key.
/// ARGV: revision (decimal), encoded snapshot. Returns 1 if stored, 0 if the cached one is as new.
/// Revisions are compared as decimal strings (length, then bytes) because Lua numbers are doubles and
/// would round a u64 above 2^53.
const STORE_SNAPSHOT_IF_NEWER: &str = r"
local current = redis.call('GET', KEYS[1])
if current and (#current > #ARGV[1] or (#current == #ARGV[1] and current >= ARGV[1])) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
";

/// Records an environment's revision in the registry unless a newer one is there. KEYS: registry.
/// ARGV: environment id, revision (decimal). Returns 1 if recorded.
const RECORD_REVISION_IF_NEWER: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and (#current > #ARGV[2] or (#current == #ARGV[2] and current >= ARGV[2])) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// A bus over Redis or a Redis Cluster (see the crate docs for key names). Clones share one connection
/// (one per node in a cluster); each [`Subscription`](crate::Subscription) has its own.
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    /// Kept to build one subscriber client per subscription with the same settings.
    builder: Arc<Builder>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the builder: its config holds the password.
        f.debug_struct("RedisBus").field("client", &self.client.id()).finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to `redis://...` (one server) or `redis-cluster://...` (any node of a cluster; the
    /// others are discovered). Fails if Redis cannot be reached now; once connected, the bus reconnects
    /// by itself for ever.
    pub async fn connect(url: &str) -> Result<RedisBus> {
        let config = Config::from_url(url).map_err(BusError::InvalidUrl)?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|connection| {
                connection.connection_timeout = CONNECTION_TIMEOUT;
                connection.internal_command_timeout = CONNECTION_TIMEOUT;
                connection.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(UNRESPONSIVE_AFTER),
                    interval: Duration::from_secs(1),
                };
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = COMMAND_TIMEOUT;
                performance.broadcast_channel_capacity = MESSAGE_BUFFER;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_DELAY_MS,
                RECONNECT_MAX_DELAY_MS,
                2,
            ));

        let client = builder.build().map_err(BusError::InvalidUrl)?;
        client.init().await.map_err(BusError::redis("connect"))?;
        Ok(RedisBus { client, builder: Arc::new(builder) })
    }

    pub(crate) async fn publish(&self, events: &[ChangeEvent], snapshot: &EnvironmentSnapshot) -> Result<()> {
        let environment_id = snapshot.environment_id;
        // Each step is one command, never a fred pipeline, and fails fast while disconnected. fred
        // 10.1 forgets to mark a timed-out pipeline as abandoned and keeps commands queued while it
        // reconnects, so a publish that had already returned an error was sent after Redis came back:
        // every retry the relay made during an outage was replayed on recovery, as stale duplicates,
        // from a buffer that grew with the outage. A single command that times out is dropped.
        let client = self.client.with_options(&Options { fail_fast: true, ..Options::default() });
        let channel = keys::channel(environment_id);
        for chunk in events.chunks(EVENTS_PER_SCRIPT) {
            let encoded: Vec<Value> =
                chunk.iter().map(|event| Value::Bytes(event.encode_to_vec().into())).collect();
            let () = client
                .eval(PUBLISH_IN_ORDER, vec![channel.as_str()], encoded)
                .await
                .map_err(BusError::redis("publish change events"))?;
        }

        let revision = snapshot.revision.to_string();
        let stored: i64 = client
            .eval(
                STORE_SNAPSHOT_IF_NEWER,
                vec![keys::revision(environment_id), keys::snapshot(environment_id)],
                vec![Value::from(revision.as_str()), Value::Bytes(snapshot.encode_to_vec().into())],
            )
            .await
            .map_err(BusError::redis("store snapshot"))?;
        if stored == 0 {
            tracing::debug!(environment_id, revision = snapshot.revision, "kept the newer cached snapshot");
        }

        let _: i64 = client
            .eval(RECORD_REVISION_IF_NEWER, keys::REGISTRY, vec![environment_id.to_string(), revision])
            .await
            .map_err(BusError::redis("record revision in the registry"))?;
        Ok(())
    }

    pub(crate) async fn snapshot(&self, environment_id: i64) -> Result<Option<EnvironmentSnapshot>> {
        let bytes: Option<Vec<u8>> = self
            .client
            .get(keys::snapshot(environment_id))
            .await
            .map_err(BusError::redis("read snapshot"))?;
        bytes
            .map(|bytes| {
                EnvironmentSnapshot::decode(bytes.as_slice())
                    .map_err(|source| BusError::Decode { what: "EnvironmentSnapshot", source })
            })
            .transpose()
    }

    pub(crate) async fn environments(&self) -> Result<Vec<(i64, u64)>> {
        let entries: Vec<(String, String)> = self
            .client
            .hgetall::<std::collections::HashMap<String, String>, _>(keys::REGISTRY)
            .await
            .map_err(BusError::redis("read the environment registry"))?
            .into_iter()
            .collect();
        let mut environments = entries
            .into_iter()
            .map(|(field, value)| {
                let parsed =
                    field.parse::<i64>().and_then(|id| value.parse::<u64>().map(|revision| (id, revision)));
                parsed.map_err(|source| BusError::MalformedRegistry { field, value, source })
            })
            .collect::<Result<Vec<_>>>()?;
        environments.sort_unstable();
        Ok(environments)
    }

    pub(crate) async fn append_events(
        &self,
        environment_id: i64,
        events: &[Vec<u8>],
        max_len: u64,
    ) -> Result<()> {
        // fail_fast, as in `publish`: a command that times out while Redis is away is dropped, never
        // replayed later. The commands are sent back to back on one connection (one slot, one node),
        // so they cost about one round trip and are appended in order.
        let client = self.client.with_options(&Options { fail_fast: true, ..Options::default() });
        let key = keys::events(environment_id);
        let cap = i64::try_from(max_len).unwrap_or(i64::MAX);
        let appends = events.iter().map(|event| {
            client.xadd::<Value, _, _, _, _>(
                key.as_str(),
                false,
                ("MAXLEN", "~", cap, None),
                "*",
                vec![("event", Value::Bytes(event.clone().into()))],
            )
        });
        futures::future::try_join_all(appends).await.map_err(BusError::redis("append events"))?;
        Ok(())
    }

    pub(crate) async fn recent_events(&self, environment_id: i64, limit: usize) -> Result<Vec<Vec<u8>>> {
        let count = u64::try_from(limit).unwrap_or(u64::MAX);
        let newest_first: Vec<(String, std::collections::HashMap<String, Vec<u8>>)> = self
            .client
            .xrevrange_values(keys::events(environment_id), "+", "-", Some(count))
            .await
            .map_err(BusError::redis("read events"))?;
        Ok(newest_first.into_iter().rev().filter_map(|(_, mut fields)| fields.remove("event")).collect())
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        self.client.ping::<()>(None).await.map_err(BusError::redis("ping"))
    }

    pub(crate) async fn subscribe(&self, environment_ids: &[i64]) -> Result<RedisSubscription> {
        let client = self.builder.build_subscriber_client().map_err(BusError::InvalidUrl)?;
        client.init().await.map_err(BusError::redis("connect subscriber"))?;
        // Taken before the first SSUBSCRIBE so that no message can slip past.
        let messages = client.message_rx();
        let (resubscribed_tx, resubscribed) = watch::channel(0);
        let resubscriber = tokio::spawn(resubscribe_after_reconnects(
            client.clone(),
            client.reconnect_rx(),
            resubscribed_tx,
        ));
        let mut subscription =
            RedisSubscription { client, messages, resubscribed: Some(resubscribed), resubscriber };
        subscription.add(environment_ids).await?;
        Ok(subscription)
    }
}

/// Re-issues `SSUBSCRIBE` for every tracked channel after each reconnect, retrying with backoff until it
/// succeeds (a restarted node may answer `LOADING`, a cluster `CLUSTERDOWN`, for a while), and counts
/// each success on `resubscribed`.
///
/// fred's own `SubscriberClient::manage_subscriptions` is not used. In fred 10.1 its `resubscribe_all`
/// first sends `SUBSCRIBE` and `PSUBSCRIBE` even when only sharded channels are tracked; on a fresh
/// connection Redis rejects the empty `SUBSCRIBE`, fred hands that error to the first `SSUBSCRIBE`, and
/// `resubscribe_all` returns early, so channels in every other hash slot stay unsubscribed (seen in
/// `tests/bus/redis.rs`' restart test with two environments). It also never retries a failed attempt
/// and stops for good if it lags behind the reconnect notifications.
async fn resubscribe_after_reconnects(
    client: SubscriberClient,
    mut reconnects: broadcast::Receiver<Server>,
    resubscribed: watch::Sender<u64>,
) {
    loop {
        match reconnects.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        let mut delay = RESUBSCRIBE_MIN_DELAY;
        while let Err(error) = resubscribe(&client).await {
            tracing::warn!(error = %error, retry_in = ?delay, "could not re-subscribe to change events after reconnecting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // A newer reconnect starts the attempts afresh.
                next = reconnects.recv() => if matches!(next, Err(RecvError::Closed)) { return },
            }
            delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
        }
        tracing::info!(channels = client.tracked_shard_channels().len(), "re-subscribed to change events");
        resubscribed.send_modify(|count| *count += 1);
    }
}

async fn resubscribe(client: &SubscriberClient) -> Result<(), fred::error::Error> {
    ssubscribe_by_slot(client, client.tracked_shard_channels().into_iter().map(|channel| channel.to_string()))
        .await
}

/// `SSUBSCRIBE` needs all its channels in one slot: one command per slot.
async fn ssubscribe_by_slot(
    client: &SubscriberClient,
    channels: impl IntoIterator<Item = String>,
) -> Result<(), fred::error::Error> {
    for (_, channels) in group_by_hash_slot(channels)? {
        client.ssubscribe(Vec::from(channels)).await?;
    }
    Ok(())
}

/// A subscription over Redis: its own subscriber client (one connection per node).
pub(crate) struct RedisSubscription {
    client: SubscriberClient,
    messages: broadcast::Receiver<fred::types::Message>,
    /// Changes after each completed re-subscription; `None` once the re-subscriber has ended.
    resubscribed: Option<watch::Receiver<u64>>,
    resubscriber: JoinHandle<()>,
}

impl RedisSubscription {
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        loop {
            let received = match self.resubscribed.as_mut() {
                Some(resubscribed) => tokio::select! {
                    // Messages first: those received before the notice were sent before it.
                    biased;
                    received = self.messages.recv() => received,
                    changed = resubscribed.changed() => {
                        match changed {
                            Ok(()) => return Some(Delivery::Resubscribed),
                            Err(_) => self.resubscribed = None,
                        }
                        continue;
                    }
                },
                None => self.messages.recv().await,
            };
            match received {
                Ok(message) => {
                    let Some(bytes) = message.value.as_bytes() else {
                        tracing::warn!(channel = %message.channel, "ignoring a non-binary message on the change channel");
                        continue;
                    };
                    match ChangeEvent::decode(bytes) {
                        Ok(event) => return Some(Delivery::Change(event)),
                        Err(error) => {
                            tracing::warn!(channel = %message.channel, error = %error, "ignoring an undecodable change event");
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "subscriber fell behind Redis; it will see a revision gap");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    pub(crate) async fn add(&mut self, environment_ids: &[i64]) -> Result<()> {
        ssubscribe_by_slot(&self.client, environment_ids.iter().map(|id| keys::channel(*id)))
            .await
            .map_err(BusError::redis("subscribe to change events"))
    }
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        self.resubscriber.abort();
        // Without QUIT the client's connection task would run (and reconnect) for ever.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

impl std::fmt::Debug for RedisSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSubscription")
            .field("channels", &self.client.tracked_shard_channels())
            .finish_non_exhaustive()
    }
}
