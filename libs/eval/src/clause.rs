//! Compiled clauses and how they match a context.

use regex::Regex;
use rustc_hash::FxHashSet;
use serde_json::Value;
use vexil_model::values::{build_regex, parse_instant, parse_instant_str, parse_semver};
use vexil_model::{AttributePath, Clause, Context, Operator};

use crate::CompiledSnapshot;

/// Where to read a value in a context.
#[derive(Debug, Clone)]
pub(crate) enum Path {
    TargetingKey,
    /// A top-level attribute: the common case, one map lookup.
    Top(Box<str>),
    /// A path into nested objects.
    Nested(Box<[Box<str>]>),
}

impl Path {
    pub(crate) fn compile(path: &AttributePath) -> Path {
        if path.is_targeting_key() {
            return Path::TargetingKey;
        }
        let segments: Box<[Box<str>]> = path.segments().map(Box::from).collect();
        match &*segments {
            [only] => Path::Top(only.clone()),
            _ => Path::Nested(segments),
        }
    }

    #[inline]
    pub(crate) fn lookup<'c>(&self, ctx: &'c Context) -> Option<Attr<'c>> {
        match self {
            Path::TargetingKey => ctx.targeting_key().map(Attr::Str),
            Path::Top(name) => ctx.attributes.get(name).filter(|v| !v.is_null()).map(Attr::Json),
            Path::Nested(segments) => ctx.attribute(segments.iter()).map(Attr::Json),
        }
    }
}

/// A value found in a context.
pub(crate) enum Attr<'c> {
    Str(&'c str),
    Json(&'c Value),
}

#[derive(Debug, Clone, Copy)]
enum NumberOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy)]
enum SemverOp {
    Eq,
    Lt,
    Gt,
}

#[derive(Debug)]
enum Matcher {
    In {
        strings: FxHashSet<Box<str>>,
        numbers: Box<[f64]>,
        bools: [bool; 2],
    },
    StartsWith(Box<[Box<str>]>),
    EndsWith(Box<[Box<str>]>),
    Contains(Box<[Box<str>]>),
    Matches(Box<[Regex]>),
    Number(NumberOp, Box<[f64]>),
    Before(Box<[i128]>),
    After(Box<[i128]>),
    Semver(SemverOp, Box<[semver::Version]>),
    /// Indexes into the snapshot's segments.
    Segment(Box<[usize]>),
}

/// A clause with its values parsed into the form its operator compares with.
#[derive(Debug)]
pub(crate) struct CompiledClause {
    path: Path,
    negate: bool,
    matcher: Matcher,
}

/// A clause value that validation should have rejected; carries the value's position.
pub(crate) struct UnreadableValue(pub usize);

impl CompiledClause {
    /// Compiles a validated clause. `segment_index` resolves segment keys; it returns `Err(key)`
    /// for an unknown segment.
    pub(crate) fn compile(
        clause: &Clause,
        mut segment_index: impl FnMut(&str) -> Option<usize>,
    ) -> Result<CompiledClause, ClauseError> {
        let values = &clause.values;
        let strings = || -> Result<Box<[Box<str>]>, ClauseError> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_str().map(Box::from).ok_or(ClauseError::Unreadable(UnreadableValue(i))))
                .collect()
        };
        let numbers = || -> Result<Box<[f64]>, ClauseError> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().ok_or(ClauseError::Unreadable(UnreadableValue(i))))
                .collect()
        };
        let instants = || -> Result<Box<[i128]>, ClauseError> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| parse_instant(v).ok_or(ClauseError::Unreadable(UnreadableValue(i))))
                .collect()
        };
        let semvers = || -> Result<Box<[semver::Version]>, ClauseError> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().and_then(parse_semver).ok_or(ClauseError::Unreadable(UnreadableValue(i)))
                })
                .collect()
        };
        let matcher = match clause.op {
            Operator::In => {
                let mut set = FxHashSet::default();
                let mut nums = Vec::new();
                let mut bools = [false; 2];
                for (i, value) in values.iter().enumerate() {
                    match value {
                        Value::String(s) => {
                            set.insert(Box::from(s.as_str()));
                        }
                        Value::Number(n) => {
                            nums.push(n.as_f64().ok_or(ClauseError::Unreadable(UnreadableValue(i)))?)
                        }
                        Value::Bool(b) => bools[usize::from(*b)] = true,
                        _ => return Err(ClauseError::Unreadable(UnreadableValue(i))),
                    }
                }
                Matcher::In { strings: set, numbers: nums.into(), bools }
            }
            Operator::StartsWith => Matcher::StartsWith(strings()?),
            Operator::EndsWith => Matcher::EndsWith(strings()?),
            Operator::Contains => Matcher::Contains(strings()?),
            Operator::Matches => Matcher::Matches(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str()
                            .and_then(|p| build_regex(p).ok())
                            .ok_or(ClauseError::Unreadable(UnreadableValue(i)))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Operator::Lt => Matcher::Number(NumberOp::Lt, numbers()?),
            Operator::Lte => Matcher::Number(NumberOp::Lte, numbers()?),
            Operator::Gt => Matcher::Number(NumberOp::Gt, numbers()?),
            Operator::Gte => Matcher::Number(NumberOp::Gte, numbers()?),
            Operator::Before => Matcher::Before(instants()?),
            Operator::After => Matcher::After(instants()?),
            Operator::SemverEq => Matcher::Semver(SemverOp::Eq, semvers()?),
            Operator::SemverLt => Matcher::Semver(SemverOp::Lt, semvers()?),
            Operator::SemverGt => Matcher::Semver(SemverOp::Gt, semvers()?),
            Operator::SegmentMatch => Matcher::Segment(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let key = v.as_str().ok_or(ClauseError::Unreadable(UnreadableValue(i)))?;
                        segment_index(key).ok_or_else(|| ClauseError::UnknownSegment(i, key.to_owned()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(CompiledClause { path: Path::compile(&clause.attribute), negate: clause.negate, matcher })
    }

    /// Whether the clause holds for `ctx`.
    ///
    /// A missing attribute, or one the operator cannot read (a string for `lt`, an object for `in`),
    /// never matches, negated or not: a value Vexil cannot interpret never selects a rule. An array
    /// matches if any readable element matches; an array with no readable element is unreadable.
    pub(crate) fn matches(&self, snapshot: &CompiledSnapshot, ctx: &Context) -> bool {
        if let Matcher::Segment(segments) = &self.matcher {
            let member = segments.iter().any(|&i| snapshot.segment_contains(i, ctx));
            return member != self.negate;
        }
        let outcome = match self.path.lookup(ctx) {
            None => None,
            Some(Attr::Str(s)) => self.test_str(s),
            Some(Attr::Json(Value::Array(items))) => {
                let mut readable = false;
                let mut matched = false;
                for item in items {
                    match self.test_value(item) {
                        Some(true) => {
                            matched = true;
                            break;
                        }
                        Some(false) => readable = true,
                        None => {}
                    }
                }
                (matched || readable).then_some(matched)
            }
            Some(Attr::Json(value)) => self.test_value(value),
        };
        outcome.is_some_and(|m| m != self.negate)
    }

    /// `None` when the operator cannot read `value`.
    fn test_value(&self, value: &Value) -> Option<bool> {
        match (value, &self.matcher) {
            (Value::String(s), _) => self.test_str(s),
            (Value::Number(n), Matcher::In { numbers, .. }) => {
                let n = n.as_f64()?;
                Some(numbers.contains(&n))
            }
            (Value::Bool(b), Matcher::In { bools, .. }) => Some(bools[usize::from(*b)]),
            (Value::Number(n), Matcher::Number(op, values)) => {
                let n = n.as_f64()?;
                Some(values.iter().any(|&v| compare_numbers(*op, n, v)))
            }
            (Value::Number(_), Matcher::Before(values)) => {
                let t = parse_instant(value)?;
                Some(values.iter().any(|&v| t < v))
            }
            (Value::Number(_), Matcher::After(values)) => {
                let t = parse_instant(value)?;
                Some(values.iter().any(|&v| t > v))
            }
            _ => None,
        }
    }

    fn test_str(&self, s: &str) -> Option<bool> {
        Some(match &self.matcher {
            Matcher::In { strings, .. } => strings.contains(s),
            Matcher::StartsWith(prefixes) => prefixes.iter().any(|p| s.starts_with(&**p)),
            Matcher::EndsWith(suffixes) => suffixes.iter().any(|p| s.ends_with(&**p)),
            Matcher::Contains(parts) => parts.iter().any(|p| s.contains(&**p)),
            Matcher::Matches(regexes) => regexes.iter().any(|r| r.is_match(s)),
            Matcher::Semver(op, versions) => match plain_version(s) {
                // Most versions in contexts are plain `1.2.3`: compare without building a Version.
                Some(plain) => versions.iter().any(|v| holds(*op, compare_plain(plain, v))),
                None => {
                    let version = parse_semver(s)?;
                    versions.iter().any(|v| holds(*op, version.cmp_precedence(v)))
                }
            },
            Matcher::Before(values) => {
                let t = parse_instant_str(s)?;
                values.iter().any(|&v| t < v)
            }
            Matcher::After(values) => {
                let t = parse_instant_str(s)?;
                values.iter().any(|&v| t > v)
            }
            Matcher::Number(..) | Matcher::Segment(_) => return None,
        })
    }
}

/// Why a clause could not be compiled.
pub(crate) enum ClauseError {
    Unreadable(UnreadableValue),
    UnknownSegment(usize, String),
}

fn compare_numbers(op: NumberOp, attribute: f64, value: f64) -> bool {
    match op {
        NumberOp::Lt => attribute < value,
        NumberOp::Lte => attribute <= value,
        NumberOp::Gt => attribute > value,
        NumberOp::Gte => attribute >= value,
    }
}

fn holds(op: SemverOp, order: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering;
    // Precedence, not `Ord`: build metadata does not count (semver.org §10).
    match op {
        SemverOp::Eq => order == Ordering::Equal,
        SemverOp::Lt => order == Ordering::Less,
        SemverOp::Gt => order == Ordering::Greater,
    }
}

/// Reads `1`, `1.2` or `1.2.3` (optionally with a leading `v`) with no pre-release or build part,
/// as [`parse_semver`] would; `None` for anything else, which then takes the full parser.
fn plain_version(text: &str) -> Option<(u64, u64, u64)> {
    let bytes = text.as_bytes();
    let bytes = bytes.strip_prefix(b"v").unwrap_or(bytes);
    let mut numbers = [0u64; 3];
    let mut slot = 0;
    let mut digits = 0;
    for &b in bytes {
        match b {
            b'0'..=b'9' => {
                // A leading zero, or more digits than fit for sure: let the full parser decide.
                if (digits == 1 && numbers[slot] == 0) || digits == 19 {
                    return None;
                }
                numbers[slot] = numbers[slot] * 10 + u64::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && slot < 2 => {
                slot += 1;
                digits = 0;
            }
            _ => return None,
        }
    }
    (digits > 0).then_some((numbers[0], numbers[1], numbers[2]))
}

/// Precedence of a plain version against any version: a pre-release sorts before its release.
fn compare_plain(plain: (u64, u64, u64), version: &semver::Version) -> std::cmp::Ordering {
    plain.cmp(&(version.major, version.minor, version.patch)).then(if version.pre.is_empty() {
        std::cmp::Ordering::Equal
    } else {
        std::cmp::Ordering::Greater
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn the_plain_version_fast_path_agrees_with_the_full_parser(
            text in "v?(0|[1-9][0-9]{0,3}|0[0-9])(\\.(0|[1-9][0-9]{0,3}|00)){0,3}(-rc\\.1)?",
            other in "(0|[1-9])\\.(0|[1-9])\\.(0|[1-9])(-beta)?",
        ) {
            let other = parse_semver(&other).unwrap();
            if let Some(plain) = plain_version(&text) {
                let full = parse_semver(&text).expect("the fast path accepts only what the parser accepts");
                prop_assert_eq!(compare_plain(plain, &other), full.cmp_precedence(&other));
            } else if let Some(full) = parse_semver(&text) {
                prop_assert!(!full.pre.is_empty() || text.contains('+'), "fast path refused {text}");
            }
        }
    }
}
