//! `vexil`: one binary for every role.
//!
//! - `vexil standalone`: everything in one process over SQLite and an in-process bus (a laptop).
//! - `vexil control-api`: the management API and change relay, over PostgreSQL and Redis.
//! - `vexil streaming`, `vexil evaluation`: the data-plane services, over Redis (and PostgreSQL for
//!   warm starts when the snapshot cache is empty).
//! - `vexil migrate`: applies the database migrations and exits.
//!
//! Settings come from `config/` and `VEXIL__SECTION__KEY` variables (see libs/config); flags given
//! here override them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use vexil::{Background, DatabaseSnapshots, standalone};
use vexil_bus::Bus;
use vexil_config::{Role, Settings};
use vexil_control_api::Application;
use vexil_control_api::bootstrap::{FirstStart, first_start};
use vexil_dataplane::{BusSync, Cache, UpstreamSync};
use vexil_store::Store;

#[derive(Parser)]
#[command(name = "vexil", version, about = "Vexil: an open feature-flag platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process on SQLite, with no other service needed.
    Standalone {
        /// Port to listen on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Where the SQLite database lives.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Run the management API and the change relay over PostgreSQL and Redis.
    ControlApi {
        /// Apply migrations before serving.
        #[arg(long)]
        migrate: bool,
    },
    /// Run the evaluation service (polling, server-side evaluation, OFREP, events) over Redis.
    Evaluation {
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// Run the streaming service (SSE to server SDKs, client streams, OFREP change stream) over Redis.
    Streaming {
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// Apply the database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let role =
        if matches!(cli.command, Command::Standalone { .. }) { Role::Standalone } else { Role::Service };
    let mut settings = Settings::load(role).context("loading settings")?;
    match cli.command {
        Command::Standalone { port, host, data_dir } => {
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            settings.server.port = port;
            settings.server.host = host;
            settings.database.url = format!("sqlite://{}", data_dir.join("vexil.db").display()).into();
            settings.bus.url = "memory://".into();
            vexil_telemetry::init_logging(&settings.log.format, &settings.log.level);
            tracing::info!(settings = %settings.describe(), "starting standalone");
            let store = Store::connect(settings.database.url.expose_secret())
                .await
                .context("opening the database")?;
            store.migrate().await.context("migrating the database")?;
            if let Some(created) = first_start(&store, &settings).await? {
                print_first_start(&created, &settings);
            }
            standalone::run(settings, store).await
        }
        Command::ControlApi { migrate } => {
            vexil_telemetry::init_logging(&settings.log.format, &settings.log.level);
            tracing::info!(settings = %settings.describe(), "starting control-api");
            let store =
                Store::connect_with(settings.database.url.expose_secret(), settings.database.max_connections)
                    .await
                    .context("connecting to the database")?;
            if migrate {
                store.migrate().await.context("migrating the database")?;
            }
            store.ensure_audit_partitions().await.context("creating audit partitions")?;
            if let Some(created) = first_start(&store, &settings).await? {
                print_first_start(&created, &settings);
            }
            let bus = Bus::connect(&settings.bus.url).await.context("connecting to the bus")?;
            serve(settings, store, bus).await
        }
        Command::Evaluation { relay } => {
            relay.apply_to(&mut settings);
            vexil_telemetry::init_logging(&settings.log.format, &settings.log.level);
            tracing::info!(settings = %settings.describe(), "starting evaluation");
            let mut background = Background::new();
            let (bus, cache) = if !settings.relay.upstream.is_empty() {
                // Relay mode: no Redis. Events posted to /v1/events stay in this process.
                (Bus::in_process(), start_upstream_sync(&settings, &mut background)?)
            } else {
                relay_settings_unused(&settings);
                let bus = Bus::connect(&settings.bus.url).await.context("connecting to the bus")?;
                (bus.clone(), start_sync(&settings, bus, &mut background).await)
            };
            let state = vexil_evaluation::EvaluationState::new(std::sync::Arc::new(settings.clone()), bus);
            let application = vexil_evaluation::Application::build(settings, cache, state).await?;
            tracing::info!(port = application.port(), "listening");
            let served = application.run_until_stopped().await;
            background.stop().await;
            served
        }
        Command::Streaming { relay } => {
            relay.apply_to(&mut settings);
            vexil_telemetry::init_logging(&settings.log.format, &settings.log.level);
            tracing::info!(settings = %settings.describe(), "starting streaming");
            let mut background = Background::new();
            let cache = if !settings.relay.upstream.is_empty() {
                start_upstream_sync(&settings, &mut background)?
            } else {
                relay_settings_unused(&settings);
                let bus = Bus::connect(&settings.bus.url).await.context("connecting to the bus")?;
                start_sync(&settings, bus, &mut background).await
            };
            let application = vexil_streaming::Application::build(settings, cache).await?;
            tracing::info!(port = application.port(), "listening");
            let served = application.run_until_stopped().await;
            background.stop().await;
            served
        }
        Command::Migrate => {
            vexil_telemetry::init_logging(&settings.log.format, &settings.log.level);
            let store = Store::connect(settings.database.url.expose_secret())
                .await
                .context("connecting to the database")?;
            store.migrate().await.context("migrating the database")?;
            tracing::info!("migrations applied");
            Ok(())
        }
    }
}

/// Keeps a data-plane cache current from the bus, warm-starting from the database when one is
/// configured (`VEXIL__DATABASE__URL`) and reachable; the replica answers 503 until its first sync.
async fn start_sync(settings: &Settings, bus: Bus, background: &mut Background) -> Cache {
    let cache = Cache::new();
    let mut sync = BusSync::new(cache.clone(), bus)
        .refresh_every(Duration::from_secs(settings.dataplane.resync_seconds.max(1)));
    match Store::connect_with(settings.database.url.expose_secret(), 4).await {
        Ok(store) => sync = sync.with_database(DatabaseSnapshots::new(store)),
        Err(error) => {
            tracing::warn!(error = %error, "no database for warm starts; syncing from the bus only")
        }
    }
    background.spawn("bus sync", sync.run(background.shutdown()));
    cache
}

async fn serve(settings: Settings, store: Store, bus: Bus) -> anyhow::Result<()> {
    let mut background = Background::new();
    background.spawn("audit partitions", renew_audit_partitions(store.clone(), background.shutdown()));
    let application = Application::build(settings, store, bus).await.context("starting the server")?;
    tracing::info!(port = application.port(), "listening");
    let served = application.run_until_stopped().await;
    background.stop().await;
    served
}

/// Audit partitions are created months ahead; renewed daily so that the default partition stays empty.
async fn renew_audit_partitions(store: Store, shutdown: tokio_util::sync::CancellationToken) {
    let mut daily = tokio::time::interval(Duration::from_secs(24 * 3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = daily.tick() => {}
        }
        if let Err(error) = store.ensure_audit_partitions().await {
            tracing::warn!(error = %error, "could not create audit partitions");
        }
    }
}

/// Printed once, on the first start: the only time these secrets are shown.
fn print_first_start(created: &FirstStart, settings: &Settings) {
    let base = format!("http://{}:{}", settings.server.host, settings.server.port);
    println!();
    println!("  Vexil is set up. These secrets are shown once; keep them.");
    println!();
    println!("  management token:  {}", created.token);
    for keys in &created.keys {
        println!("  {:<12} server key: {}", keys.environment.as_str(), keys.server);
        println!("  {:<12} client key: {}", "", keys.client);
    }
    println!();
    println!("  API:  {base}/api/v1   docs: {base}/api/docs/");
    println!("  try:  curl -H 'Authorization: Bearer {}' {base}/api/v1/projects", created.token);
    println!();
}

/// Relay mode (DESIGN.md §5): take the snapshots of one environment from an upstream Vexil instead of
/// Redis. Each flag overrides its setting (`relay.*`, `VEXIL__RELAY__*`).
#[derive(clap::Args)]
struct RelayArgs {
    /// Base URL of an upstream Vexil to relay from (standalone, or a load balancer in front of its
    /// streaming and evaluation services), e.g. `http://vexil.example:8080`. Without it (and without
    /// `relay.upstream`), the service follows Redis.
    #[arg(long)]
    upstream: Option<String>,
    /// The upstream environment's server key (it also authenticates SDKs here). Prefer the
    /// `VEXIL_RELAY_SERVER_KEY` variable: a flag shows in the process list.
    #[arg(long)]
    server_key: Option<String>,
    /// Where the relay persists its last snapshot, served on a restart while the upstream is down
    /// (default `./data/relay-snapshot.json`).
    #[arg(long)]
    state_file: Option<PathBuf>,
}

impl RelayArgs {
    /// The flags given, over the settings. (Called before logging starts: what is odd about them is
    /// reported by [`start_upstream_sync`] or [`relay_settings_unused`].)
    fn apply_to(self, settings: &mut Settings) {
        if let Some(upstream) = self.upstream {
            settings.relay.upstream = upstream;
        }
        if let Some(key) = self.server_key {
            settings.relay.server_key = Some(SecretString::from(key));
        }
        if let Some(path) = self.state_file {
            settings.relay.state_file = path;
        }
    }
}

/// Warns when relay settings are given without an upstream: they would be silently ignored.
fn relay_settings_unused(settings: &Settings) {
    if settings.relay.upstream.is_empty() && settings.relay.server_key.is_some() {
        tracing::warn!(
            "a relay server key is set but no upstream (--upstream, relay.upstream): following the bus"
        );
    }
}

/// Keeps a data-plane cache current from an upstream (`settings.relay`); the replica answers 503 until
/// its first snapshot, unless the state file has one.
fn start_upstream_sync(settings: &Settings, background: &mut Background) -> anyhow::Result<Cache> {
    let relay = &settings.relay;
    let key = relay
        .server_key
        .as_ref()
        .context("relay mode needs the upstream's server key: --server-key, or VEXIL_RELAY_SERVER_KEY")?;
    tracing::info!(upstream = relay.upstream, state_file = %relay.state_file.display(), "relay mode: following the upstream");
    let cache = Cache::new();
    let sync =
        UpstreamSync::new(cache.clone(), &relay.upstream, key.expose_secret(), relay.state_file.clone())
            .context("relay mode settings")?;
    background.spawn("relay mode", sync.run(background.shutdown()));
    Ok(cache)
}
