//! Errors: only configuration can fail; everything at run time is a state or a reason.

use std::path::PathBuf;

/// Why [`ClientBuilder::start`](crate::ClientBuilder::start) refused to start: bad configuration only.
/// Network trouble never fails a start; it leaves the client
/// [`Initializing`](crate::State::Initializing) (or [`Stale`](crate::State::Stale)) while it keeps
/// trying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not have a server SDK key's shape (`vxs_<12 characters>_<secret>`).
    #[error("the SDK key is not a server key (vxs_<id>_<secret>)")]
    InvalidServerKey,
    /// A base URL cannot be parsed, or is not `http://` (this build has no TLS; see the crate docs).
    #[error("the {which} URL {url:?} is not a usable http:// base URL")]
    InvalidUrl {
        /// Which URL: `stream`, `polling` or `events`.
        which: &'static str,
        /// The URL given.
        url: String,
        /// The parser's complaint, when it had one (none for an unsupported scheme).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The bootstrap file cannot be read.
    #[error("cannot read the bootstrap file {path}")]
    BootstrapFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bootstrap file is not a snapshot (the JSON of `GET /v1/flags` or of a `hydrate`).
    #[error("the bootstrap file {path} is not a usable snapshot")]
    MalformedBootstrap {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: SnapshotError,
    },
    /// `start` was not called within a Tokio runtime (the client runs its sync on one).
    #[error("Client::start needs a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built (the TLS-less client builds everywhere; kept for safety).
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// Why a snapshot (a bootstrap file, a `hydrate`, a `GET /v1/flags` body) or a change could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not the expected JSON.
    #[error("not a snapshot's JSON")]
    Json(#[from] serde_json::Error),
    /// The flags cannot be compiled even after leaving out the ones that cannot be evaluated here.
    #[error("the snapshot cannot be compiled")]
    Compile(#[from] vexil_eval::CompileError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
