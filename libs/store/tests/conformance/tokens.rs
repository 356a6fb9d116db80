use vexil_model::ProjectKey;
use vexil_store::{NewToken, Role, Store, StoreError};

use crate::conformance;
use crate::helpers::*;

conformance!(
    a_token_authenticates_only_with_its_secret,
    the_bootstrap_token_is_idempotent,
    a_token_cannot_be_scoped_to_a_project_that_does_not_exist
);

async fn a_token_authenticates_only_with_its_secret(store: Store) {
    store.create_project(&actor(), &ProjectKey::parse("shop").unwrap(), "Shop", "").await.unwrap();
    let token = NewToken {
        name: "ci".into(),
        role: Role::Editor,
        projects: Some(vec![ProjectKey::parse("shop").unwrap()]),
    };
    let (record, secret) = store.create_token(&actor(), token).await.unwrap();
    let found = store.authenticate(&secret).await.unwrap().expect("valid secret");
    assert_eq!((found.id.as_str(), found.role), (record.id.as_str(), Role::Editor));
    assert!(found.covers(&ProjectKey::parse("shop").unwrap()));
    assert!(!found.covers(&ProjectKey::parse("other").unwrap()));
    // One character changed (a secret ending in `0` gets `1`: 1 in 62 of them would otherwise be
    // "changed" into themselves).
    let mut wrong = secret.clone();
    let last = wrong.pop();
    wrong.push(if last == Some('0') { '1' } else { '0' });
    assert_eq!(store.authenticate(&wrong).await.unwrap(), None);
    assert_eq!(store.authenticate("nonsense").await.unwrap(), None);
    store.delete_token(&actor(), &record.id).await.unwrap();
    assert_eq!(store.authenticate(&secret).await.unwrap(), None);
}

async fn the_bootstrap_token_is_idempotent(store: Store) {
    let first = store.ensure_bootstrap_token("my-chosen-bootstrap-secret").await.unwrap();
    let again = store.ensure_bootstrap_token("my-chosen-bootstrap-secret").await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(first.role, Role::Admin);
    assert_eq!(store.list_tokens().await.unwrap().len(), 1);
    assert!(store.authenticate("my-chosen-bootstrap-secret").await.unwrap().is_some());
    assert!(store.authenticate("my-chosen-bootstrap-secreT").await.unwrap().is_none());
}

async fn a_token_cannot_be_scoped_to_a_project_that_does_not_exist(store: Store) {
    store.create_project(&actor(), &ProjectKey::parse("shop").unwrap(), "Shop", "").await.unwrap();
    let token = NewToken {
        name: "typo".into(),
        role: Role::Viewer,
        projects: Some(vec![ProjectKey::parse("shop").unwrap(), ProjectKey::parse("shpo").unwrap()]),
    };

    match store.create_token(&actor(), token).await {
        Err(StoreError::Invalid(errors)) => assert!(errors.has_field("projects[1]"), "{errors:?}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(store.list_tokens().await.unwrap().iter().all(|token| token.name != "typo"), "nothing written");
}

/// Two control-plane replicas on one database: a token revoked through one stops working on the
/// other within the verified-token TTL (and at once on the one that revoked it).
#[tokio::test]
async fn a_token_revoked_through_another_replica_stops_working_within_the_ttl() {
    let (here, url) = postgres_with_url().await;
    let there = Store::connect(&url).await.unwrap();
    let token = NewToken { name: "ci".into(), role: Role::Admin, projects: None };
    let (record, secret) = here.create_token(&actor(), token).await.unwrap();
    assert!(here.authenticate(&secret).await.unwrap().is_some());
    assert!(there.authenticate(&secret).await.unwrap().is_some());
    there.delete_token(&actor(), &record.id).await.unwrap();
    assert_eq!(there.authenticate(&secret).await.unwrap(), None);

    // `here` verified the token before it was revoked; move the runtime's clock a TTL on rather than
    // sleep it out. (Paused only while nothing waits on the database: a paused clock jumps ahead
    // whenever the runtime idles, which would fire the pool's timeouts.)
    tokio::time::pause();
    tokio::time::advance(vexil_store::VERIFIED_TOKEN_TTL).await;
    tokio::time::resume();
    assert_eq!(here.authenticate(&secret).await.unwrap(), None);
}
