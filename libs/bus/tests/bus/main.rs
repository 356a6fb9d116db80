//! vexil-bus against real Redis (a private server, a 3-master cluster) and in process.
//!
//! The behavioural checks live in `behaviour.rs` and run against every implementation; `redis.rs` has
//! what only Redis can do (go down, restart, spread over a cluster).

mod behaviour;
mod redis;

use vexil_bus::Bus;
use vexil_testkit::{RedisCluster, RedisServer};

/// A bus and whatever must stay alive while it is used (a Redis process).
trait Fixture {
    type Guard;
    async fn start() -> (Bus, Self::Guard);
}

struct InProcess;
impl Fixture for InProcess {
    type Guard = ();
    async fn start() -> (Bus, ()) {
        (Bus::connect("memory://").await.expect("memory:// bus"), ())
    }
}

struct SingleRedis;
impl Fixture for SingleRedis {
    type Guard = RedisServer;
    async fn start() -> (Bus, RedisServer) {
        let server = RedisServer::start();
        let bus = Bus::connect(&server.url()).await.expect("connect to Redis");
        assert!(matches!(bus, Bus::Redis(_)));
        (bus, server)
    }
}

struct ClusterRedis;
impl Fixture for ClusterRedis {
    type Guard = RedisCluster;
    async fn start() -> (Bus, RedisCluster) {
        let cluster = RedisCluster::start(3);
        let bus = Bus::connect(&cluster.url()).await.expect("connect to the Redis Cluster");
        (bus, cluster)
    }
}

/// One test running `behaviour::$check` against a fresh bus of `$fixture`.
macro_rules! check {
    ($fixture:ty, $check:ident $(, $arg:expr)*) => {
        #[tokio::test]
        async fn $check() {
            let (bus, _guard) = <$fixture as crate::Fixture>::start().await;
            crate::behaviour::$check(&bus $(, $arg)*).await;
        }
    };
}

/// Every behavioural check, for one implementation.
macro_rules! behaviour_tests {
    ($module:ident, $fixture:ty) => {
        mod $module {
            check!($fixture, subscribers_receive_published_events_in_order);
            check!($fixture, every_subscriber_receives_every_event);
            check!($fixture, a_subscriber_receives_only_its_environments_and_those_it_adds);
            check!(
                $fixture,
                events_of_several_environments_keep_their_order_per_environment,
                &[1, 2, 3, 4, 5, 6]
            );
            check!($fixture, the_published_snapshot_is_cached);
            check!($fixture, an_older_snapshot_never_overwrites_a_newer_one);
            check!($fixture, revisions_compare_exactly_beyond_the_precision_of_a_double);
            check!($fixture, the_registry_lists_every_environment_with_its_latest_revision);
            check!($fixture, an_inconsistent_batch_is_refused_and_nothing_is_published);
            check!($fixture, the_bus_answers_a_ping);
            check!($fixture, appended_events_are_read_back_in_order_per_environment);
        }
    };
}

behaviour_tests!(in_process, crate::InProcess);
behaviour_tests!(single_redis, crate::SingleRedis);
behaviour_tests!(redis_cluster, crate::ClusterRedis);

mod in_process_events_cap {
    check!(crate::InProcess, the_events_stream_is_capped_near_its_max_len, true);
}

mod single_redis_events_cap {
    check!(crate::SingleRedis, the_events_stream_is_capped_near_its_max_len, false);
}
