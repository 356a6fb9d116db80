use time::Duration;
use vexil_store::{NewToken, Role, Store};

use crate::conformance;
use crate::helpers::*;

conformance!(a_session_acts_as_its_token_until_it_is_logged_out, a_session_ends_with_its_token_or_its_time);

async fn token(store: &Store, role: Role) -> vexil_store::TokenRecord {
    let (record, _) = store
        .create_token(&actor(), NewToken { name: "dashboard".into(), role, projects: None })
        .await
        .unwrap();
    record
}

async fn a_session_acts_as_its_token_until_it_is_logged_out(store: Store) {
    let token = token(&store, Role::Editor).await;
    let created = store.create_session(&token, Duration::hours(1)).await.unwrap();
    assert!(created.secret.starts_with("vxw_"));
    let found = store.session(&created.secret).await.unwrap().expect("a live session");
    assert_eq!(found, created.session);
    assert_eq!((found.token.id.as_str(), found.token.role), (token.id.as_str(), Role::Editor));
    assert_eq!(found.expires_at - found.created_at, Duration::hours(1));

    let mut wrong = created.secret.clone();
    let last = wrong.pop();
    wrong.push(if last == Some('0') { '1' } else { '0' });
    assert_eq!(store.session(&wrong).await.unwrap(), None, "one character off");
    assert_eq!(store.session("vxw_nonsense").await.unwrap(), None);

    let other = store.create_session(&token, Duration::hours(1)).await.unwrap();
    store.delete_session(&created.session.id).await.unwrap();
    assert_eq!(store.session(&created.secret).await.unwrap(), None, "logged out");
    assert!(store.session(&other.secret).await.unwrap().is_some(), "the token's other sessions go on");
    store.delete_session(&created.session.id).await.unwrap();
}

async fn a_session_ends_with_its_token_or_its_time(store: Store) {
    let token = token(&store, Role::Viewer).await;
    let expired = store.create_session(&token, Duration::ZERO).await.unwrap();
    assert_eq!(store.session(&expired.secret).await.unwrap(), None, "expired");
    let live = store.create_session(&token, Duration::hours(1)).await.unwrap();
    store.delete_token(&actor(), &token.id).await.unwrap();
    assert_eq!(store.session(&live.secret).await.unwrap(), None, "its token is gone");
}
