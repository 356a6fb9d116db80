//! Vexil's settings, in layers (later wins):
//!
//! 1. defaults in code ([`Settings::default`]),
//! 2. `config/base.yaml`, then `config/<VEXIL_ENVIRONMENT>.yaml` (`local` by default), both optional,
//!    looked up in `VEXIL_CONFIG_DIR` (default `./config`),
//! 3. for standalone mode ([`Role::Standalone`]) only: human-readable logs (`log.format: pretty`),
//! 4. environment variables `VEXIL__<SECTION>__<KEY>`, e.g. `VEXIL__DATABASE__URL`,
//! 5. `VEXIL_BOOTSTRAP_TOKEN`, the admin token automation can use on a fresh instance, and
//!    `VEXIL_RELAY_SERVER_KEY`, relay mode's upstream key (the same as `VEXIL__RELAY__SERVER_KEY`).
//!
//! Command-line flags (the `vexil` binary's) override all of these.
//!
//! This is the only place that reads the process environment for configuration.
#![deny(missing_docs)]

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration")]
pub struct ConfigError(#[from] config::ConfigError);

/// Everything a Vexil process can be configured with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where to listen.
    pub server: ServerSettings,
    /// The control plane's database.
    pub database: DatabaseSettings,
    /// The bus between the planes.
    pub bus: BusSettings,
    /// Management API limits.
    pub api: ApiSettings,
    /// Logging.
    pub log: LogSettings,
    /// The data plane (streaming and evaluation services).
    pub dataplane: DataPlaneSettings,
    /// Relay mode: a data-plane service following an upstream Vexil instead of the bus.
    pub relay: RelaySettings,
    /// An admin token accepted from the first start (`VEXIL_BOOTSTRAP_TOKEN`).
    pub bootstrap_token: Option<SecretString>,
}

/// Where to listen.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Seconds to let in-flight requests finish on SIGTERM.
    pub shutdown_grace_seconds: u64,
}

/// The database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite://path`: a secret, since it may carry a password.
    pub url: SecretString,
    /// Pool size (PostgreSQL).
    pub max_connections: u32,
}

/// The bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BusSettings {
    /// `redis://host:port`, `redis-cluster://...`, or `memory://` (in-process, standalone only).
    pub url: String,
}

/// Management API limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Default overlap, in seconds, during which rotated SDK keys keep working.
    pub key_rotation_overlap_seconds: u64,
    /// How long a dashboard session (`POST /api/v1/session`) lasts, in seconds.
    pub session_seconds: u64,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// `json` (one object per line) or `pretty`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `vexil=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
}

/// The data plane.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DataPlaneSettings {
    /// Seconds between SSE heartbeat comments.
    pub heartbeat_seconds: u64,
    /// The `retry:` reconnect hint sent to SSE clients, in milliseconds.
    pub retry_ms: u64,
    /// Requests per second allowed per SDK key on evaluation routes (a token bucket; burst = 2 s worth).
    pub rate_limit_per_second: u32,
    /// Largest accepted request body on the data plane, in bytes.
    pub max_body_bytes: usize,
    /// The OFREP change stream advertised in bulk evaluations (absolute URL of the streaming service's
    /// `/ofrep/v1/stream`); empty = advertise none.
    pub ofrep_stream_url: String,
    /// Seconds between checks of the snapshot cache's revisions: catches silently missed events, and
    /// bounds how long a replica lags after a Redis restart (events published between the restart and
    /// its re-subscription are lost to it until this check).
    pub resync_seconds: u64,
    /// Most events kept in the Redis events stream (older ones are trimmed).
    pub events_stream_max_len: u64,
}

/// Relay mode (DESIGN.md §5): a streaming or evaluation service that takes one environment from an
/// upstream Vexil's stream instead of from the bus, for another region, an edge site or an air-gapped
/// network.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RelaySettings {
    /// Base URL of the upstream Vexil (standalone, or a load balancer in front of streaming and
    /// evaluation), e.g. `http://vexil.example:8080`; empty: relay mode is off.
    pub upstream: String,
    /// The upstream environment's server key (it also authenticates SDKs here).
    pub server_key: Option<SecretString>,
    /// Where the relay persists its last snapshot, served on a restart while the upstream is down.
    pub state_file: PathBuf,
}

impl Default for RelaySettings {
    fn default() -> RelaySettings {
        RelaySettings {
            upstream: String::new(),
            server_key: None,
            state_file: "./data/relay-snapshot.json".into(),
        }
    }
}

impl Default for DataPlaneSettings {
    fn default() -> DataPlaneSettings {
        DataPlaneSettings {
            heartbeat_seconds: 15,
            retry_ms: 2_000,
            rate_limit_per_second: 1_000,
            max_body_bytes: 64 * 1024,
            ofrep_stream_url: String::new(),
            resync_seconds: 3,
            events_stream_max_len: 1_000_000,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings { host: "127.0.0.1".into(), port: 8080, shutdown_grace_seconds: 10 }
    }
}

impl Default for DatabaseSettings {
    fn default() -> DatabaseSettings {
        DatabaseSettings { url: "postgres://postgres@127.0.0.1:5432/vexil".into(), max_connections: 16 }
    }
}

impl Default for BusSettings {
    fn default() -> BusSettings {
        BusSettings { url: "redis://127.0.0.1:6379".into() }
    }
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            max_body_bytes: 256 * 1024,
            key_rotation_overlap_seconds: 3600,
            session_seconds: 12 * 3600,
        }
    }
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings { format: "json".into(), level: "info".into() }
    }
}

/// Which kind of process loads its settings: their defaults differ a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A deployed service (control-api, streaming, evaluation): JSON logs for a log pipeline.
    Service,
    /// Standalone mode on someone's machine: logs for a person at a terminal.
    Standalone,
}

impl Settings {
    /// Loads the settings from every layer, for a process of this `role`.
    pub fn load(role: Role) -> Result<Settings, ConfigError> {
        let dir = std::env::var_os("VEXIL_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
        let environment = std::env::var("VEXIL_ENVIRONMENT").unwrap_or_else(|_| "local".into());
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("base.yaml")).required(false))
            .add_source(config::File::from(dir.join(format!("{environment}.yaml"))).required(false));
        if role == Role::Standalone {
            builder =
                builder.add_source(config::File::from_str("log: {format: pretty}", config::FileFormat::Yaml));
        }
        let builder = builder
            .add_source(config::Environment::with_prefix("VEXIL").prefix_separator("__").separator("__"))
            .set_override_option("bootstrap_token", std::env::var("VEXIL_BOOTSTRAP_TOKEN").ok())?
            .set_override_option("relay.server_key", std::env::var("VEXIL_RELAY_SERVER_KEY").ok())?;
        Ok(builder.build()?.try_deserialize()?)
    }

    /// The settings as a log line: everything but secrets.
    pub fn describe(&self) -> String {
        format!(
            "server={}:{} database={} bus={} max_body_bytes={} log={}/{} bootstrap_token={} relay={}",
            self.server.host,
            self.server.port,
            redact_url(self.database.url.expose_secret()),
            redact_url(&self.bus.url),
            self.api.max_body_bytes,
            self.log.format,
            self.log.level,
            if self.bootstrap_token.is_some() { "set" } else { "unset" },
            if self.relay.upstream.is_empty() { "off".to_owned() } else { redact_url(&self.relay.upstream) },
        )
    }
}

/// A URL without its password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_described() {
        assert_eq!(redact_url("postgres://vexil:s3cret@db:5432/vexil"), "postgres://vexil:***@db:5432/vexil");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let settings = Settings {
            database: DatabaseSettings { url: "postgres://u:hunter2@h/d".into(), ..Default::default() },
            bootstrap_token: Some(SecretString::from("vxm-very-secret-value")),
            ..Default::default()
        };
        let described = settings.describe();
        assert!(!described.contains("hunter2") && !described.contains("very-secret"), "{described}");
    }
}
