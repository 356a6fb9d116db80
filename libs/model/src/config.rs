//! A flag's configuration in one environment: on/off, targets, rules, fallthrough, prerequisites.

use std::collections::HashSet;
use std::ops::Deref;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flag::Flag;
use crate::keys::{AttributePath, ExperimentKey, FlagKey, RuleId, SegmentKey};
use crate::validation::{ValidationErrors, field, index};
use crate::values;

/// The sum of a rollout's weights: weights are thousandths of a percent.
pub const TOTAL_WEIGHT: u32 = 100_000;
/// Most rules in one configuration or segment.
pub const MAX_RULES: usize = 1_000;
/// Most clauses in one rule.
pub const MAX_CLAUSES: usize = 100;
/// Most values in one clause or target list.
pub const MAX_VALUES: usize = 100_000;
/// Longest salt or seed, in bytes.
pub const MAX_SALT_LEN: usize = 256;

/// The comparison a [`Clause`] makes between a context attribute and its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Operator {
    /// Equal to one of the values (strings, numbers or booleans; no type coercion).
    In,
    /// A string that starts with one of the values.
    StartsWith,
    /// A string that ends with one of the values.
    EndsWith,
    /// A string that contains one of the values.
    Contains,
    /// A string matched by one of the regular expressions (linear-time engine, unanchored).
    Matches,
    /// A number less than one of the values.
    Lt,
    /// A number less than or equal to one of the values.
    Lte,
    /// A number greater than one of the values.
    Gt,
    /// A number greater than or equal to one of the values.
    Gte,
    /// An instant (RFC 3339 string or epoch milliseconds) before one of the values.
    Before,
    /// An instant after one of the values.
    After,
    /// A semantic version equal (by precedence) to one of the values.
    SemverEq,
    /// A semantic version lower than one of the values.
    SemverLt,
    /// A semantic version greater than one of the values.
    SemverGt,
    /// The context belongs to one of the named segments. The clause's attribute is not used.
    SegmentMatch,
}

impl Operator {
    /// The operator's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::Contains => "contains",
            Operator::Matches => "matches",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::Before => "before",
            Operator::After => "after",
            Operator::SemverEq => "semver_eq",
            Operator::SemverLt => "semver_lt",
            Operator::SemverGt => "semver_gt",
            Operator::SegmentMatch => "segment_match",
        }
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Clause {
    /// The context attribute compared.
    pub attribute: AttributePath,
    /// How it is compared.
    pub op: Operator,
    /// What it is compared with; the clause holds if any value matches.
    pub values: Vec<Value>,
    /// Inverts the result. A missing attribute, or one of a type the operator cannot read, never
    /// matches, negated or not.
    #[serde(default)]
    pub negate: bool,
}

/// A variation and its share of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WeightedVariation {
    /// Index into the flag's variations.
    pub variation: usize,
    /// Share in thousandths of a percent (`25_000` is 25 %).
    pub weight: u32,
}

/// A percentage split between variations, decided by hashing an attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollout {
    /// The attribute hashed to pick a bucket; the targeting key by default.
    #[serde(default)]
    pub bucket_by: AttributePath,
    /// The variations and their weights, summing to exactly [`TOTAL_WEIGHT`].
    pub weights: Vec<WeightedVariation>,
    /// Replaces the configuration's salt in the hash, to correlate or decorrelate rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The experiment whose arms these variations are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentKey>,
}

/// What a rule or the fallthrough serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Serve {
    /// Always this variation: `{"variation": 0}`.
    Variation(usize),
    /// A split: `{"rollout": {"weights": [...]}}`.
    Rollout(Rollout),
}

/// An explicit list of targeting keys that get one variation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Target {
    /// Index into the flag's variations.
    pub variation: usize,
    /// Targeting keys.
    pub values: Vec<String>,
}

/// Clauses (all must hold) and what to serve when they do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rule {
    /// Unique within the configuration; reported in `RULE_MATCH` reasons.
    pub id: RuleId,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Conditions, ANDed. A rule with no clauses matches every context.
    pub clauses: Vec<Clause>,
    /// What the rule serves.
    pub serve: Serve,
}

/// Another flag that must serve a given variation before this one is evaluated past its prerequisites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prerequisite {
    /// The other flag.
    pub key: FlagKey,
    /// The variation it must serve.
    pub variation: usize,
}

/// A flag's configuration in one environment, as written, not yet checked. See [`FlagConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagConfigSpec {
    /// When false, the flag serves `off_variation` and nothing else is looked at.
    #[serde(default)]
    pub on: bool,
    /// Served when the flag is off or a prerequisite fails; none means the caller's default.
    #[serde(default)]
    pub off_variation: Option<usize>,
    /// Individual targets, checked before the rules.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Rules, checked in order; the first that matches decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Served when no target or rule matched.
    pub fallthrough: Serve,
    /// Flags that must serve given variations first.
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    /// Mixed into bucketing hashes; the flag key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Bumped by the control plane on every change; a write that is not newer is ignored.
    #[serde(default)]
    pub version: u64,
}

impl FlagConfigSpec {
    /// The configuration a new flag gets in every environment: off, serving `off_variation` (the
    /// last variation, which is `false` for a boolean flag made the usual way), first variation on.
    pub fn initial(flag: &Flag) -> FlagConfigSpec {
        let last = flag.variations.len().saturating_sub(1);
        FlagConfigSpec {
            on: false,
            off_variation: Some(last),
            targets: Vec::new(),
            rules: Vec::new(),
            fallthrough: Serve::Variation(0),
            prerequisites: Vec::new(),
            salt: None,
            version: 0,
        }
    }
}

/// A configuration valid for its flag: built only by [`FlagConfig::parse`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "FlagConfigSpec")]
pub struct FlagConfig(FlagConfigSpec);

impl FlagConfig {
    /// Checks a configuration against its flag: variation indexes in range, rollout weights summing to
    /// exactly 100 000, rule ids unique, clause values readable by their operator (regexes compile,
    /// semvers and dates parse, numbers are numbers), no flag its own prerequisite. Prerequisites
    /// naming existing flags and segments existing are checked by `vexil_eval::compile`.
    pub fn parse(spec: FlagConfigSpec, flag: &Flag) -> Result<FlagConfig, ValidationErrors> {
        let variations = flag.variations.len();
        let mut errors = ValidationErrors::default();
        if let Some(off) = spec.off_variation {
            check_variation(&mut errors, "off_variation", off, variations);
        }
        let mut targeted = 0usize;
        for (i, target) in spec.targets.iter().enumerate() {
            let at = index("targets", i);
            check_variation(&mut errors, &field(&at, "variation"), target.variation, variations);
            targeted += target.values.len();
            for (j, key) in target.values.iter().enumerate() {
                if key.is_empty() {
                    errors.push(index(&field(&at, "values"), j), "must not be empty");
                }
            }
        }
        if targeted > MAX_VALUES {
            errors.push("targets", format!("at most {MAX_VALUES} targeted keys in all"));
        }
        check_rules(&mut errors, &spec.rules, variations);
        check_serve(&mut errors, "fallthrough", &spec.fallthrough, variations);
        let mut seen = HashSet::new();
        for (i, prerequisite) in spec.prerequisites.iter().enumerate() {
            let at = index("prerequisites", i);
            if prerequisite.key == flag.key {
                errors.push(field(&at, "key"), "a flag cannot be its own prerequisite");
            }
            if !seen.insert(&prerequisite.key) {
                errors.push(field(&at, "key"), format!("{} is listed twice", prerequisite.key));
            }
        }
        if let Some(salt) = &spec.salt {
            check_salt(&mut errors, "salt", salt);
        }
        errors.into_result().map(|()| FlagConfig(spec))
    }

    /// The validated spec.
    pub fn spec(&self) -> &FlagConfigSpec {
        &self.0
    }

    /// Gives the spec back, e.g. to change it and parse it again.
    pub fn into_spec(self) -> FlagConfigSpec {
        self.0
    }
}

impl Deref for FlagConfig {
    type Target = FlagConfigSpec;
    fn deref(&self) -> &FlagConfigSpec {
        &self.0
    }
}

impl From<FlagConfig> for FlagConfigSpec {
    fn from(config: FlagConfig) -> FlagConfigSpec {
        config.0
    }
}

fn check_variation(errors: &mut ValidationErrors, at: &str, variation: usize, variations: usize) {
    if variation >= variations {
        errors.push(
            at,
            format!(
                "variation {variation} does not exist; the flag has variations 0 to {}",
                variations.saturating_sub(1)
            ),
        );
    }
}

fn check_salt(errors: &mut ValidationErrors, at: &str, salt: &str) {
    if salt.len() > MAX_SALT_LEN {
        errors.push(at, format!("must be at most {MAX_SALT_LEN} bytes"));
    }
}

fn check_rules(errors: &mut ValidationErrors, rules: &[Rule], variations: usize) {
    if rules.len() > MAX_RULES {
        errors.push("rules", format!("at most {MAX_RULES} rules"));
    }
    let mut ids = HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = index("rules", i);
        if !ids.insert(&rule.id) {
            errors.push(field(&at, "id"), format!("duplicate rule id {:?}", rule.id.as_str()));
        }
        check_clauses(errors, &at, &rule.clauses, true);
        check_serve(errors, &field(&at, "serve"), &rule.serve, variations);
    }
}

pub(crate) fn check_clauses(
    errors: &mut ValidationErrors,
    at: &str,
    clauses: &[Clause],
    allow_segments: bool,
) {
    let at = field(at, "clauses");
    if clauses.len() > MAX_CLAUSES {
        errors.push(&at, format!("at most {MAX_CLAUSES} clauses in a rule"));
    }
    for (i, clause) in clauses.iter().enumerate() {
        check_clause(errors, &index(&at, i), clause, allow_segments);
    }
}

fn check_clause(errors: &mut ValidationErrors, at: &str, clause: &Clause, allow_segments: bool) {
    let values_at = field(at, "values");
    if clause.values.is_empty() {
        errors.push(&values_at, "a clause needs at least one value");
    }
    if clause.values.len() > MAX_VALUES {
        errors.push(&values_at, format!("at most {MAX_VALUES} values"));
        return;
    }
    if clause.op == Operator::SegmentMatch && !allow_segments {
        errors.push(field(at, "op"), "segment rules cannot reference other segments");
        return;
    }
    for (i, value) in clause.values.iter().enumerate() {
        if let Err(expected) = check_clause_value(clause.op, value) {
            errors.push(index(&values_at, i), expected);
        }
    }
}

/// Whether `value` is something `op` can compare with; the error says what was expected.
fn check_clause_value(op: Operator, value: &Value) -> Result<(), String> {
    let name = op.as_str();
    match op {
        Operator::In => match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
            _ => Err("`in` compares with strings, numbers or booleans".into()),
        },
        Operator::StartsWith | Operator::EndsWith | Operator::Contains => match value {
            Value::String(_) => Ok(()),
            _ => Err(format!("`{name}` compares with strings")),
        },
        Operator::Matches => match value {
            Value::String(pattern) => values::build_regex(pattern)
                .map(drop)
                .map_err(|e| format!("not a valid regular expression: {e}")),
            _ => Err("`matches` takes regular expressions as strings".into()),
        },
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => match value {
            Value::Number(_) => Ok(()),
            _ => Err(format!("`{name}` compares with numbers")),
        },
        Operator::Before | Operator::After => values::parse_instant(value).map(drop).ok_or_else(|| {
            format!(
                "`{name}` compares with RFC 3339 dates (like \"2026-01-31T00:00:00Z\") or epoch milliseconds"
            )
        }),
        Operator::SemverEq | Operator::SemverLt | Operator::SemverGt => value
            .as_str()
            .and_then(values::parse_semver)
            .map(drop)
            .ok_or_else(|| format!("`{name}` compares with semantic versions (like \"2.1.0\")")),
        Operator::SegmentMatch => match value.as_str().map(SegmentKey::parse) {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(format!("not a segment key: {e}")),
            None => Err("`segment_match` takes segment keys as strings".into()),
        },
    }
}

fn check_serve(errors: &mut ValidationErrors, at: &str, serve: &Serve, variations: usize) {
    match serve {
        Serve::Variation(variation) => {
            check_variation(errors, &field(at, "variation"), *variation, variations)
        }
        Serve::Rollout(rollout) => {
            let at = field(at, "rollout");
            let weights_at = field(&at, "weights");
            if rollout.weights.is_empty() {
                errors.push(&weights_at, "a rollout needs at least one weighted variation");
            }
            let mut total: u64 = 0;
            let mut seen = HashSet::new();
            for (i, weighted) in rollout.weights.iter().enumerate() {
                let variation_at = field(&index(&weights_at, i), "variation");
                check_variation(errors, &variation_at, weighted.variation, variations);
                if !seen.insert(weighted.variation) {
                    errors.push(variation_at, "each variation may appear once in a rollout");
                }
                total += u64::from(weighted.weight);
            }
            if !rollout.weights.is_empty() && total != u64::from(TOTAL_WEIGHT) {
                errors.push(
                    &weights_at,
                    format!(
                        "weights must sum to exactly {TOTAL_WEIGHT} (thousandths of a percent), got {total}"
                    ),
                );
            }
            if let Some(seed) = &rollout.seed {
                check_salt(errors, &field(&at, "seed"), seed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use test_case::test_case;

    use super::*;
    use crate::FlagSpec;

    fn boolean_flag() -> Flag {
        Flag::parse(
            serde_json::from_value::<FlagSpec>(json!({
                "key": "new-checkout", "kind": "boolean",
                "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]
            }))
            .unwrap(),
        )
        .unwrap()
    }

    fn parse(config: Value) -> Result<FlagConfig, ValidationErrors> {
        FlagConfig::parse(serde_json::from_value(config).unwrap(), &boolean_flag())
    }

    fn with_clause(op: &str, values: Value) -> Value {
        json!({"on": true, "fallthrough": {"variation": 1}, "rules": [
            {"id": "r0", "clauses": [], "serve": {"variation": 0}},
            {"id": "r1", "clauses": [
                {"attribute": "country", "op": "in", "values": ["DE"]},
                {"attribute": "x", "op": op, "values": values}
            ], "serve": {"variation": 0}}
        ]})
    }

    #[test]
    fn the_design_example_parses() {
        let config = parse(json!({"on": true, "off_variation": 1,
         "targets": [{"variation": 0, "values": ["user-1", "user-2"]}],
         "rules": [{"id": "germany", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"], "negate": false}],
                    "serve": {"variation": 0}}],
         "fallthrough": {"rollout": {"bucket_by": "targetingKey",
                         "weights": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}},
         "prerequisites": [], "version": 7}))
        .unwrap();
        assert_eq!(config.version, 7);
        assert!(matches!(config.fallthrough, Serve::Rollout(ref r) if r.bucket_by.is_targeting_key()));
    }

    #[test_case("matches", json!(["(unclosed"]); "bad regex")]
    #[test_case("semver_lt", json!(["two"]); "bad semver")]
    #[test_case("before", json!(["tomorrow"]); "bad date")]
    #[test_case("lt", json!(["10"]); "number as string")]
    #[test_case("starts_with", json!([3]); "number for a string operator")]
    #[test_case("in", json!([{"a": 1}]); "object in list")]
    #[test_case("segment_match", json!(["not a key"]); "bad segment key")]
    fn an_unreadable_clause_value_is_named_by_path(op: &str, values: Value) {
        let err = parse(with_clause(op, values)).unwrap_err();
        assert!(err.has_field("rules[1].clauses[1].values[0]"), "{err}");
    }

    #[test_case("matches", json!(["^a+$"]); "regex")]
    #[test_case("semver_gt", json!(["1.2", "v2.0.0-rc.1"]); "semvers")]
    #[test_case("after", json!(["2026-01-01T00:00:00Z", 1767225600000_i64]); "dates")]
    #[test_case("gte", json!([18, 2.5]); "numbers")]
    #[test_case("in", json!(["a", 1, true]); "scalars")]
    fn a_readable_clause_value_is_accepted(op: &str, values: Value) {
        parse(with_clause(op, values)).unwrap();
    }

    #[test]
    fn weights_must_sum_to_exactly_one_hundred_thousand() {
        let err = parse(json!({"on": true, "fallthrough": {"rollout": {"weights": [
            {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 49999}]}}}))
        .unwrap_err();
        assert!(err.has_field("fallthrough.rollout.weights"), "{err}");
    }

    #[test]
    fn a_negative_weight_cannot_even_be_read() {
        let spec = serde_json::from_value::<FlagConfigSpec>(json!({"fallthrough": {"rollout": {"weights": [
            {"variation": 0, "weight": -1}, {"variation": 1, "weight": 100001}]}}}));
        assert!(spec.is_err());
    }

    #[test]
    fn a_variation_out_of_range_is_named_everywhere_it_appears() {
        let err = parse(json!({"on": true, "off_variation": 2,
            "targets": [{"variation": 5, "values": ["u"]}],
            "rules": [{"id": "r", "clauses": [], "serve": {"variation": 9}}],
            "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 0}, {"variation": 3, "weight": 100000}]}}}))
        .unwrap_err();
        for at in [
            "off_variation",
            "targets[0].variation",
            "rules[0].serve.variation",
            "fallthrough.rollout.weights[1].variation",
        ] {
            assert!(err.has_field(at), "missing {at} in {err}");
        }
    }

    #[test]
    fn rule_ids_must_be_unique() {
        let err = parse(json!({"fallthrough": {"variation": 0}, "rules": [
            {"id": "same", "clauses": [], "serve": {"variation": 0}},
            {"id": "same", "clauses": [], "serve": {"variation": 1}}]}))
        .unwrap_err();
        assert!(err.has_field("rules[1].id"), "{err}");
    }

    #[test]
    fn a_flag_cannot_be_its_own_prerequisite() {
        let err = parse(json!({"fallthrough": {"variation": 0},
            "prerequisites": [{"key": "new-checkout", "variation": 0}]}))
        .unwrap_err();
        assert!(err.has_field("prerequisites[0].key"), "{err}");
    }

    #[test]
    fn a_clause_needs_a_value() {
        let err = parse(with_clause("in", json!([]))).unwrap_err();
        assert!(err.has_field("rules[1].clauses[1].values"), "{err}");
    }

    #[test]
    fn serialisation_round_trips_through_the_spec() {
        let config = parse(with_clause("semver_eq", json!(["1.0.0"]))).unwrap();
        let json = serde_json::to_value(&config).unwrap();
        let again = parse(json).unwrap();
        assert_eq!(config, again);
    }
}
