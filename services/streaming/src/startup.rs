//! Building and running the streaming deployment: [`Application`], on its own lean HTTP/1.1 server
//! (`crate::http1`). (Standalone mode adds the same routes to its actix app: `crate::actix`.)

use std::sync::Arc;
use std::time::Duration;

use vexil_config::Settings;
use vexil_dataplane::Cache;

use crate::fanout::Fanout;
use crate::http1;
use crate::state::StreamingState;

/// The streaming service, bound and ready to run: the dedicated deployment (`vexil streaming`).
///
/// It serves the routes of [`configure`](crate::configure) and [`configure_probes`](crate::configure_probes)
/// — the same route functions, so the same bytes — with a problem+json `404`/`405` for anything else, but not on actix: on a small HTTP/1.1
/// server of this crate's own that holds an idle stream in a fraction of the memory (actix-http gives
/// every connection 8 KiB read and 8 KiB write buffers for its whole life; see the crate's "Memory"
/// section, and `http1/` for what the server does and does not do).
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
        let streaming = Arc::new(StreamingState::new(&settings.dataplane));
        // One shard per worker thread: a change is written to the parked streams on every core at once.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let fanout = Fanout::start(&cache, &streaming, workers, http1::chunked);
        let shared = Arc::new(http1::Shared { cache, streaming, fanout, head_timeout: http1::HEAD_TIMEOUT });
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
    pub fn state(&self) -> Arc<StreamingState> {
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
