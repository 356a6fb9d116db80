//! Standalone mode: the control plane, streaming and evaluation in one process, on one port, over
//! SQLite and the in-process bus. The same code as the separate deployments, composed differently.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use utoipa_actix_web::AppExt;
use vexil_bus::Bus;
use vexil_config::Settings;
use vexil_control_api::state::{AppState, Metrics};
use vexil_dataplane::{BusSync, Cache};
use vexil_evaluation::EvaluationState;
use vexil_store::Store;
use vexil_streaming::StreamingState;

use crate::{Background, DatabaseSnapshots};

/// Serves until SIGTERM or Ctrl-C; then ends the streams, drains requests, stops the background tasks.
pub async fn run(settings: Settings, store: Store) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let bus = Bus::in_process();
    let mut background = Background::new();

    // Control plane: the relay moves the change log to the in-process bus...
    let metrics = Arc::new(Metrics::new());
    background.spawn(
        "change relay",
        vexil_outbox::run(store.clone(), bus.clone(), metrics.relay.clone(), background.shutdown()),
    );
    // ...and the data plane's cache follows the bus, warm-starting from the database.
    let cache = Cache::new();
    let sync = BusSync::new(cache.clone(), bus.clone())
        .with_database(DatabaseSnapshots::new(store.clone()))
        .refresh_every(std::time::Duration::from_secs(settings.dataplane.resync_seconds.max(1)));
    background.spawn("bus sync", sync.run(background.shutdown()));

    let control = web::Data::new(AppState { store, settings: settings.clone(), metrics });
    let evaluation = web::Data::new(EvaluationState::new(settings.clone(), bus));
    let streaming = web::Data::new(StreamingState::new(&settings.dataplane));
    let cache = web::Data::new(cache);
    let openapi = Arc::new(vexil_control_api::openapi());

    let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
        .with_context(|| format!("binding {}:{}", settings.server.host, settings.server.port))?;
    tracing::info!(
        port = listener.local_addr()?.port(),
        "listening: management API, streaming and evaluation"
    );
    let app_streaming = streaming.clone();
    let server = HttpServer::new(move || {
        let (app, _) = App::new()
            .app_data(cache.clone())
            .app_data(evaluation.clone())
            .app_data(app_streaming.clone())
            // Control plane first: its /healthz, /readyz, /metrics and documentation routes win.
            .configure(|config| vexil_control_api::configure_app(config, control.clone(), openapi.clone()))
            .configure(vexil_evaluation::configure_routes)
            .configure(vexil_streaming::configure)
            .into_utoipa_app()
            .service(vexil_control_api::startup::api_scope())
            .split_for_parts();
        app.default_service(web::to(vexil_control_api::not_found))
            .wrap(from_fn(vexil_control_api::extract::authenticate))
            .wrap(from_fn(vexil_dataplane_http::cors))
            .wrap(from_fn(vexil_evaluation::normalize_path))
            .wrap(from_fn(vexil_control_api::startup::observe))
    })
    // Streams flush in 4 KiB pieces so a large hydrate does not grow every connection's buffer.
    .h1_write_buffer_size(4096)
    .listen(listener)?
    // Signals are ours: streams must end before actix drains, or each would hold the drain open.
    .disable_signals()
    .shutdown_timeout(settings.server.shutdown_grace_seconds)
    .run();

    let handle = server.handle();
    let stop = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: ending streams, draining requests");
        streaming.shutdown();
        handle.stop(true).await;
    };
    let (served, ()) = tokio::join!(server, stop);
    background.stop().await;
    Ok(served?)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
