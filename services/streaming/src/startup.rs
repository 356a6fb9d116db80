//! Building and running the streaming service: [`configure`] for an actix app (standalone mode, one
//! port for everything), [`Application`] for the dedicated deployment (its own lean HTTP/1.1 server,
//! `crate::http1`). Both serve the same routes, by the same code.

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::web;
use vexil_config::Settings;
use vexil_dataplane::Cache;

use crate::fanout::Fanout;
use crate::http1;
use crate::routes;
use crate::state::StreamingState;

/// Adds the three stream routes, each with CORS for browsers (`vexil_dataplane_http::cors`, on the resource so
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
/// A server embedding these routes should call [`StreamingState::shutdown`] before draining on
/// SIGTERM (open streams would otherwise hold the drain until its timeout), as [`Application`] does,
/// and set `HttpServer::h1_write_buffer_size(4096)` (streams hand actix frames in 4 KiB pieces; with
/// that setting a large `hydrate` does not grow every stream's write buffer for the life of the
/// connection).
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/stream")
                .wrap(from_fn(vexil_dataplane_http::cors))
                .route(web::get().to(routes::server::stream_flags)),
        )
        .service(
            web::resource("/v1/client/stream")
                .wrap(from_fn(vexil_dataplane_http::cors))
                .route(web::get().to(routes::client::stream_values)),
        )
        .service(
            web::resource("/ofrep/v1/stream")
                .wrap(from_fn(vexil_dataplane_http::cors))
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

/// The streaming service, bound and ready to run: the dedicated deployment (`vexil streaming`).
///
/// It serves the routes of [`configure`] and [`configure_probes`] — the same handlers, so the same
/// bytes — with a problem+json `404`/`405` for anything else, but not on actix: on a small HTTP/1.1
/// server of this crate's own that holds an idle stream in a fraction of the memory (actix-http gives
/// every connection 8 KiB read and 8 KiB write buffers for its whole life; see the crate's "Memory"
/// section, and `http1.rs` for what the server does and does not do).
pub struct Application {
    port: u16,
    listener: tokio::net::TcpListener,
    shared: Arc<http1::Shared>,
    grace: Duration,
}

impl Application {
    /// Binds the listener (`settings.server`; port 0 picks a free one) and builds the server over
    /// `cache`, which something else fills and keeps current (`vexil_dataplane::BusSync`, or a relay
    /// upstream). Streams answer with a `retry:` hint only until the cache is ready.
    pub async fn build(settings: Settings, cache: Cache) -> anyhow::Result<Application> {
        let listener = http1::bind(&settings.server.host, settings.server.port)?;
        let port = listener.local_addr()?.port();
        let streaming = web::Data::new(StreamingState::new(&settings.dataplane));
        // One shard per worker thread: a change is written to the parked streams on every core at once.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let fanout = Fanout::start(&cache, &streaming, workers, http1::chunked);
        let shared = Arc::new(http1::Shared {
            cache: web::Data::new(cache),
            streaming,
            fanout,
            head_timeout: http1::HEAD_TIMEOUT,
        });
        let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
        Ok(Application { port, listener, shared, grace })
    }

    /// How long a request head may take to arrive before the connection is closed (default 5 s; also
    /// the longest an idle keep-alive connection is kept).
    pub fn with_head_timeout(mut self, timeout: Duration) -> Application {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.head_timeout = timeout;
        }
        self
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state; [`StreamingState::shutdown`] on it stops the application as SIGTERM would.
    pub fn state(&self) -> web::Data<StreamingState> {
        self.shared.streaming.clone()
    }

    /// Serves until SIGTERM or SIGINT (or [`StreamingState::shutdown`]), then stops: new connections
    /// are refused, every stream ends cleanly (its client reconnects elsewhere with `Last-Event-ID`),
    /// in-flight requests finish within `shutdown_grace_seconds`, and this returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { listener, shared, grace, .. } = self;
        let streaming = shared.streaming.clone();
        http1::serve(listener, shared, stop_requested(&streaming), grace).await;
        Ok(())
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
