//! Response bodies: the store's records shaped for the API.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use vexil_keys::KeyKind;
use vexil_model::{FlagConfigSpec, FlagSpec, SegmentSpec};
use vexil_store::{
    EnvironmentRecord, FlagConfigRecord, FlagRecord, NewSdkKeys, ProjectRecord, Role, SdkKeyRecord,
    SegmentRecord, TokenRecord,
};

/// A project.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    /// Its key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<ProjectRecord> for ProjectView {
    fn from(r: ProjectRecord) -> ProjectView {
        ProjectView {
            key: r.key.to_string(),
            name: r.name,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// An environment.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentView {
    /// Its key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// The environment's revision: bumped by every change in it.
    pub revision: u64,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last rename (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<EnvironmentRecord> for EnvironmentView {
    fn from(r: EnvironmentRecord) -> EnvironmentView {
        EnvironmentView {
            key: r.key.to_string(),
            name: r.name,
            revision: r.revision,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// SDK keys, with their secrets: shown only in the response that creates them.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeysView {
    /// The environment.
    pub environment: String,
    /// The server key (secret: full configurations).
    pub server_key: String,
    /// The client key (public: evaluated client-side flags).
    pub client_key: String,
}

impl From<NewSdkKeys> for NewKeysView {
    fn from(k: NewSdkKeys) -> NewKeysView {
        NewKeysView { environment: k.environment.to_string(), server_key: k.server, client_key: k.client }
    }
}

/// An SDK key without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Public id.
    pub id: String,
    /// `server` or `client`.
    pub kind: KeyKind,
    /// The first characters of the key.
    pub prefix: String,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working, after a rotation.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl From<SdkKeyRecord> for KeyView {
    fn from(k: SdkKeyRecord) -> KeyView {
        KeyView {
            id: k.id,
            kind: k.kind,
            prefix: k.prefix,
            created_at: k.created_at,
            expires_at: k.expires_at,
        }
    }
}

/// A flag with its bookkeeping.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagView {
    /// The flag.
    #[serde(flatten)]
    pub flag: FlagSpec,
    /// Bumped by every change to the flag (not its configurations); also its `ETag`.
    pub version: u64,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<FlagRecord> for FlagView {
    fn from(r: FlagRecord) -> FlagView {
        FlagView {
            flag: r.flag.into_spec(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A flag's configuration in one environment.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagConfigView {
    /// The flag.
    pub flag: String,
    /// The environment.
    pub environment: String,
    /// The configuration; `version` is also the `ETag`.
    #[serde(flatten)]
    pub config: FlagConfigSpec,
    /// Last change (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<FlagConfigRecord> for FlagConfigView {
    fn from(r: FlagConfigRecord) -> FlagConfigView {
        FlagConfigView {
            flag: r.flag.to_string(),
            environment: r.environment.to_string(),
            config: r.config.into_spec(),
            updated_at: r.updated_at,
        }
    }
}

/// A segment with its bookkeeping.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    /// The segment; `version` is also the `ETag`.
    #[serde(flatten)]
    pub segment: SegmentSpec,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<SegmentRecord> for SegmentView {
    fn from(r: SegmentRecord) -> SegmentView {
        SegmentView { segment: r.segment.into_spec(), created_at: r.created_at, updated_at: r.updated_at }
    }
}

/// A management token without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Public id.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The projects it covers; absent = every project.
    pub projects: Option<Vec<String>>,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The token that created it.
    pub created_by: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name,
            role: t.role,
            projects: t.projects.map(|p| p.into_iter().map(|k| k.to_string()).collect()),
            created_at: t.created_at,
            created_by: t.created_by,
        }
    }
}
