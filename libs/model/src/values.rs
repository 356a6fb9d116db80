//! Interpretation of clause and context values, shared by validation (write time) and the
//! evaluation engine (compile time and evaluation time) so that both agree on what a value means.

use regex::{Regex, RegexBuilder};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest regular expression accepted in a `matches` clause, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Upper bound on a compiled regex's size; keeps a pathological pattern from eating memory.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Upper bound on the lazy DFA's cache per regex.
const REGEX_DFA_SIZE_LIMIT: usize = 1024 * 1024;

/// Compiles a `matches` pattern with the linear-time engine and the size limits Vexil enforces.
pub fn build_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!("regular expression must be at most {MAX_REGEX_LEN} bytes"));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// Parses a semantic version, leniently in the ways people write them: a leading `v`, and a missing
/// minor or patch number (`1.2` is `1.2.0`). Build metadata is kept but ignored by comparisons
/// (use [`semver::Version::cmp_precedence`]).
pub fn parse_semver(text: &str) -> Option<semver::Version> {
    let text = text.strip_prefix('v').unwrap_or(text);
    if let Ok(version) = semver::Version::parse(text) {
        return Some(version);
    }
    // Pad `1` or `1.2` (optionally followed by -pre or +build) to three numbers.
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(core_end);
    let mut numbers = [0u64; 3];
    let mut count = 0;
    for part in core.split('.') {
        if count == 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        numbers[count] = part.parse().ok()?;
        count += 1;
    }
    if count == 3 {
        return None; // three numbers that semver rejected: malformed suffix
    }
    let mut version = semver::Version::new(numbers[0], numbers[1], numbers[2]);
    let (pre, build) = match rest.split_once('+') {
        Some((pre, build)) => (pre, Some(build)),
        None => (rest, None),
    };
    if let Some(pre) = pre.strip_prefix('-') {
        version.pre = semver::Prerelease::new(pre).ok()?;
    } else if !pre.is_empty() {
        return None;
    }
    if let Some(build) = build {
        version.build = semver::BuildMetadata::new(build).ok()?;
    }
    Some(version)
}

/// Reads an RFC 3339 string (`2026-11-21T10:00:00Z`) as nanoseconds since the Unix epoch.
pub fn parse_instant_str(text: &str) -> Option<i128> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(|t| t.unix_timestamp_nanos())
}

/// Reads an instant as nanoseconds since the Unix epoch: an RFC 3339 string
/// (`2026-11-21T10:00:00Z`) or a number of milliseconds since the epoch.
pub fn parse_instant(value: &Value) -> Option<i128> {
    match value {
        Value::String(text) => parse_instant_str(text),
        Value::Number(n) => {
            let millis = n.as_f64()?;
            millis.is_finite().then_some((millis * 1_000_000.0) as i128)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use test_case::test_case;

    use super::*;

    #[test_case("1.2.3", (1, 2, 3), ""; "strict")]
    #[test_case("v1.2.3", (1, 2, 3), ""; "leading v")]
    #[test_case("1.2", (1, 2, 0), ""; "missing patch")]
    #[test_case("2", (2, 0, 0), ""; "major only")]
    #[test_case("1.2-beta.1", (1, 2, 0), "beta.1"; "padded with prerelease")]
    #[test_case("1.2.3-rc.1+build.5", (1, 2, 3), "rc.1"; "prerelease and build")]
    fn a_semver_is_read_leniently(text: &str, (major, minor, patch): (u64, u64, u64), pre: &str) {
        let v = parse_semver(text).unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.pre.as_str()), (major, minor, patch, pre));
    }

    #[test_case(""; "empty")]
    #[test_case("1.2.3.4"; "four numbers")]
    #[test_case("one.two"; "words")]
    #[test_case("1..2"; "empty part")]
    #[test_case("01.2"; "leading zero")]
    #[test_case("1.2x"; "junk")]
    fn a_malformed_semver_is_rejected(text: &str) {
        assert_eq!(parse_semver(text), None);
    }

    #[test]
    fn an_instant_is_an_rfc3339_string_or_epoch_milliseconds() {
        let from_text = parse_instant(&json!("2026-01-01T00:00:00Z")).unwrap();
        let from_millis = parse_instant(&json!(1_767_225_600_000_i64)).unwrap();
        assert_eq!(from_text, from_millis);
        assert_eq!(parse_instant(&json!("2026-01-01T01:00:00+01:00")), Some(from_text));
        assert_eq!(parse_instant(&json!("yesterday")), None);
        assert_eq!(parse_instant(&json!(true)), None);
    }

    #[test]
    fn a_regex_over_the_size_limit_is_rejected() {
        assert!(build_regex("^[a-z]+@example\\.com$").is_ok());
        assert!(build_regex("(").is_err());
        assert!(build_regex(&"a".repeat(MAX_REGEX_LEN + 1)).is_err());
        // Compiles to far more than the size limit.
        assert!(build_regex("\\w{1000}\\w{1000}").is_err());
    }
}
