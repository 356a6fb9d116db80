//! What only the Redis bus does: fail fast while Redis is down, survive a restart, spread environments
//! over a cluster.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::util::redis_keyslot;
use vexil_bus::{Bus, BusError, Delivery};
use vexil_testkit::{RedisCluster, RedisServer, eventually};

use crate::behaviour::{self, event, next_event, publish_batch};

/// `publish` must give up about this fast (the bus's command timeout is 2 s; the margin is for a busy
/// machine).
const FAIL_FAST_LIMIT: Duration = Duration::from_secs(5);
/// Redis restarts and reconnects within this.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

/// A plain fred client for looking at Redis from the outside.
async fn observer(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).unwrap()).build().unwrap();
    client.init().await.unwrap();
    client
}

/// How many subscribers Redis has on a shard channel.
async fn shard_subscribers(client: &Client, channel: &str) -> i64 {
    let reply: Vec<Value> = client.pubsub_shardnumsub(channel).await.unwrap_or_default();
    reply.get(1).and_then(Value::as_i64).unwrap_or(0)
}

#[tokio::test]
async fn publish_fails_fast_while_redis_is_down() {
    let mut server = RedisServer::start();
    let bus = Bus::connect(&server.url()).await.unwrap();
    publish_batch(&bus, 1, 1, 1).await;

    server.stop();

    let (events, snapshot) = behaviour::batch(1, 2, 2);
    let started = Instant::now();
    let published = bus.publish(&events, &snapshot).await;
    let took = started.elapsed();
    assert!(matches!(published, Err(BusError::Redis { .. })), "{published:?}");
    assert!(took < FAIL_FAST_LIMIT, "publish took {took:?} to fail");

    let started = Instant::now();
    assert!(bus.ping().await.is_err());
    assert!(bus.snapshot(1).await.is_err());
    assert!(
        started.elapsed() < 2 * FAIL_FAST_LIMIT,
        "ping and snapshot took {:?} to fail",
        started.elapsed()
    );
}

#[tokio::test]
async fn connecting_to_a_stopped_redis_fails_fast() {
    let mut server = RedisServer::start();
    server.stop();

    let started = Instant::now();
    let connected = Bus::connect(&server.url()).await;
    assert!(matches!(connected, Err(BusError::Redis { .. })), "{connected:?}");
    assert!(started.elapsed() < FAIL_FAST_LIMIT, "connect took {:?} to fail", started.elapsed());
}

#[tokio::test]
async fn a_subscription_keeps_delivering_after_redis_restarts() {
    let mut server = RedisServer::start();
    let bus = Bus::connect(&server.url()).await.unwrap();
    let mut subscription = bus.subscribe(&[3, 4]).await.unwrap();
    publish_batch(&bus, 3, 1, 1).await;
    assert_eq!(next_event(&mut subscription).await, event(3, 1));

    server.start_again();

    // The restarted server is empty: wait until the subscription has re-subscribed both channels by
    // itself (pub/sub keeps nothing, so an event published before that would be lost) ...
    let observer = observer(&server.url()).await;
    let resubscribed = eventually(RECOVERY_DEADLINE, || async {
        shard_subscribers(&observer, "vexil:{env:3}:changes").await == 1
            && shard_subscribers(&observer, "vexil:{env:4}:changes").await == 1
    })
    .await;
    assert!(resubscribed, "the subscription did not re-subscribe after the restart");
    // ... and until the publishing side has reconnected too.
    assert!(eventually(RECOVERY_DEADLINE, || async { bus.ping().await.is_ok() }).await);

    publish_batch(&bus, 3, 2, 3).await;
    publish_batch(&bus, 4, 1, 1).await;
    assert_eq!(next_event(&mut subscription).await, event(3, 2));
    assert_eq!(next_event(&mut subscription).await, event(3, 3));
    assert_eq!(next_event(&mut subscription).await, event(4, 1));
    assert_eq!(bus.environments().await.unwrap(), vec![(3, 3), (4, 1)]);
}

#[tokio::test]
async fn a_subscription_announces_that_it_is_back_once_it_has_re_subscribed() {
    let mut server = RedisServer::start();
    let bus = Bus::connect(&server.url()).await.unwrap();
    let mut subscription = bus.subscribe(&[5, 6]).await.unwrap();

    server.start_again();

    let delivery = tokio::time::timeout(RECOVERY_DEADLINE, subscription.next_delivery()).await;
    assert_eq!(delivery.expect("a notice after the restart"), Some(Delivery::Resubscribed));
    // The notice comes after the channels are subscribed again, not merely after the reconnect.
    let observer = observer(&server.url()).await;
    assert_eq!(shard_subscribers(&observer, "vexil:{env:5}:changes").await, 1);
    assert_eq!(shard_subscribers(&observer, "vexil:{env:6}:changes").await, 1);

    assert!(eventually(RECOVERY_DEADLINE, || async { bus.ping().await.is_ok() }).await);
    publish_batch(&bus, 6, 1, 1).await;
    let delivery = tokio::time::timeout(RECOVERY_DEADLINE, subscription.next_delivery()).await;
    assert_eq!(delivery.expect("the event"), Some(Delivery::Change(event(6, 1))));
}

#[tokio::test]
async fn a_subscription_survives_two_restarts_and_redis_being_down_for_a_while() {
    let mut server = RedisServer::start();
    let bus = Bus::connect(&server.url()).await.unwrap();
    let mut subscription = bus.subscribe(&[9]).await.unwrap();
    let observer_url = server.url();

    for round in 1..=2_u64 {
        server.stop();
        // Long enough for the reconnect backoff to grow past its first steps.
        assert!(bus.publish(&[], &behaviour::snapshot(9, round)).await.is_err());
        assert!(bus.publish(&[], &behaviour::snapshot(9, round)).await.is_err());
        server.start_again();

        let observer = observer(&observer_url).await;
        let resubscribed = eventually(RECOVERY_DEADLINE, || async {
            shard_subscribers(&observer, "vexil:{env:9}:changes").await == 1
        })
        .await;
        assert!(resubscribed, "not re-subscribed after restart {round}");
        assert!(eventually(RECOVERY_DEADLINE, || async { bus.ping().await.is_ok() }).await);

        publish_batch(&bus, 9, round, round).await;
        assert_eq!(next_event(&mut subscription).await, event(9, round));
    }
}

#[tokio::test]
async fn environments_spread_over_the_nodes_of_a_cluster() {
    let cluster = RedisCluster::start(3);
    let bus = Bus::connect(&cluster.url()).await.unwrap();
    let observer = observer(&cluster.url()).await;
    let routing = observer.cached_cluster_state().expect("the cluster's slot map");
    let node_of = |environment_id: i64| {
        let slot = redis_keyslot(format!("vexil:{{env:{environment_id}}}:changes").as_bytes());
        routing.get_server(slot).expect("every slot is served").clone()
    };
    // The first environments that land on three different nodes.
    let mut nodes = BTreeSet::new();
    let environments: Vec<i64> = (1..).filter(|id| nodes.insert(node_of(*id))).take(3).collect();
    assert_eq!(nodes.len(), 3);

    behaviour::events_of_several_environments_keep_their_order_per_environment(&bus, &environments).await;

    // Each environment's channel and snapshot live on its own node.
    for &environment_id in &environments {
        let node = node_of(environment_id);
        let snapshot_node = routing
            .get_server(redis_keyslot(format!("vexil:{{env:{environment_id}}}:snapshot").as_bytes()))
            .unwrap();
        assert_eq!(snapshot_node, &node);
    }
    let mut registered: Vec<i64> = bus.environments().await.unwrap().into_iter().map(|(id, _)| id).collect();
    registered.sort_unstable();
    let mut expected = environments.clone();
    expected.sort_unstable();
    assert_eq!(registered, expected);
}
