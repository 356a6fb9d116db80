use serde_json::json;
use vexil_model::{Segment, SegmentKey, Serve};
use vexil_store::{FlagFilter, Store, StoreError};

use crate::conformance;
use crate::helpers::*;

conformance!(
    a_new_flag_is_off_in_every_environment,
    a_configuration_is_validated_and_names_the_field,
    a_stale_version_is_refused_and_changes_nothing,
    twenty_concurrent_writers_with_one_version_make_one_change,
    a_prerequisite_cycle_is_refused_before_commit,
    a_failed_write_leaves_no_trace,
    flags_are_listed_by_filter,
    a_flag_update_must_keep_every_configuration_valid,
    a_segment_in_use_cannot_be_deleted,
    toggling_keeps_the_rest_of_the_configuration,
);

async fn a_new_flag_is_off_in_every_environment(store: Store) {
    with_flag(&store).await;
    for e in ["development", "production"] {
        let record = store.get_flag_config(&project(), &flag_key("checkout"), &env(e)).await.unwrap();
        assert!(!record.config.on);
        assert_eq!(record.config.off_variation, Some(1));
        assert_eq!(record.version, 1);
    }
    let err = store.create_flag(&actor(), &project(), boolean_flag("checkout")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }));
}

async fn a_configuration_is_validated_and_names_the_field(store: Store) {
    with_flag(&store).await;
    let err = store
        .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("production"),
            config(json!({"on": true, "fallthrough": {"variation": 0},
                "rules": [{"id": "r", "clauses": [{"attribute": "v", "op": "semver_lt", "values": ["nope"]}], "serve": {"variation": 5}}]})),
            None)
        .await
        .unwrap_err();
    let StoreError::Invalid(errors) = err else { panic!("{err:?}") };
    assert!(errors.has_field("rules[0].clauses[0].values[0]"), "{errors}");
    assert!(errors.has_field("rules[0].serve.variation"), "{errors}");
}

async fn a_stale_version_is_refused_and_changes_nothing(store: Store) {
    with_flag(&store).await;
    let on = config(json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}));
    let updated = store
        .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("production"), on.clone(), Some(1))
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    let err = store
        .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("production"), on, Some(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { expected: 1, current: 2 }), "{err:?}");
    assert_eq!(
        store.get_flag_config(&project(), &flag_key("checkout"), &env("production")).await.unwrap().version,
        2
    );
}

async fn twenty_concurrent_writers_with_one_version_make_one_change(store: Store) {
    with_flag(&store).await;
    let revision = store.get_environment(&project(), &env("production")).await.unwrap().revision;
    let writers = (0..20).map(|i| {
        let store = store.clone();
        async move {
            let spec = config(json!({"on": true, "off_variation": 1, "fallthrough": {"variation": i % 2}}));
            store
                .put_flag_config(
                    &actor(),
                    &project(),
                    &flag_key("checkout"),
                    &env("production"),
                    spec,
                    Some(1),
                )
                .await
        }
    });
    let results = futures::future::join_all(writers).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let lost = results.iter().filter(|r| matches!(r, Err(StoreError::VersionMismatch { .. }))).count();
    assert_eq!((won, lost), (1, 19), "{results:?}");
    let record = store.get_flag_config(&project(), &flag_key("checkout"), &env("production")).await.unwrap();
    assert_eq!(record.version, 2);
    // Exactly one change reached the change log: no lost and no phantom update.
    assert_eq!(store.get_environment(&project(), &env("production")).await.unwrap().revision, revision + 1);
}

async fn a_prerequisite_cycle_is_refused_before_commit(store: Store) {
    with_flag(&store).await;
    store.create_flag(&actor(), &project(), boolean_flag("payments")).await.unwrap();
    let needs = |other: &str| {
        config(json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": other, "variation": 0}]}))
    };
    store
        .put_flag_config(
            &actor(),
            &project(),
            &flag_key("checkout"),
            &env("production"),
            needs("payments"),
            None,
        )
        .await
        .unwrap();
    let err = store
        .put_flag_config(
            &actor(),
            &project(),
            &flag_key("payments"),
            &env("production"),
            needs("checkout"),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
    let payments =
        store.get_flag_config(&project(), &flag_key("payments"), &env("production")).await.unwrap();
    assert!(payments.config.prerequisites.is_empty());
    // A prerequisite on a flag that does not exist names the field.
    let err = store
        .put_flag_config(
            &actor(),
            &project(),
            &flag_key("payments"),
            &env("production"),
            needs("ghost"),
            None,
        )
        .await
        .unwrap_err();
    let StoreError::Invalid(errors) = err else { panic!("{err:?}") };
    assert!(errors.has_field("prerequisites[0].key"), "{errors}");
    // And a flag other flags depend on cannot be deleted.
    let err = store.delete_flag(&actor(), &project(), &flag_key("payments")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

async fn a_failed_write_leaves_no_trace(store: Store) {
    with_flag(&store).await;
    let revision = store.get_environment(&project(), &env("production")).await.unwrap().revision;
    let audit_before = store.verify_audit().await.unwrap().records;
    let unsent_before = store.unsent_count().await.unwrap();
    let cyclic =
        config(json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "ghost", "variation": 0}]}));
    assert!(
        store
            .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("production"), cyclic, None)
            .await
            .is_err()
    );
    assert_eq!(store.get_environment(&project(), &env("production")).await.unwrap().revision, revision);
    assert_eq!(store.verify_audit().await.unwrap().records, audit_before);
    assert_eq!(store.unsent_count().await.unwrap(), unsent_before);
}

async fn flags_are_listed_by_filter(store: Store) {
    with_flag(&store).await;
    let mut beta = boolean_flag("beta.search").into_spec();
    beta.tags = vec!["search".into()];
    beta.description = "New Ranking".into();
    store.create_flag(&actor(), &project(), vexil_model::Flag::parse(beta).unwrap()).await.unwrap();
    let keys = |records: Vec<vexil_store::FlagRecord>| {
        records.into_iter().map(|r| r.flag.key.to_string()).collect::<Vec<_>>()
    };
    let all = store.list_flags(&project(), &FlagFilter::default()).await.unwrap();
    assert_eq!(keys(all), ["beta.search", "checkout"]);
    let by_prefix = store
        .list_flags(&project(), &FlagFilter { prefix: Some("beta".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(keys(by_prefix), ["beta.search"]);
    let by_tag = store
        .list_flags(&project(), &FlagFilter { tag: Some("search".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(keys(by_tag), ["beta.search"]);
    let by_text = store
        .list_flags(&project(), &FlagFilter { query: Some("ranking".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(keys(by_text), ["beta.search"]);
}

async fn a_flag_update_must_keep_every_configuration_valid(store: Store) {
    with_flag(&store).await;
    let serves_second = config(json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 1}}));
    store
        .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("production"), serves_second, None)
        .await
        .unwrap();
    let mut one_variation = boolean_flag("checkout").into_spec();
    one_variation.variations.truncate(1);
    let err = store
        .update_flag(
            &actor(),
            &project(),
            &flag_key("checkout"),
            vexil_model::Flag::parse(one_variation).unwrap(),
            None,
        )
        .await
        .unwrap_err();
    let StoreError::Invalid(errors) = err else { panic!("{err:?}") };
    assert!(errors.errors().iter().any(|e| e.field.starts_with("environments.")), "{errors}");
    // A harmless change goes through and bumps the flag's version.
    let mut renamed = boolean_flag("checkout").into_spec();
    renamed.name = "Checkout v2".into();
    let record = store
        .update_flag(
            &actor(),
            &project(),
            &flag_key("checkout"),
            vexil_model::Flag::parse(renamed).unwrap(),
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!((record.version, record.flag.name.as_str()), (2, "Checkout v2"));
}

async fn a_segment_in_use_cannot_be_deleted(store: Store) {
    with_flag(&store).await;
    let segment =
        Segment::parse(serde_json::from_value(json!({"key": "beta", "included": ["u1"]})).unwrap()).unwrap();
    store.create_segment(&actor(), &project(), &env("production"), segment).await.unwrap();
    let uses = config(json!({"fallthrough": {"variation": 1}, "rules": [{"id": "r",
        "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}], "serve": {"variation": 0}}]}));
    store
        .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("production"), uses, None)
        .await
        .unwrap();
    // The same rule in an environment without the segment names the field.
    let uses_missing = config(json!({"fallthrough": {"variation": 1}, "rules": [{"id": "r",
        "clauses": [{"attribute": "targetingKey", "op": "segment_match", "values": ["beta"]}], "serve": {"variation": 0}}]}));
    let err = store
        .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("development"), uses_missing, None)
        .await
        .unwrap_err();
    let StoreError::Invalid(errors) = err else { panic!("{err:?}") };
    assert!(errors.has_field("rules[0].clauses[0].values[0]"), "{errors}");
    let beta = SegmentKey::parse("beta").unwrap();
    let err = store.delete_segment(&actor(), &project(), &env("production"), &beta).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.list_segments(&project(), &env("production")).await.unwrap().len(), 1);
}

async fn toggling_keeps_the_rest_of_the_configuration(store: Store) {
    with_flag(&store).await;
    let rollout = config(json!({"on": false, "off_variation": 1, "fallthrough": {"rollout": {"weights": [
        {"variation": 0, "weight": 10000}, {"variation": 1, "weight": 90000}]}}}));
    store
        .put_flag_config(&actor(), &project(), &flag_key("checkout"), &env("production"), rollout, None)
        .await
        .unwrap();
    let toggled = store
        .toggle_flag(&actor(), &project(), &flag_key("checkout"), &env("production"), true)
        .await
        .unwrap();
    assert!(toggled.config.on);
    assert!(matches!(toggled.config.fallthrough, Serve::Rollout(_)));
    assert_eq!(toggled.version, 3);
}
