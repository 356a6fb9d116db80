//! Evaluation: what a flag serves to a context.

use std::borrow::Cow;

use serde_json::Value;
use vexil_model::{Context, ErrorKind, Reason};

use crate::bucket::{Bucketer, pick};
use crate::clause::{Attr, Path};
use crate::compile::{CompiledFlag, CompiledServe, CompiledSnapshot};
use crate::detail::Detail;

/// Evaluates the flag `flag_key` for `ctx`. Never fails: a missing flag is
/// `Reason::Error { FlagNotFound }`.
///
/// Order: off → prerequisites → individual targets → rules in order → fallthrough.
pub fn evaluate<'a>(snapshot: &'a CompiledSnapshot, flag_key: &str, ctx: &Context) -> Detail<'a> {
    match snapshot.flag(flag_key) {
        Some(flag) => evaluate_flag(snapshot, flag, ctx),
        None => Detail::error(ErrorKind::FlagNotFound, None),
    }
}

/// Evaluates every flag that `filter` accepts, lazily, in snapshot order.
pub fn evaluate_all<'a, 'c, F>(
    snapshot: &'a CompiledSnapshot,
    ctx: &'c Context,
    mut filter: F,
) -> impl Iterator<Item = (&'a CompiledFlag, Detail<'a>)> + use<'a, 'c, F>
where
    F: FnMut(&CompiledFlag) -> bool,
{
    snapshot
        .flags()
        .filter(move |flag| filter(flag))
        .map(move |flag| (flag, evaluate_flag(snapshot, flag, ctx)))
}

/// Evaluates a flag already looked up in `snapshot`.
pub fn evaluate_flag<'a>(
    snapshot: &'a CompiledSnapshot,
    flag: &'a CompiledFlag,
    ctx: &Context,
) -> Detail<'a> {
    evaluate_at_depth(snapshot, flag, ctx, 0)
}

fn evaluate_at_depth<'a>(
    snapshot: &'a CompiledSnapshot,
    flag: &'a CompiledFlag,
    ctx: &Context,
    depth: usize,
) -> Detail<'a> {
    // Compile rejects cycles, so no chain is longer than the number of flags; this guard only keeps a
    // corrupted snapshot from recursing without end.
    if depth > snapshot.flags().len() {
        return Detail::error(ErrorKind::MalformedFlag, Some(flag));
    }
    let config = flag.source.config();
    if !config.on {
        return off(flag, Reason::Off);
    }
    for &(index, required) in &flag.prerequisites {
        let prerequisite = snapshot.flag_at(index);
        let result = evaluate_at_depth(snapshot, prerequisite, ctx, depth + 1);
        if !prerequisite.source.config().on || result.variation != Some(required) {
            let key = prerequisite.key().as_str();
            return off(flag, Reason::PrerequisiteFailed { prerequisite_key: Cow::Borrowed(key) });
        }
    }
    if let Some(key) = ctx.targeting_key()
        && let Some(&variation) = flag.targets.get(key)
    {
        return Detail::served(flag, variation, Reason::TargetMatch, false);
    }
    for (index, rule) in flag.rules.iter().enumerate() {
        if rule.clauses.iter().all(|clause| clause.matches(snapshot, ctx)) {
            let id = flag.source.config().rules[index].id.as_str();
            return serve(
                flag,
                &rule.serve,
                ctx,
                Reason::RuleMatch { rule_id: Cow::Borrowed(id), rule_index: index },
            );
        }
    }
    serve(flag, &flag.fallthrough, ctx, Reason::Fallthrough)
}

fn off<'a>(flag: &'a CompiledFlag, reason: Reason<'a>) -> Detail<'a> {
    match flag.source.config().off_variation {
        Some(variation) => Detail::served(flag, variation, reason, false),
        None => {
            Detail { value: None, variation: None, reason, in_rollout: false, flag: Some(flag.source.flag()) }
        }
    }
}

fn serve<'a>(flag: &'a CompiledFlag, serve: &CompiledServe, ctx: &Context, reason: Reason<'a>) -> Detail<'a> {
    match serve {
        CompiledServe::Variation(variation) => Detail::served(flag, *variation, reason, false),
        CompiledServe::Rollout { bucket_by, weights, bucketer } => {
            let Some(b) = bucket_of(bucket_by, *bucketer, ctx) else {
                return Detail::error(ErrorKind::TargetingKeyMissing, Some(flag));
            };
            Detail::served(flag, pick(weights, b), reason, true)
        }
    }
}

/// The bucket of the context's bucketing attribute: a string, or an integer (hashed as its decimal
/// digits). Anything else cannot be bucketed.
fn bucket_of(path: &Path, bucketer: Bucketer, ctx: &Context) -> Option<u32> {
    match path.lookup(ctx)? {
        Attr::Str(s) => Some(bucketer.bucket(s)),
        Attr::Json(Value::String(s)) => Some(bucketer.bucket(s)),
        Attr::Json(Value::Number(n)) => {
            let mut digits = itoa::Buffer::new();
            let text = if let Some(i) = n.as_i64() { digits.format(i) } else { digits.format(n.as_u64()?) };
            Some(bucketer.bucket(text))
        }
        Attr::Json(_) => None,
    }
}
