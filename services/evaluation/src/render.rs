//! `POST /v1/evaluate`'s answer for every flag, written from JSON fragments prepared once per environment
//! revision.
//!
//! Serialising 200 results with serde took more CPU than evaluating them (escaping the same keys, names
//! and rule ids on every request). Everything in a result except *which* variation and reason a context
//! got is fixed by the configuration, so each flag's key, each variation's `value`/`variation`/`variant`
//! and each reason it can give are serialised (by serde, so the bytes are the same) when a revision is
//! first evaluated, and a request only concatenates them. `tests` checks the output against
//! [`FlagResult`]'s serde form for every kind of result.

use vexil_eval::{CompiledFlag, CompiledSnapshot, Detail};
use vexil_keys::KeyKind;
use vexil_model::Reason;

use crate::views::ReasonView;

/// One environment revision's fragments, in the compiled snapshot's flag order.
#[derive(Debug)]
pub struct RenderedFlags {
    flags: Box<[FlagFragments]>,
    /// A guess at the size of a whole answer, so that its buffer is allocated once.
    size_hint: usize,
}

#[derive(Debug)]
struct FlagFragments {
    /// `"key":`
    key: Box<str>,
    /// Per variation: `"value":…,"variation":i,"variant":"…",`
    variations: Box<[Box<str>]>,
    /// Per rule: `{"kind":"RULE_MATCH","rule_id":"…","rule_index":i}`
    rules: Box<[Box<str>]>,
}

impl RenderedFlags {
    /// The fragments of every flag of `compiled`.
    pub fn new(compiled: &CompiledSnapshot) -> RenderedFlags {
        let flags: Box<[FlagFragments]> = compiled.flags().map(FlagFragments::new).collect();
        let size_hint = 32
            + flags
                .iter()
                .map(|f| f.key.len() + f.variations.first().map_or(0, |v| v.len()) + 48)
                .sum::<usize>();
        RenderedFlags { flags, size_hint }
    }

    /// `{"revision":…,"flags":{…}}` for every flag of `compiled` (the snapshot these fragments were made
    /// from) that `visible` keeps, evaluated by `evaluate`. Returns the body and how many flags it holds.
    pub fn evaluate_all<'a>(
        &self,
        compiled: &'a CompiledSnapshot,
        kind: KeyKind,
        visible: impl Fn(&CompiledFlag) -> bool,
        evaluate: impl Fn(&'a CompiledFlag) -> Detail<'a>,
    ) -> (Vec<u8>, u64) {
        let mut out = Vec::with_capacity(self.size_hint);
        out.extend_from_slice(b"{\"revision\":");
        out.extend_from_slice(compiled.revision().to_string().as_bytes());
        out.extend_from_slice(b",\"flags\":{");
        let mut count = 0;
        for (flag, fragments) in compiled.flags().zip(self.flags.iter()) {
            if !visible(flag) {
                continue;
            }
            if count > 0 {
                out.push(b',');
            }
            count += 1;
            fragments.write(&evaluate(flag), kind, &mut out);
        }
        out.extend_from_slice(b"}}");
        (out, count)
    }
}

impl FlagFragments {
    fn new(flag: &CompiledFlag) -> FlagFragments {
        let source = flag.source();
        let key = format!("{}:", json(flag.key().as_str()));
        let variations = (0..source.flag().variations.len())
            .map(|index| {
                let variation = &source.flag().variations[index];
                let variant = source.flag().variant_name(index);
                format!(
                    "\"value\":{},\"variation\":{index},\"variant\":{},",
                    json(&variation.value),
                    json(variant.as_ref())
                )
                .into_boxed_str()
            })
            .collect();
        let rules = source
            .config()
            .rules
            .iter()
            .enumerate()
            .map(|(rule_index, rule)| {
                json(&ReasonView::Full(Reason::RuleMatch { rule_id: rule.id.as_str().into(), rule_index }))
                    .into_boxed_str()
            })
            .collect();
        FlagFragments { key: key.into_boxed_str(), variations, rules }
    }

    /// `"key":{…result…}`, as [`FlagResult`](crate::views::FlagResult) would serialise it.
    fn write(&self, detail: &Detail<'_>, kind: KeyKind, out: &mut Vec<u8>) {
        out.extend_from_slice(self.key.as_bytes());
        out.push(b'{');
        // `value`, `variation` and `variant` are there exactly when the flag served a variation.
        if let (Some(_), Some(variation)) = (detail.value, detail.variation)
            && let Some(fragment) = self.variations.get(variation)
        {
            out.extend_from_slice(fragment.as_bytes());
        }
        out.extend_from_slice(b"\"reason\":");
        match (&detail.reason, kind) {
            (Reason::Off, _) => out.extend_from_slice(br#"{"kind":"OFF"}"#),
            (Reason::TargetMatch, _) => out.extend_from_slice(br#"{"kind":"TARGET_MATCH"}"#),
            (Reason::Fallthrough, _) => out.extend_from_slice(br#"{"kind":"FALLTHROUGH"}"#),
            (Reason::RuleMatch { .. }, KeyKind::Client) => out.extend_from_slice(br#"{"kind":"RULE_MATCH"}"#),
            (Reason::RuleMatch { rule_index, .. }, KeyKind::Server) if *rule_index < self.rules.len() => {
                out.extend_from_slice(self.rules[*rule_index].as_bytes())
            }
            // Prerequisite failures and errors are rare: serialised as they come.
            (reason, KeyKind::Server) => {
                out.extend_from_slice(json(&ReasonView::Full(reason.clone())).as_bytes())
            }
            (reason, KeyKind::Client) => {
                out.extend_from_slice(json(&ReasonView::KindOnly(reason.clone())).as_bytes())
            }
        }
        out.push(b'}');
    }
}

/// Model types always serialise (string keys only); an empty string would only ever show a bug.
fn json(value: &(impl serde::Serialize + ?Sized)) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use vexil_eval::{compile, evaluate_all};
    use vexil_model::Context;

    use super::*;
    use crate::views::{FlagResult, FlagResults};

    fn compiled() -> CompiledSnapshot {
        let boolean = json!([{"value": true, "name": "on \"quoted\""}, {"value": false}]);
        let flag = |key: &str, variations: &Value, config: Value| {
            json!({"flag": {"key": key, "kind": if variations == &boolean { "boolean" } else { "json" },
                            "variations": variations}, "config": config})
        };
        let objects = json!([{"value": {"a": [1, 2.5, "é\n"]}}, {"value": null}]);
        let snapshot = json!({"revision": 12, "flags": [
            flag("off", &boolean, json!({"on": false, "off_variation": 1, "fallthrough": {"variation": 0}})),
            flag("off-no-variation", &boolean, json!({"on": false, "fallthrough": {"variation": 0}})),
            flag("targeted", &boolean, json!({"on": true, "targets": [{"variation": 0, "values": ["vip"]}],
                 "fallthrough": {"variation": 1}})),
            flag("ruled", &objects, json!({"on": true, "rules": [
                {"id": "never", "clauses": [{"attribute": "x", "op": "in", "values": ["y"]}], "serve": {"variation": 1}},
                {"id": "de.at_1-x", "clauses": [{"attribute": "country", "op": "in", "values": ["DE"]}],
                 "serve": {"rollout": {"weights": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}}],
                 "fallthrough": {"variation": 0}})),
            flag("gated", &boolean, json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0},
                 "prerequisites": [{"key": "off", "variation": 0}]})),
            flag("split", &boolean, json!({"on": true,
                 "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}}})),
        ], "segments": []});
        compile(serde_json::from_value(snapshot).unwrap()).unwrap()
    }

    #[test]
    fn fragments_write_exactly_what_serde_would_for_every_kind_of_result() {
        let compiled = compiled();
        let rendered = RenderedFlags::new(&compiled);
        let contexts = [
            json!({"targetingKey": "vip"}),
            json!({"targetingKey": "user-1", "country": "DE"}),
            json!({"targetingKey": "user-2", "country": "DE"}),
            json!({"country": "DE"}),
            json!({}),
        ];
        for ctx in contexts {
            let ctx: Context = serde_json::from_value(ctx).unwrap();
            for kind in [KeyKind::Server, KeyKind::Client] {
                let visible = |flag: &CompiledFlag| kind == KeyKind::Server || flag.key().as_str() != "gated";
                let (body, count) = rendered.evaluate_all(&compiled, kind, visible, |flag| {
                    vexil_eval::evaluate_flag(&compiled, flag, &ctx)
                });
                // Same bytes as serde, not just the same JSON: key order and escaping included.
                let results = evaluate_all(&compiled, &ctx, visible)
                    .map(|(flag, detail)| (flag.key().as_str(), FlagResult::new(detail, kind)))
                    .collect();
                let by_serde = serde_json::to_string(&crate::views::EvaluateResponse {
                    revision: compiled.revision(),
                    flags: FlagResults(results),
                })
                .unwrap();
                assert_eq!(String::from_utf8(body.clone()).unwrap(), by_serde, "{ctx:?} {kind:?}");
                let parsed: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(count as usize, parsed["flags"].as_object().unwrap().len());
            }
        }
    }
}
