use vexil_model::Snapshot;
use vexil_proto::{ChangeKind, ItemKind};
use vexil_store::Store;

use crate::conformance;
use crate::helpers::*;

conformance!(
    changes_wait_in_revision_order_until_marked_sent,
    the_relay_snapshot_is_the_environment_now,
    pruning_deletes_only_delivered_changes_sent_before_the_cutoff
);

async fn changes_wait_in_revision_order_until_marked_sent(store: Store) {
    with_flag(&store).await;
    for on in [true, false, true] {
        store.toggle_flag(&actor(), &project(), &flag_key("checkout"), &env("production"), on).await.unwrap();
    }
    let pending = store.pending_changes(100).await.unwrap();
    assert_eq!(pending.len(), 2, "one batch per environment");
    let production = pending.iter().find(|p| p.snapshot.environment == "production").unwrap();
    let revisions: Vec<u64> = production.events.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, (1..=6).collect::<Vec<_>>(), "2 keys, flag created, 3 toggles");
    let last = production.events.last().unwrap();
    assert_eq!(
        (last.kind(), last.item(), last.key.as_str()),
        (ChangeKind::Upsert, ItemKind::Flag, "checkout")
    );
    let payload: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
    assert_eq!(payload["config"]["on"], true);
    assert!(last.committed_at_ms > 0);

    store.mark_sent(production.environment_id, 4).await.unwrap();
    let again = store.pending_changes(100).await.unwrap();
    let production = again.iter().find(|p| p.snapshot.environment == "production").unwrap();
    assert_eq!(production.events.iter().map(|e| e.revision).collect::<Vec<_>>(), [5, 6]);
}

async fn the_relay_snapshot_is_the_environment_now(store: Store) {
    with_flag(&store).await;
    store.toggle_flag(&actor(), &project(), &flag_key("checkout"), &env("production"), true).await.unwrap();
    let pending = store.pending_changes(100).await.unwrap();
    let production = pending.iter().find(|p| p.snapshot.environment == "production").unwrap();
    let snapshot: Snapshot = serde_json::from_slice(&production.snapshot.snapshot_json).unwrap();
    assert_eq!(snapshot.revision, production.snapshot.revision);
    assert_eq!(snapshot.revision, production.events.last().unwrap().revision);
    assert!(snapshot.flags[0].config().on);
    assert_eq!(production.snapshot.keys.len(), 2);
    vexil_eval::compile(snapshot).expect("what the relay publishes always compiles");
    let direct = store.environment_snapshot(production.environment_id).await.unwrap();
    assert_eq!(direct.snapshot_json, production.snapshot.snapshot_json);
}

async fn pruning_deletes_only_delivered_changes_sent_before_the_cutoff(store: Store) {
    with_flag(&store).await;
    store.toggle_flag(&actor(), &project(), &flag_key("checkout"), &env("production"), true).await.unwrap();
    let pending = store.pending_changes(100).await.unwrap();
    let production = pending.iter().find(|p| p.snapshot.environment == "production").unwrap();
    let unsent_before = store.unsent_count().await.unwrap();
    store.mark_sent(production.environment_id, 3).await.unwrap();
    let unsent = store.unsent_count().await.unwrap();
    assert_eq!(unsent, unsent_before - 3);

    let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert_eq!(store.prune_sent_changes(an_hour_ago).await.unwrap(), 0, "sent just now: kept");
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert_eq!(store.prune_sent_changes(in_an_hour).await.unwrap(), 3, "the three delivered rows");
    assert_eq!(store.unsent_count().await.unwrap(), unsent, "unsent rows are never pruned");
    let again = store.pending_changes(100).await.unwrap();
    let production = again.iter().find(|p| p.snapshot.environment == "production").unwrap();
    assert_eq!(production.events.first().map(|e| e.revision), Some(4));
}
