//! Building and running the streaming service.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use vexil_config::Settings;
use vexil_dataplane::Cache;
use vexil_http::error::{ApiError, ErrorCode};

use crate::routes;
use crate::state::StreamingState;

/// Adds the three stream routes, each with CORS for browsers (`vexil_http::cors`, on the resource so
/// that it answers their preflights too):
///
/// * `GET /v1/stream` — [`routes::server::stream_flags`]
/// * `GET /v1/client/stream` — [`routes::client::stream_values`]
/// * `GET /ofrep/v1/stream` — [`routes::ofrep::stream_ofrep_changes`]
///
/// The app must register `web::Data<vexil_dataplane::Cache>` and `web::Data<StreamingState>` (the
/// same `Data` in every worker: build them once, outside the `HttpServer` factory). The probes are
/// separate ([`configure_probes`]) so that a process serving several roles on one port can render
/// one `/metrics` ([`Metrics::render`](crate::Metrics::render) gives this crate's part).
///
/// A server embedding these routes should, like [`Application`]: call [`StreamingState::shutdown`]
/// before draining on SIGTERM (open streams would otherwise hold the drain until its timeout), and
/// set `HttpServer::h1_write_buffer_size(4096)` (so that a large `hydrate` does not grow every
/// stream's write buffer for the life of the connection).
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/stream")
                .wrap(from_fn(vexil_http::cors))
                .route(web::get().to(routes::server::stream_flags)),
        )
        .service(
            web::resource("/v1/client/stream")
                .wrap(from_fn(vexil_http::cors))
                .route(web::get().to(routes::client::stream_values)),
        )
        .service(
            web::resource("/ofrep/v1/stream")
                .wrap(from_fn(vexil_http::cors))
                .route(web::get().to(routes::ofrep::stream_ofrep_changes)),
        );
}

/// Adds `/healthz`, `/readyz` (503 until the cache is ready, and once shutting down) and `/metrics`.
pub fn configure_probes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(routes::health::healthz))
        .route("/readyz", web::get().to(routes::health::readyz))
        .route("/metrics", web::get().to(routes::health::metrics));
}

/// A problem+json 404 for anything no route matches.
async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such route"))
}

/// The streaming service, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    streaming: web::Data<StreamingState>,
}

impl Application {
    /// Binds the listener (`settings.server`; port 0 picks a free one) and builds the server over
    /// `cache`, which something else fills and keeps current (`vexil_dataplane::BusSync`, or a relay
    /// upstream). Streams answer with a `retry:` hint only until the cache is ready.
    pub async fn build(settings: Settings, cache: Cache) -> anyhow::Result<Application> {
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
        let port = listener.local_addr()?.port();
        let streaming = web::Data::new(StreamingState::new(&settings.dataplane));
        let cache = web::Data::new(cache);
        let app_streaming = streaming.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(cache.clone())
                .app_data(app_streaming.clone())
                .configure(configure_probes)
                .configure(configure)
                .default_service(web::to(not_found))
        })
        // See `stream::MAX_CHUNK`: flush every 4 KiB so that a large hydrate does not grow (and keep)
        // every stream's write buffer.
        .h1_write_buffer_size(crate::stream::MAX_CHUNK)
        .listen(listener)?
        // Signals are handled by `run_until_stopped`: streams must end before actix drains, or every
        // open stream would hold the drain until the timeout.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_grace_seconds)
        .run();
        Ok(Application { port, server, streaming })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state; [`StreamingState::shutdown`] on it stops the application as SIGTERM would.
    pub fn state(&self) -> web::Data<StreamingState> {
        self.streaming.clone()
    }

    /// Serves until SIGTERM or SIGINT (or [`StreamingState::shutdown`]), then stops: new connections
    /// are refused, every stream ends cleanly (its client reconnects elsewhere with `Last-Event-ID`),
    /// in-flight requests finish within `shutdown_grace_seconds`, and this returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { server, streaming, .. } = self;
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => return Ok(result?),
            () = stop_requested(&streaming) => {}
        }
        tracing::info!(
            streams = streaming.metrics().connections(),
            "shutting down: ending streams and draining"
        );
        // Stop accepting (the command is sent now; the server future carries it out as it is polled
        // below), end the streams, and let actix drain what is left.
        drop(handle.stop(true));
        streaming.shutdown();
        Ok(server.await?)
    }
}

/// SIGTERM, SIGINT, or a shutdown requested through the state.
async fn stop_requested(streaming: &StreamingState) {
    let terminate = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = streaming.stopped() => {}
    }
}
