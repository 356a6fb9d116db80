//! Evaluation semantics, through the public API.

use serde_json::{Value, json};
use test_case::test_case;
use vexil_model::{Context, ErrorKind, Reason, Snapshot};

use crate::{CompileError, CompiledSnapshot, compile, evaluate, evaluate_all};

fn snapshot(flags: Value, segments: Value) -> CompiledSnapshot {
    let snapshot: Snapshot =
        serde_json::from_value(json!({"revision": 3, "flags": flags, "segments": segments})).unwrap();
    compile(snapshot).unwrap()
}

fn boolean(key: &str, config: Value) -> Value {
    json!({"flag": {"key": key, "kind": "boolean",
                    "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]},
           "config": config})
}

/// A boolean flag that serves `true` when the one clause holds, `false` otherwise.
fn with_clause(clause: Value) -> CompiledSnapshot {
    snapshot(
        json!([boolean(
            "f",
            json!({"on": true, "fallthrough": {"variation": 1},
            "rules": [{"id": "r", "clauses": [clause], "serve": {"variation": 0}}]})
        )]),
        json!([{"key": "beta", "included": ["in-list"], "excluded": ["banned"],
                "rules": [{"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@vexil.dev"]}]}]}]),
    )
}

fn clause_holds(clause: Value, ctx: Value) -> bool {
    let compiled = with_clause(clause);
    let ctx: Context = serde_json::from_value(ctx).unwrap();
    let detail = evaluate(&compiled, "f", &ctx);
    assert!(detail.reason.error_kind().is_none(), "{:?}", detail.reason);
    detail.value == Some(&json!(true))
}

fn clause(attribute: &str, op: &str, values: Value) -> Value {
    json!({"attribute": attribute, "op": op, "values": values})
}

#[test_case("in", json!(["DE", "FR"]), json!("FR"), true; "in string")]
#[test_case("in", json!(["DE"]), json!("de"), false; "in is case sensitive")]
#[test_case("in", json!([1, 2]), json!(2.0), true; "in number")]
#[test_case("in", json!(["1"]), json!(1), false; "in does not coerce")]
#[test_case("in", json!([true]), json!(true), true; "in boolean")]
#[test_case("starts_with", json!(["beta-"]), json!("beta-7"), true; "starts with")]
#[test_case("ends_with", json!(["@vexil.dev"]), json!("a@vexil.dev"), true; "ends with")]
#[test_case("contains", json!(["checkout"]), json!("new-checkout-v2"), true; "contains")]
#[test_case("contains", json!(["checkout"]), json!("cart"), false; "contains misses")]
#[test_case("matches", json!(["^[a-z]+-\\d+$"]), json!("user-42"), true; "regex")]
#[test_case("matches", json!(["^[a-z]+$"]), json!("User"), false; "regex misses")]
#[test_case("lt", json!([18]), json!(17), true; "lt")]
#[test_case("lt", json!([18]), json!(18), false; "lt is strict")]
#[test_case("lte", json!([18]), json!(18), true; "lte")]
#[test_case("gt", json!([1.5]), json!(2), true; "gt float")]
#[test_case("gte", json!([21]), json!(20.99), false; "gte")]
#[test_case("before", json!(["2026-06-01T00:00:00Z"]), json!("2026-05-31T23:59:59Z"), true; "before string")]
#[test_case("before", json!(["2026-06-01T00:00:00Z"]), json!(1_780_272_000_000_i64), false; "before millis")]
#[test_case("after", json!([0]), json!("1970-01-01T00:00:01Z"), true; "after epoch")]
#[test_case("semver_eq", json!(["2.1.0"]), json!("2.1"), true; "semver eq padded")]
#[test_case("semver_eq", json!(["2.1.0"]), json!("2.1.0+build.7"), true; "semver eq ignores build")]
#[test_case("semver_lt", json!(["2.0.0"]), json!("2.0.0-rc.1"), true; "prerelease sorts first")]
#[test_case("semver_gt", json!(["1.9.9"]), json!("1.10.0"), true; "semver gt numeric")]
#[test_case("semver_gt", json!(["1.9.9"]), json!("1.9.9"), false; "semver gt strict")]
fn an_operator_compares_as_documented(op: &str, values: Value, attribute: Value, expected: bool) {
    assert_eq!(clause_holds(clause("x", op, values), json!({"targetingKey": "u", "x": attribute})), expected);
}

#[test_case("lt", json!([18]), json!("17"); "number operator on a string")]
#[test_case("starts_with", json!(["a"]), json!(5); "string operator on a number")]
#[test_case("semver_eq", json!(["1.0.0"]), json!("not a version"); "semver operator on junk")]
#[test_case("before", json!(["2026-01-01T00:00:00Z"]), json!("soon"); "date operator on junk")]
#[test_case("in", json!(["a"]), json!({"a": 1}); "in on an object")]
fn a_type_mismatch_never_matches_negated_or_not(op: &str, values: Value, attribute: Value) {
    let ctx = json!({"targetingKey": "u", "x": attribute});
    assert!(!clause_holds(clause("x", op, values.clone()), ctx.clone()));
    let negated = json!({"attribute": "x", "op": op, "values": values, "negate": true});
    assert!(!clause_holds(negated, ctx));
}

#[test]
fn a_missing_attribute_never_matches_negated_or_not() {
    let ctx = json!({"targetingKey": "u"});
    assert!(!clause_holds(clause("country", "in", json!(["DE"])), ctx.clone()));
    assert!(!clause_holds(
        json!({"attribute": "country", "op": "in", "values": ["DE"], "negate": true}),
        ctx.clone()
    ));
    assert!(!clause_holds(
        json!({"attribute": "country", "op": "in", "values": ["DE"], "negate": true}),
        json!({"country": null})
    ));
}

#[test]
fn negate_inverts_a_readable_attribute() {
    let negated = json!({"attribute": "country", "op": "in", "values": ["DE"], "negate": true});
    assert!(clause_holds(negated.clone(), json!({"country": "FR"})));
    assert!(!clause_holds(negated, json!({"country": "DE"})));
}

#[test]
fn a_dotted_path_reads_nested_objects() {
    let c = clause("app.build.channel", "in", json!(["beta"]));
    assert!(clause_holds(c.clone(), json!({"app": {"build": {"channel": "beta"}}})));
    assert!(!clause_holds(c.clone(), json!({"app": {"build": "beta"}})));
    assert!(!clause_holds(c, json!({"app.build.channel": "beta"})));
}

#[test]
fn an_array_attribute_matches_if_any_element_matches() {
    let c = clause("groups", "in", json!(["admins"]));
    assert!(clause_holds(c.clone(), json!({"groups": ["users", "admins"]})));
    assert!(!clause_holds(c.clone(), json!({"groups": ["users"]})));
    let negated = json!({"attribute": "groups", "op": "in", "values": ["admins"], "negate": true});
    assert!(!clause_holds(negated.clone(), json!({"groups": ["users", "admins"]})));
    assert!(clause_holds(negated.clone(), json!({"groups": ["users"]})));
    // No element the operator can read: like a missing attribute.
    let ages = json!({"attribute": "ages", "op": "lt", "values": [10], "negate": true});
    assert!(!clause_holds(ages, json!({"ages": ["five", {"n": 5}]})));
    assert!(!clause_holds(negated, json!({"groups": []})));
}

#[test]
fn the_targeting_key_is_an_attribute_like_any_other() {
    assert!(clause_holds(
        clause("targetingKey", "starts_with", json!(["emp-"])),
        json!({"targetingKey": "emp-7"})
    ));
    assert!(!clause_holds(clause("targetingKey", "starts_with", json!(["emp-"])), json!({})));
}

#[test]
fn segment_membership_is_exclusion_then_inclusion_then_rules() {
    let c = clause("targetingKey", "segment_match", json!(["beta"]));
    assert!(clause_holds(c.clone(), json!({"targetingKey": "in-list"})));
    assert!(clause_holds(c.clone(), json!({"targetingKey": "x", "email": "a@vexil.dev"})));
    assert!(!clause_holds(c.clone(), json!({"targetingKey": "banned", "email": "a@vexil.dev"})));
    assert!(!clause_holds(c.clone(), json!({"targetingKey": "x", "email": "a@example.com"})));
    // Rules work without a targeting key.
    assert!(clause_holds(c, json!({"email": "a@vexil.dev"})));
    let negated =
        json!({"attribute": "targetingKey", "op": "segment_match", "values": ["beta"], "negate": true});
    assert!(clause_holds(negated, json!({"targetingKey": "x"})));
}

fn ordered() -> CompiledSnapshot {
    snapshot(
        json!([
            boolean(
                "parent",
                json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0},
                "rules": [{"id": "blocked", "clauses": [clause("blocked", "in", json!([true]))], "serve": {"variation": 1}}]})
            ),
            json!({"flag": {"key": "child", "kind": "string",
                    "variations": [{"value": "off"}, {"value": "target"}, {"value": "rule"}, {"value": "fallthrough"}]},
                   "config": {"on": true, "off_variation": 0,
                    "prerequisites": [{"key": "parent", "variation": 0}],
                    "targets": [{"variation": 1, "values": ["vip"]}],
                    "rules": [{"id": "de", "clauses": [clause("country", "in", json!(["DE"]))], "serve": {"variation": 2}},
                              {"id": "also-de", "clauses": [clause("country", "in", json!(["DE"]))], "serve": {"variation": 0}}],
                    "fallthrough": {"variation": 3}}}),
            json!({"flag": {"key": "disabled", "kind": "string", "variations": [{"value": "a"}, {"value": "b"}]},
                   "config": {"on": false, "off_variation": 1, "fallthrough": {"variation": 0}}}),
            json!({"flag": {"key": "no-off", "kind": "string", "variations": [{"value": "a"}]},
                   "config": {"on": false, "fallthrough": {"variation": 0}}})
        ]),
        json!([]),
    )
}

#[test_case(json!({"targetingKey": "vip", "country": "DE"}), "target", "TARGET_MATCH"; "targets come before rules")]
#[test_case(json!({"targetingKey": "u", "country": "DE"}), "rule", "RULE_MATCH"; "first matching rule wins")]
#[test_case(json!({"targetingKey": "u", "country": "FR"}), "fallthrough", "FALLTHROUGH"; "fallthrough")]
#[test_case(json!({"targetingKey": "vip", "blocked": true}), "off", "PREREQUISITE_FAILED"; "prerequisites come before targets")]
fn evaluation_follows_the_documented_order(ctx: Value, value: &str, reason: &str) {
    let compiled = ordered();
    let detail = evaluate(&compiled, "child", &serde_json::from_value(ctx).unwrap());
    assert_eq!(detail.value, Some(&json!(value)));
    assert_eq!(serde_json::to_value(&detail.reason).unwrap()["kind"], json!(reason));
}

#[test]
fn a_rule_match_reports_its_id_and_index() {
    let compiled = ordered();
    let detail = evaluate(&compiled, "child", &Context::new("u").with("country", "DE"));
    assert_eq!(detail.reason, Reason::RuleMatch { rule_id: "de".into(), rule_index: 0 });
    assert_eq!(detail.variant().as_deref(), Some("2"));
}

#[test]
fn a_disabled_flag_serves_its_off_variation() {
    let compiled = ordered();
    let detail = evaluate(&compiled, "disabled", &Context::anonymous());
    assert_eq!((detail.value, detail.reason), (Some(&json!("b")), Reason::Off));
}

#[test]
fn a_disabled_flag_without_an_off_variation_leaves_the_callers_default() {
    let compiled = ordered();
    let typed = evaluate(&compiled, "no-off", &Context::anonymous()).into_str("default");
    assert_eq!((typed.value, typed.reason), ("default", Reason::Off));
}

#[test]
fn a_prerequisite_that_is_off_fails_even_if_it_serves_the_required_variation() {
    let compiled = snapshot(
        json!([
            boolean("parent", json!({"on": false, "off_variation": 0, "fallthrough": {"variation": 0}})),
            boolean(
                "child",
                json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0},
                "prerequisites": [{"key": "parent", "variation": 0}]})
            )
        ]),
        json!([]),
    );
    let detail = evaluate(&compiled, "child", &Context::new("u"));
    assert_eq!(detail.reason, Reason::PrerequisiteFailed { prerequisite_key: "parent".into() });
    assert_eq!(detail.value, Some(&json!(false)));
}

#[test]
fn a_missing_flag_is_a_reason_not_a_failure() {
    let compiled = ordered();
    let detail = evaluate(&compiled, "nope", &Context::new("u"));
    assert_eq!(detail.reason.error_kind(), Some(ErrorKind::FlagNotFound));
    assert!(evaluate(&compiled, "nope", &Context::new("u")).into_bool(true).value);
}

#[test]
fn asking_for_the_wrong_type_serves_the_default() {
    let compiled = ordered();
    let typed = evaluate(&compiled, "child", &Context::new("u")).into_bool(true);
    assert_eq!((typed.value, typed.reason.error_kind()), (true, Some(ErrorKind::WrongType)));
    let typed = evaluate(&compiled, "parent", &Context::new("u")).into_number(1.5);
    assert_eq!((typed.value, typed.reason.error_kind()), (1.5, Some(ErrorKind::WrongType)));
    let default = json!({"d": 1});
    assert_eq!(evaluate(&compiled, "parent", &Context::new("u")).into_json(&default).value, &default);
    assert!(evaluate(&compiled, "parent", &Context::new("u")).into_bool(false).value);
}

fn rollout(bucket_by: &str) -> CompiledSnapshot {
    snapshot(
        json!([
            boolean(
                "split",
                json!({"on": true, "fallthrough": {"rollout": {"bucket_by": bucket_by,
            "weights": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}})
            ),
            boolean("static", json!({"on": true, "fallthrough": {"variation": 0}}))
        ]),
        json!([]),
    )
}

#[test]
fn a_rollout_without_a_targeting_key_is_an_error_but_a_static_flag_is_not() {
    let compiled = rollout("targetingKey");
    let detail = evaluate(&compiled, "split", &Context::anonymous());
    assert_eq!(detail.reason.error_kind(), Some(ErrorKind::TargetingKeyMissing));
    assert_eq!(detail.value, None);
    let detail = evaluate(&compiled, "static", &Context::anonymous());
    assert_eq!(detail.value, Some(&json!(true)));
}

#[test]
fn a_rollout_can_bucket_by_another_attribute_including_integers() {
    let compiled = rollout("session.id");
    let by_string = evaluate(&compiled, "split", &Context::new("u").with("session", json!({"id": "123"})));
    let by_int = evaluate(&compiled, "split", &Context::new("u").with("session", json!({"id": 123})));
    assert!(by_string.in_rollout);
    assert_eq!(by_string.variation, by_int.variation);
    let missing = evaluate(&compiled, "split", &Context::new("u"));
    assert_eq!(missing.reason.error_kind(), Some(ErrorKind::TargetingKeyMissing));
    let float = evaluate(&compiled, "split", &Context::new("u").with("session", json!({"id": 1.5})));
    assert_eq!(float.reason.error_kind(), Some(ErrorKind::TargetingKeyMissing));
}

#[test]
fn a_rollout_serves_the_variation_of_the_documented_bucket() {
    let compiled = rollout("targetingKey");
    for key in ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6"] {
        let expected = if crate::bucket("split", key) < 25_000 { 0 } else { 1 };
        assert_eq!(evaluate(&compiled, "split", &Context::new(key)).variation, Some(expected), "{key}");
    }
}

#[test]
fn evaluate_all_applies_the_filter_lazily() {
    let compiled = ordered();
    let ctx = Context::new("u");
    let keys: Vec<&str> = evaluate_all(&compiled, &ctx, |f| f.key().as_str() != "child")
        .map(|(f, _)| f.key().as_str())
        .collect();
    assert_eq!(keys, ["parent", "disabled", "no-off"]);
}

fn compile_json(flags: Value, segments: Value) -> Result<CompiledSnapshot, CompileError> {
    compile(serde_json::from_value(json!({"revision": 1, "flags": flags, "segments": segments})).unwrap())
}

#[test]
fn a_prerequisite_cycle_is_rejected_with_its_path() {
    let err = compile_json(
        json!([
            boolean(
                "a",
                json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "b", "variation": 0}]})
            ),
            boolean(
                "b",
                json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "c", "variation": 0}]})
            ),
            boolean(
                "c",
                json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "a", "variation": 0}]})
            )
        ]),
        json!([]),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "prerequisites form a cycle: a -> b -> c -> a");
}

#[test]
fn unknown_references_are_rejected_with_the_field() {
    let err = compile_json(
        json!([boolean(
            "a",
            json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "ghost", "variation": 0}]})
        )]),
        json!([]),
    )
    .unwrap_err();
    assert_eq!(err.location(), Some(("a", "prerequisites[0].key")));

    let err = compile_json(
        json!([boolean("a", json!({"fallthrough": {"variation": 0}, "rules": [{"id": "r",
            "clauses": [clause("targetingKey", "segment_match", json!(["ghost"]))], "serve": {"variation": 0}}]}))]),
        json!([]),
    )
    .unwrap_err();
    assert_eq!(err.location(), Some(("a", "rules[0].clauses[0].values[0]")));

    let err = compile_json(
        json!([
            boolean(
                "a",
                json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": "b", "variation": 5}]})
            ),
            boolean("b", json!({"fallthrough": {"variation": 0}}))
        ]),
        json!([]),
    )
    .unwrap_err();
    assert_eq!(err.location(), Some(("a", "prerequisites[0].variation")));
}

#[test]
fn archived_flags_are_left_out() {
    let mut flag = boolean("old", json!({"on": true, "fallthrough": {"variation": 0}}));
    flag["flag"]["archived"] = json!(true);
    let compiled = compile_json(json!([flag]), json!([])).unwrap();
    assert_eq!(
        evaluate(&compiled, "old", &Context::new("u")).reason.error_kind(),
        Some(ErrorKind::FlagNotFound)
    );
}

#[test]
fn a_compiled_snapshot_gives_back_its_source() {
    let source: Snapshot = serde_json::from_value(
        json!({"revision": 9, "flags": [boolean("a", json!({"fallthrough": {"variation": 0}}))],
        "segments": [{"key": "s", "included": ["u"]}]}),
    )
    .unwrap();
    let compiled = compile(source.clone()).unwrap();
    assert_eq!(compiled.to_snapshot(), source);
    assert_eq!(compiled.revision(), 9);
}

#[test]
fn a_selection_brings_the_prerequisites_it_reaches_and_nothing_else() {
    let requires =
        |key: &str| json!({"fallthrough": {"variation": 0}, "prerequisites": [{"key": key, "variation": 0}]});
    let compiled = snapshot(
        json!([
            boolean("a-parent", json!({"fallthrough": {"variation": 0}})),
            boolean("beta-checkout", requires("gate")),
            boolean("gate", requires("a-parent")),
            boolean("other", requires("gate")),
            boolean("beta-plain", json!({"fallthrough": {"variation": 0}}))
        ]),
        json!([]),
    );
    let keys = |selected: Vec<&crate::CompiledFlag>| -> Vec<String> {
        selected.into_iter().map(|flag| flag.key().to_string()).collect()
    };
    assert_eq!(
        keys(compiled.selected_with_prerequisites(|flag| flag.key().as_str().starts_with("beta"))),
        ["a-parent", "beta-checkout", "gate", "beta-plain"],
        "in snapshot order, with the prerequisites of prerequisites"
    );
    assert_eq!(
        keys(compiled.selected_with_prerequisites(|flag| flag.key().as_str() == "beta-plain")),
        ["beta-plain"]
    );
    assert!(compiled.selected_with_prerequisites(|_| false).is_empty());
}
