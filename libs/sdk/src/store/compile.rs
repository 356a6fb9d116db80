//! A source snapshot compiled for evaluation, with fault isolation: a flag that cannot be evaluated
//! here costs only itself.

use std::collections::HashSet;

use vexil_eval::{CompileError, CompiledSnapshot, Detail};
use vexil_model::{ConfiguredFlag, Context, ErrorKind, Snapshot};

use vexil_protocol::server::ReceivedSnapshot;

/// What evaluations read: one environment compiled, at one revision.
#[derive(Debug)]
pub(crate) struct Data {
    pub(crate) compiled: CompiledSnapshot,
    /// Flags the client knows of but cannot evaluate: unreadable ones (e.g. from a newer server) and
    /// ones whose prerequisites it does not have (a `?prefix=` leaves them out). They evaluate as
    /// `ERROR MALFORMED_FLAG` rather than `FLAG_NOT_FOUND`.
    pub(crate) unservable: HashSet<Box<str>>,
}

impl Data {
    /// Evaluates `key` for `context` as `vexil_eval::evaluate` does (the same lookup, then the flag's
    /// evaluation in tail position, so the result is built in place), with one difference on the
    /// not-found path: an [`unservable`](Self::unservable) flag is `MALFORMED_FLAG`.
    #[inline]
    pub(crate) fn evaluate<'a>(&'a self, key: &str, context: &Context) -> Detail<'a> {
        match self.compiled.flag(key) {
            Some(flag) => vexil_eval::evaluate_flag(&self.compiled, flag, context),
            None if !self.unservable.is_empty() && self.unservable.contains(key) => {
                Detail::error(ErrorKind::MalformedFlag, None)
            }
            None => Detail::error(ErrorKind::FlagNotFound, None),
        }
    }

    /// Every flag key served (archived flags excluded), then the unservable ones, sorted.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.compiled.flags().map(|flag| flag.key().to_string()).collect();
        let mut unservable: Vec<String> = self.unservable.iter().map(|key| key.to_string()).collect();
        unservable.sort_unstable();
        keys.extend(unservable);
        keys
    }
}

/// Compiles a source for evaluation. Flags that cannot be evaluated here are left out and listed as
/// unservable: unreadable ones, ones whose prerequisites are absent (outside the prefix) — and, if the
/// engine still refuses, whichever flags its error names — so that one bad flag never costs the others.
pub(crate) fn build(source: &ReceivedSnapshot) -> Result<Data, CompileError> {
    let mut unservable: HashSet<Box<str>> = source.unreadable.iter().map(|key| key.as_str().into()).collect();
    let mut flags: Vec<ConfiguredFlag> =
        source.snapshot.flags.iter().filter(|f| !f.flag().archived).cloned().collect();
    loop {
        let present: HashSet<&str> = flags.iter().map(|f| f.flag().key.as_str()).collect();
        let missing: HashSet<String> = flags
            .iter()
            .filter(|f| f.config().prerequisites.iter().any(|p| !present.contains(p.key.as_str())))
            .map(|f| f.flag().key.to_string())
            .collect();
        if missing.is_empty() {
            break;
        }
        flags.retain(|f| !missing.contains(f.flag().key.as_str()));
        unservable.extend(missing.into_iter().map(String::into_boxed_str));
    }
    let mut attempts = flags.len() + 1;
    loop {
        let snapshot = Snapshot {
            revision: source.snapshot.revision,
            flags: flags.clone(),
            segments: source.snapshot.segments.clone(),
        };
        let error = match vexil_eval::compile(snapshot) {
            Ok(compiled) => return Ok(Data { compiled, unservable }),
            Err(error) => error,
        };
        let culprits: HashSet<String> = match &error {
            CompileError::PrerequisiteCycle { path } => path.iter().map(ToString::to_string).collect(),
            CompileError::DuplicateFlag(key) => HashSet::from([key.to_string()]),
            other => other.location().map(|(flag, _)| flag.to_owned()).into_iter().collect(),
        };
        let before = flags.len();
        flags.retain(|f| !culprits.contains(f.flag().key.as_str()));
        if flags.len() == before || attempts == 0 {
            return Err(error);
        }
        attempts -= 1;
        tracing::warn!(error = %error, "leaving flags that cannot be compiled out of the snapshot");
        unservable.extend(culprits.into_iter().map(String::into_boxed_str));
    }
}
