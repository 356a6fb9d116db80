//! What the store returns: domain values with their bookkeeping (versions, timestamps).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use vexil_keys::KeyKind;
use vexil_model::{EnvironmentKey, Flag, FlagConfig, FlagKey, ProjectKey, Segment};

/// Who makes a change: recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The management token used, if any (none for the system itself, e.g. the first start).
    pub token_id: Option<String>,
    /// The token's name, or a description of the system actor.
    pub name: String,
    /// The HTTP request id, to correlate the audit record with logs.
    pub request_id: Option<String>,
}

impl Actor {
    /// The system itself, for changes no person asked for (bootstrap).
    pub fn system(what: &str) -> Actor {
        Actor { token_id: None, name: format!("system: {what}"), request_id: None }
    }
}

/// A project.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    /// Its key.
    pub key: ProjectKey,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// An environment of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentRecord {
    /// Its internal id: names its channel and snapshot on the bus.
    pub id: i64,
    /// The project it belongs to.
    pub project: ProjectKey,
    /// Its key.
    pub key: EnvironmentKey,
    /// Display name.
    pub name: String,
    /// The revision: bumped by every change in the environment.
    pub revision: u64,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed (name; not flag changes).
    pub updated_at: OffsetDateTime,
}

/// A flag of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRecord {
    /// The flag.
    pub flag: Flag,
    /// Bumped by every change to the flag itself (not its configurations).
    pub version: u64,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// A flag's configuration in one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagConfigRecord {
    /// The flag.
    pub flag: FlagKey,
    /// The environment.
    pub environment: EnvironmentKey,
    /// The configuration; its `version` is the record's version.
    pub config: FlagConfig,
    /// Bumped by every change; the `ETag` of the configuration.
    pub version: u64,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// A segment of an environment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    /// The segment; its `version` is the record's version.
    pub segment: Segment,
    /// Bumped by every change.
    pub version: u64,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// An SDK key, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SdkKeyRecord {
    /// Public id.
    pub id: String,
    /// Server or client.
    pub kind: KeyKind,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working (set on the old keys by a rotation); none = no expiry.
    pub expires_at: Option<OffsetDateTime>,
}

/// Newly created SDK keys: the only time their secrets are visible.
#[derive(Clone, PartialEq)]
pub struct NewSdkKeys {
    /// The environment.
    pub environment: EnvironmentKey,
    /// The server key's secret.
    pub server: String,
    /// The client key's secret.
    pub client: String,
}

impl std::fmt::Debug for NewSdkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSdkKeys").field("environment", &self.environment).finish_non_exhaustive()
    }
}

/// What a management token may do. Ordered: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Read everything in its projects.
    Viewer,
    /// Also change flags, configurations and segments.
    Editor,
    /// Also manage projects, environments, keys and tokens.
    Admin,
}

impl Role {
    /// The role as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A management token, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The projects it may touch; none = every project.
    pub projects: Option<Vec<ProjectKey>>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// The token that created it.
    pub created_by: Option<String>,
}

impl TokenRecord {
    /// Whether the token may act on `project`.
    pub fn covers(&self, project: &ProjectKey) -> bool {
        self.projects.as_ref().is_none_or(|projects| projects.contains(project))
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// When the change committed.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The token that made the change (none for the system).
    pub actor_token_id: Option<String>,
    /// The token's name.
    pub actor_name: String,
    /// What was done, e.g. `flag.update`.
    pub action: String,
    /// What it was done to, as a path, e.g. `projects/default/flags/new-checkout`.
    pub resource: String,
    /// The project, when the change is in one.
    pub project: Option<String>,
    /// The environment, when the change is in one.
    pub environment: Option<String>,
    /// The flag, when the change is to one.
    pub flag: Option<String>,
    /// The item before the change (JSON), if it existed.
    pub before: Option<serde_json::Value>,
    /// The item after the change (JSON), if it still exists.
    pub after: Option<serde_json::Value>,
    /// The request that made the change.
    pub request_id: Option<String>,
    /// Hex SHA-256 of this record, covering the previous record's hash.
    pub hash: String,
}

/// Filters for reading the audit log; all optional and ANDed.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this project.
    pub project: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only this flag.
    pub flag: Option<String>,
    /// Only this token.
    pub actor: Option<String>,
    /// At or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only records older than this sequence number (the cursor of the previous page).
    pub before_seq: Option<u64>,
    /// Only these projects (a project-scoped token sees only its own); none = all.
    pub projects: Option<Vec<String>>,
    /// Page size.
    pub limit: u32,
}

/// The result of checking the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Whether every record is intact and none is missing.
    pub ok: bool,
    /// How many records were checked.
    pub records: u64,
    /// The first record found broken (or the position of a missing one).
    pub first_broken_seq: Option<u64>,
    /// What is wrong, in words.
    pub problem: Option<String>,
}
