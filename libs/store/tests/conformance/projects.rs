use vexil_keys::KeyKind;
use vexil_store::{Store, StoreError};

use crate::conformance;
use crate::helpers::*;

conformance!(
    a_new_project_gets_two_environments_with_keys,
    a_duplicate_project_is_refused,
    rotating_keys_expires_the_old_ones_after_the_overlap,
    deleting_a_project_removes_everything
);

async fn a_new_project_gets_two_environments_with_keys(store: Store) {
    let (project_record, keys) =
        store.create_project(&actor(), &project(), "Shop", "all of it").await.unwrap();
    assert_eq!(project_record.name, "Shop");
    let envs = store.list_environments(&project()).await.unwrap();
    assert_eq!(envs.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["development", "production"]);
    // Two keys per environment, each announced by a change event: revision 2.
    assert!(envs.iter().all(|e| e.revision == 2), "{envs:?}");
    assert_eq!(keys.len(), 2);
    assert!(keys[0].server.starts_with("vxs_") && keys[0].client.starts_with("vxc_"));
    let listed = store.list_keys(&project(), &env("development")).await.unwrap();
    assert_eq!(listed.len(), 2);
    let server = listed.iter().find(|k| k.kind == KeyKind::Server).unwrap();
    assert_eq!(vexil_keys::id_of(vexil_keys::SecretKind::Server, &keys[0].server), Some(server.id.as_str()));
    assert!(!server.prefix.contains(&keys[0].server[20..]), "a listing must not reveal the secret");
}

async fn a_duplicate_project_is_refused(store: Store) {
    store.create_project(&actor(), &project(), "", "").await.unwrap();
    let err = store.create_project(&actor(), &project(), "", "").await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { resource: "project", .. }), "{err:?}");
    assert_eq!(store.list_projects().await.unwrap().len(), 1);
}

async fn rotating_keys_expires_the_old_ones_after_the_overlap(store: Store) {
    store.create_project(&actor(), &project(), "", "").await.unwrap();
    let before = store.get_environment(&project(), &env("production")).await.unwrap().revision;
    let new =
        store.rotate_keys(&actor(), &project(), &env("production"), time::Duration::hours(1)).await.unwrap();
    let keys = store.list_keys(&project(), &env("production")).await.unwrap();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys.iter().filter(|k| k.expires_at.is_some()).count(), 2, "old keys expire");
    assert!(
        keys.iter()
            .any(|k| vexil_keys::id_of(vexil_keys::SecretKind::Server, &new.server) == Some(k.id.as_str()))
    );
    // Two expiring keys and two new keys: four events.
    assert_eq!(store.get_environment(&project(), &env("production")).await.unwrap().revision, before + 4);
    // With no overlap, the previous keys are gone at the next rotation.
    store.rotate_keys(&actor(), &project(), &env("production"), time::Duration::ZERO).await.unwrap();
    let revision = store.get_environment(&project(), &env("production")).await.unwrap().revision;
    store.rotate_keys(&actor(), &project(), &env("production"), time::Duration::ZERO).await.unwrap();
    assert_eq!(store.list_keys(&project(), &env("production")).await.unwrap().len(), 4);
    // The previous zero-overlap rotation expired all four older keys at once (cutting short the
    // first rotation's window); this one purges them, announced as 4 deletes, then 2 expiries, 2 new.
    assert_eq!(store.get_environment(&project(), &env("production")).await.unwrap().revision, revision + 8);
    let pending = store.pending_changes(100).await.unwrap();
    let production = pending.iter().find(|p| p.snapshot.environment == "production").unwrap();
    let deletes = production
        .events
        .iter()
        .filter(|e| e.kind() == vexil_proto::ChangeKind::Delete && e.item() == vexil_proto::ItemKind::SdkKey)
        .count();
    assert_eq!(deletes, 4);
}

async fn deleting_a_project_removes_everything(store: Store) {
    with_flag(&store).await;
    store.delete_project(&actor(), &project()).await.unwrap();
    assert!(matches!(store.get_project(&project()).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.get_flag(&project(), &flag_key("checkout")).await,
        Err(StoreError::NotFound { .. })
    ));
    // The environments' final events wait for the relay.
    let pending = store.pending_changes(100).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|p| p.events.last().unwrap().item() == vexil_proto::ItemKind::Environment));
}
