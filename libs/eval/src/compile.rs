//! Compiling an environment's snapshot into the form that evaluation reads.

use rustc_hash::{FxHashMap, FxHashSet};
use vexil_model::{ConfiguredFlag, Context, FlagKey, Rollout, Segment, SegmentKey, Serve, Snapshot};

use crate::bucket::Bucketer;
use crate::clause::{ClauseError, CompiledClause, Path};

/// Why a snapshot could not be compiled: a problem that spans several flags or segments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Two flags share a key.
    #[error("flag {0} appears more than once")]
    DuplicateFlag(FlagKey),
    /// Two segments share a key.
    #[error("segment {0} appears more than once")]
    DuplicateSegment(SegmentKey),
    /// A prerequisite names a flag that is not in the environment (or is archived).
    #[error("flag {flag}: {field} names flag {prerequisite}, which does not exist")]
    UnknownPrerequisite {
        /// The flag with the prerequisite.
        flag: FlagKey,
        /// Path of the prerequisite in the flag's configuration.
        field: String,
        /// The missing flag.
        prerequisite: FlagKey,
    },
    /// A prerequisite requires a variation its flag does not have.
    #[error(
        "flag {flag}: {field} requires variation {variation} of {prerequisite}, which has {count} variations"
    )]
    PrerequisiteVariationOutOfRange {
        /// The flag with the prerequisite.
        flag: FlagKey,
        /// Path of the prerequisite's variation in the flag's configuration.
        field: String,
        /// The prerequisite flag.
        prerequisite: FlagKey,
        /// The variation required.
        variation: usize,
        /// How many variations the prerequisite has.
        count: usize,
    },
    /// Prerequisites form a cycle; `path` starts and ends with the same flag.
    #[error("prerequisites form a cycle: {}", .path.iter().map(FlagKey::as_str).collect::<Vec<_>>().join(" -> "))]
    PrerequisiteCycle {
        /// The flags on the cycle, the first repeated at the end.
        path: Vec<FlagKey>,
    },
    /// A `segment_match` clause names a segment that is not in the environment.
    #[error("flag {flag}: {field} names segment {segment}, which does not exist")]
    UnknownSegment {
        /// The flag with the clause.
        flag: FlagKey,
        /// Path of the value in the flag's configuration.
        field: String,
        /// The missing segment.
        segment: String,
    },
    /// A clause value the model should have rejected; indicates data that bypassed validation.
    #[error("{owner}: {field} cannot be read by its operator")]
    UnreadableClauseValue {
        /// The flag or segment key.
        owner: String,
        /// Path of the value.
        field: String,
    },
}

impl CompileError {
    /// The flag the problem is in, and the path of the offending field in its configuration, for
    /// callers that report errors per field.
    pub fn location(&self) -> Option<(&str, &str)> {
        match self {
            CompileError::UnknownPrerequisite { flag, field, .. }
            | CompileError::PrerequisiteVariationOutOfRange { flag, field, .. }
            | CompileError::UnknownSegment { flag, field, .. } => Some((flag.as_str(), field)),
            CompileError::UnreadableClauseValue { owner, field } => Some((owner, field)),
            _ => None,
        }
    }
}

/// What a rule or fallthrough serves, compiled.
#[derive(Debug)]
pub(crate) enum CompiledServe {
    Variation(usize),
    Rollout {
        bucket_by: Path,
        /// (variation, weight) in order.
        weights: Box<[(usize, u32)]>,
        /// Hashes under the rollout's seed, else the configuration's salt, else the flag key.
        bucketer: Bucketer,
    },
}

impl CompiledServe {
    fn compile(serve: &Serve, salt: &str) -> CompiledServe {
        match serve {
            Serve::Variation(v) => CompiledServe::Variation(*v),
            Serve::Rollout(Rollout { bucket_by, weights, seed, .. }) => CompiledServe::Rollout {
                bucket_by: Path::compile(bucket_by),
                weights: weights.iter().map(|w| (w.variation, w.weight)).collect(),
                bucketer: Bucketer::new(seed.as_deref().unwrap_or(salt)),
            },
        }
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) clauses: Box<[CompiledClause]>,
    pub(crate) serve: CompiledServe,
}

/// A flag and its configuration in the form evaluation reads.
#[derive(Debug)]
pub struct CompiledFlag {
    pub(crate) source: ConfiguredFlag,
    pub(crate) targets: FxHashMap<Box<str>, usize>,
    pub(crate) rules: Box<[CompiledRule]>,
    pub(crate) fallthrough: CompiledServe,
    /// (index of the prerequisite flag in the snapshot, required variation)
    pub(crate) prerequisites: Box<[(usize, usize)]>,
}

impl CompiledFlag {
    /// The flag's key.
    pub fn key(&self) -> &FlagKey {
        &self.source.flag().key
    }

    /// The flag and its configuration as written.
    pub fn source(&self) -> &ConfiguredFlag {
        &self.source
    }

    /// Whether client keys may see this flag.
    pub fn client_side(&self) -> bool {
        self.source.flag().client_side
    }
}

#[derive(Debug)]
pub(crate) struct CompiledSegment {
    source: Segment,
    included: FxHashSet<Box<str>>,
    excluded: FxHashSet<Box<str>>,
    rules: Box<[Box<[CompiledClause]>]>,
}

/// Every flag and segment of one environment, compiled; immutable once built.
#[derive(Debug, Default)]
pub struct CompiledSnapshot {
    revision: u64,
    flags: Box<[CompiledFlag]>,
    index: FxHashMap<Box<str>, usize>,
    segments: Box<[CompiledSegment]>,
}

impl CompiledSnapshot {
    /// The environment revision the snapshot reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The flag with this key.
    pub fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        self.index.get(key).map(|&i| &self.flags[i])
    }

    /// Every flag, in the order of the source snapshot.
    pub fn flags(&self) -> impl ExactSizeIterator<Item = &CompiledFlag> {
        self.flags.iter()
    }

    /// Every segment as written.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = &Segment> {
        self.segments.iter().map(|s| &s.source)
    }

    /// The source snapshot, rebuilt (cloned) from what was compiled.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            revision: self.revision,
            flags: self.flags.iter().map(|f| f.source.clone()).collect(),
            segments: self.segments().cloned().collect(),
        }
    }

    /// The flags `select` picks and every flag they reach through prerequisites, transitively, in
    /// snapshot order: what a client narrowed to those flags (`?prefix=`) needs in order to evaluate
    /// them. Without the prerequisites it could not compile what it was sent.
    pub fn selected_with_prerequisites(&self, select: impl Fn(&CompiledFlag) -> bool) -> Vec<&CompiledFlag> {
        let mut included = vec![false; self.flags.len()];
        let mut pending: Vec<usize> = (0..self.flags.len()).filter(|&i| select(&self.flags[i])).collect();
        while let Some(index) = pending.pop() {
            if std::mem::replace(&mut included[index], true) {
                continue;
            }
            pending.extend(self.flags[index].prerequisites.iter().map(|&(prerequisite, _)| prerequisite));
        }
        self.flags.iter().zip(included).filter_map(|(flag, included)| included.then_some(flag)).collect()
    }

    pub(crate) fn flag_at(&self, index: usize) -> &CompiledFlag {
        &self.flags[index]
    }

    /// Segment membership: excluded wins, then included, then any rule whose clauses all hold.
    pub(crate) fn segment_contains(&self, index: usize, ctx: &Context) -> bool {
        let segment = &self.segments[index];
        if let Some(key) = ctx.targeting_key() {
            if segment.excluded.contains(key) {
                return false;
            }
            if segment.included.contains(key) {
                return true;
            }
        }
        segment.rules.iter().any(|clauses| clauses.iter().all(|c| c.matches(self, ctx)))
    }
}

/// Compiles a snapshot: builds regexes and hash sets, resolves prerequisites and segment references,
/// and rejects what spans flags: duplicate keys, unknown prerequisites or segments, and prerequisite
/// cycles. Archived flags are left out, so they evaluate as not found.
pub fn compile(snapshot: Snapshot) -> Result<CompiledSnapshot, CompileError> {
    let Snapshot { revision, flags, segments } = snapshot;

    let mut segment_index: FxHashMap<Box<str>, usize> = FxHashMap::default();
    let mut compiled_segments = Vec::with_capacity(segments.len());
    for segment in segments {
        if segment_index.insert(segment.key.as_str().into(), compiled_segments.len()).is_some() {
            return Err(CompileError::DuplicateSegment(segment.key.clone()));
        }
        let rules = segment
            .rules
            .iter()
            .enumerate()
            .map(|(r, rule)| {
                rule.clauses
                    .iter()
                    .enumerate()
                    .map(|(c, clause)| {
                        // Segment rules cannot reference segments (the model forbids it).
                        CompiledClause::compile(clause, |_| None).map_err(|e| {
                            let value = match e {
                                ClauseError::Unreadable(v) => v.0,
                                ClauseError::UnknownSegment(i, _) => i,
                            };
                            CompileError::UnreadableClauseValue {
                                owner: segment.key.to_string(),
                                field: format!("rules[{r}].clauses[{c}].values[{value}]"),
                            }
                        })
                    })
                    .collect::<Result<Box<[_]>, _>>()
            })
            .collect::<Result<Box<[_]>, _>>()?;
        compiled_segments.push(CompiledSegment {
            included: segment.included.iter().map(|k| k.as_str().into()).collect(),
            excluded: segment.excluded.iter().map(|k| k.as_str().into()).collect(),
            rules,
            source: segment,
        });
    }

    let flags: Vec<ConfiguredFlag> = flags.into_iter().filter(|f| !f.flag().archived).collect();
    let mut index: FxHashMap<Box<str>, usize> = FxHashMap::default();
    for (i, flag) in flags.iter().enumerate() {
        if index.insert(flag.flag().key.as_str().into(), i).is_some() {
            return Err(CompileError::DuplicateFlag(flag.flag().key.clone()));
        }
    }

    let mut compiled = Vec::with_capacity(flags.len());
    for source in flags {
        compiled.push(compile_flag(source, &index, &segment_index)?);
    }
    // Variation ranges need every flag compiled first; check them before looking for cycles.
    for flag in &compiled {
        for (p, &(target, variation)) in flag.prerequisites.iter().enumerate() {
            let count = compiled[target].source.flag().variations.len();
            if variation >= count {
                return Err(CompileError::PrerequisiteVariationOutOfRange {
                    flag: flag.key().clone(),
                    field: format!("prerequisites[{p}].variation"),
                    prerequisite: compiled[target].key().clone(),
                    variation,
                    count,
                });
            }
        }
    }
    check_cycles(&compiled)?;

    Ok(CompiledSnapshot { revision, flags: compiled.into(), index, segments: compiled_segments.into() })
}

fn compile_flag(
    source: ConfiguredFlag,
    flags: &FxHashMap<Box<str>, usize>,
    segments: &FxHashMap<Box<str>, usize>,
) -> Result<CompiledFlag, CompileError> {
    let flag = source.flag();
    let config = source.config();
    let salt = config.salt.as_deref().unwrap_or(flag.key.as_str());

    let mut targets = FxHashMap::default();
    for target in &config.targets {
        for key in &target.values {
            // The first target list that names a key wins, as the lists are shown in order.
            targets.entry(Box::from(key.as_str())).or_insert(target.variation);
        }
    }

    let mut rules = Vec::with_capacity(config.rules.len());
    for (r, rule) in config.rules.iter().enumerate() {
        let clauses = rule
            .clauses
            .iter()
            .enumerate()
            .map(|(c, clause)| {
                CompiledClause::compile(clause, |key| segments.get(key).copied()).map_err(|e| match e {
                    ClauseError::Unreadable(v) => CompileError::UnreadableClauseValue {
                        owner: flag.key.to_string(),
                        field: format!("rules[{r}].clauses[{c}].values[{}]", v.0),
                    },
                    ClauseError::UnknownSegment(v, segment) => CompileError::UnknownSegment {
                        flag: flag.key.clone(),
                        field: format!("rules[{r}].clauses[{c}].values[{v}]"),
                        segment,
                    },
                })
            })
            .collect::<Result<Box<[_]>, _>>()?;
        rules.push(CompiledRule { clauses, serve: CompiledServe::compile(&rule.serve, salt) });
    }

    let prerequisites = config
        .prerequisites
        .iter()
        .enumerate()
        .map(|(p, prerequisite)| {
            flags.get(prerequisite.key.as_str()).map(|&i| (i, prerequisite.variation)).ok_or_else(|| {
                CompileError::UnknownPrerequisite {
                    flag: flag.key.clone(),
                    field: format!("prerequisites[{p}].key"),
                    prerequisite: prerequisite.key.clone(),
                }
            })
        })
        .collect::<Result<Box<[_]>, _>>()?;

    let fallthrough = CompiledServe::compile(&config.fallthrough, salt);
    Ok(CompiledFlag { targets, rules: rules.into(), fallthrough, prerequisites, source })
}

/// Depth-first search over prerequisite edges; a back edge is a cycle.
fn check_cycles(flags: &[CompiledFlag]) -> Result<(), CompileError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; flags.len()];
    for start in 0..flags.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Explicit stack of (flag, next prerequisite to visit): no recursion depth limit.
        let mut stack = vec![(start, 0usize)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(child, _)) = flags[node].prerequisites.get(*next) {
                *next += 1;
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::OnPath;
                        stack.push((child, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|&(n, _)| n == child).unwrap_or(0);
                        let mut path: Vec<FlagKey> =
                            stack[from..].iter().map(|&(n, _)| flags[n].key().clone()).collect();
                        path.push(flags[child].key().clone());
                        return Err(CompileError::PrerequisiteCycle { path });
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    Ok(())
}
