//! Which flags a change of the source may change the evaluation of: what a client tells its listeners.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;
use vexil_model::{ConfiguredFlag, Operator, Segment};

use vexil_protocol::server::ReceivedSnapshot;

/// The keys of the flags whose evaluation may differ between `old` and `new`: flags added, removed or
/// changed (or becoming readable or unreadable), flags using a segment that changed, and, to a fixed
/// point, flags whose prerequisites are among those. Sorted.
pub(crate) fn changed_keys(old: Option<&ReceivedSnapshot>, new: &ReceivedSnapshot) -> Vec<String> {
    let empty = ReceivedSnapshot::default();
    let old = old.unwrap_or(&empty);
    fn flags_of(source: &ReceivedSnapshot) -> HashMap<&str, &ConfiguredFlag> {
        source.snapshot.flags.iter().map(|f| (f.flag().key.as_str(), f)).collect()
    }
    fn segments_of(source: &ReceivedSnapshot) -> HashMap<&str, &Segment> {
        source.snapshot.segments.iter().map(|s| (s.key.as_str(), s)).collect()
    }
    let (old_flags, new_flags) = (flags_of(old), flags_of(new));
    let mut changed: BTreeSet<String> = old_flags
        .keys()
        .chain(new_flags.keys())
        .filter(|key| old_flags.get(*key) != new_flags.get(*key))
        .map(|key| (*key).to_owned())
        .collect();
    changed.extend(old.unreadable.symmetric_difference(&new.unreadable).cloned());

    let (old_segments, new_segments) = (segments_of(old), segments_of(new));
    let changed_segments: HashSet<&str> = old_segments
        .keys()
        .chain(new_segments.keys())
        .filter(|key| old_segments.get(*key) != new_segments.get(*key))
        .copied()
        .collect();
    let everything = || old.snapshot.flags.iter().chain(&new.snapshot.flags);
    if !changed_segments.is_empty() {
        for flag in everything() {
            let uses_changed_segment =
                flag.config().rules.iter().flat_map(|rule| &rule.clauses).any(|clause| {
                    clause.op == Operator::SegmentMatch
                        && clause
                            .values
                            .iter()
                            .filter_map(Value::as_str)
                            .any(|s| changed_segments.contains(s))
                });
            if uses_changed_segment {
                changed.insert(flag.flag().key.to_string());
            }
        }
    }
    loop {
        let dependents: Vec<String> = everything()
            .filter(|flag| !changed.contains(flag.flag().key.as_str()))
            .filter(|flag| flag.config().prerequisites.iter().any(|p| changed.contains(p.key.as_str())))
            .map(|flag| flag.flag().key.to_string())
            .collect();
        if dependents.is_empty() {
            break;
        }
        changed.extend(dependents);
    }
    changed.into_iter().collect()
}
