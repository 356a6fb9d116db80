//! Validation errors that name the offending field by path.

use std::fmt;

use serde::Serialize;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Path of the field, e.g. `rules[2].clauses[0].values[1]`.
    pub field: String,
    /// What was expected, in words for a person.
    pub message: String,
}

/// Every problem found in one value, each with its field path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    /// The individual field errors, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether any error names exactly this field.
    pub fn has_field(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }

    /// One error, for callers that find a problem outside a `parse`.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError { field: field.into(), message: message.into() }])
    }

    /// Puts `prefix.` in front of every field path, for errors of a value nested in a larger one.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for error in &mut self.0 {
            error.field = field(prefix, &error.field);
        }
        self
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    pub(crate) fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Joins a field path: `path("rules[2]", "clauses")` is `rules[2].clauses`.
pub(crate) fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") }
}

/// Indexes a field path: `index("rules", 2)` is `rules[2]`.
pub(crate) fn index(prefix: &str, i: usize) -> String {
    format!("{prefix}[{i}]")
}
