//! Building and running the control plane: the HTTP server, its routes and documentation, and the
//! change relay beside it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpMessage, HttpResponse, HttpServer, web};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_actix_web::{AppExt, scope};
use utoipa_swagger_ui::SwaggerUi;
use vexil_bus::Bus;
use vexil_config::Settings;
use vexil_store::Store;

use crate::error::{ApiError, ErrorCode};
use crate::extract::RequestId;
use crate::routes;
use crate::state::{AppState, Metrics};

/// The API document's fixed parts; paths and schemas are collected from the routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "Vexil management API", description = "Manage projects, environments, flags, segments, tokens and the audit log. \
        Authenticate with `Authorization: Bearer <management token>`, or (the dashboard) with the session cookie of \
        `POST /api/v1/session`, sending the session's `csrf_token` as `X-CSRF-Token` with every write. \
        Errors are `application/problem+json` with a stable `code` and the offending `field`."),
    modifiers(&BearerAuth),
    security(("bearer" = []), ("session" = [])),
    tags((name = "projects"), (name = "environments"), (name = "flags"), (name = "segments"), (name = "audit"), (name = "tokens"),
         (name = "session", description = "Dashboard sign-in: a management token exchanged for an httpOnly session cookie")),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::extract::SESSION_COOKIE,
                "The dashboard's session (POST /api/v1/session); writes also need X-CSRF-Token",
            ))),
        );
    }
}

/// The OpenAPI document of the management API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) =
        App::new().into_utoipa_app().openapi(ApiDoc::openapi()).service(api_scope()).split_for_parts();
    api
}

/// The `/api/v1` routes, for `into_utoipa_app().service(..)`.
pub fn api_scope() -> scope::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // actix tries resources in the order they are registered, one regular expression each, so the
    // routes called most (a flag's configuration changes) come first.
    scope::scope("/api/v1")
        .configure(routes::flags::configure)
        .configure(routes::projects::configure)
        .configure(routes::segments::configure)
        .configure(routes::audit::configure)
        .configure(routes::tokens::configure)
        .configure(routes::session::configure)
}

/// Adds the management API, its documentation, health and metrics routes, and the middleware to an
/// app. The same function serves the control-api binary, standalone mode and the tests.
pub fn configure_app(
    config: &mut web::ServiceConfig,
    state: web::Data<AppState>,
    openapi: Arc<utoipa::openapi::OpenApi>,
) {
    let json = Arc::new(openapi.to_json().unwrap_or_default());
    config
        .app_data(state)
        // For the default service (`fallback::not_found`): 405 on a documented path, else 404.
        .app_data(web::Data::new(crate::fallback::RouteTable::from_openapi(&openapi)))
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::new(ErrorCode::InvalidParameter, format!("invalid query: {error}")).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|error, _| {
            ApiError::new(ErrorCode::InvalidParameter, format!("invalid path: {error}")).into()
        }))
        .route("/healthz", web::get().to(routes::health::healthz))
        .route("/readyz", web::get().to(routes::health::readyz))
        .route("/metrics", web::get().to(routes::health::metrics))
        .route(
            "/api/v1/openapi.json",
            web::get().to(move || {
                let json = json.clone();
                async move { HttpResponse::Ok().content_type("application/json").body(json.as_str().to_owned()) }
            }),
        )
        .route("/api/docs", web::get().to(|| async { HttpResponse::Found().insert_header(("Location", "/api/docs/")).finish() }))
        .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/v1/openapi.json", (*openapi).clone()));
}

/// Request id, access log and response metrics around every request (`middleware::from_fn`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    let metrics = req.app_data::<web::Data<AppState>>().map(|state| state.metrics.clone());
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let started = Instant::now();
    let mut response = next.call(req).await?;
    let status = response.status().as_u16();
    if let Some(metrics) = metrics {
        metrics.responses.count(status);
    }
    tracing::info!(request_id = %id, %method, %path, status, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// The control plane, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    relay: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and starts the relay beside the server.
    pub async fn build(settings: Settings, store: Store, bus: Bus) -> anyhow::Result<Application> {
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
        let port = listener.local_addr()?.port();
        let metrics = Arc::new(Metrics::new());
        let settings = Arc::new(settings);
        let state = web::Data::new(AppState {
            store: store.clone(),
            settings: settings.clone(),
            metrics: metrics.clone(),
        });
        let shutdown = CancellationToken::new();
        let relay = tokio::spawn(vexil_outbox::run(store, bus, metrics.relay.clone(), shutdown.clone()));
        let openapi = Arc::new(openapi());
        let server = HttpServer::new(move || {
            let state = state.clone();
            let openapi = openapi.clone();
            // Plain routes first: the `/api/v1` scope would otherwise claim `/api/v1/openapi.json`.
            let (app, _) = App::new()
                .configure(|config| configure_app(config, state.clone(), openapi.clone()))
                .into_utoipa_app()
                .service(api_scope())
                .split_for_parts();
            // Outermost last: `observe` assigns the request id that `authenticate` and the audit log use.
            app.default_service(web::to(crate::fallback::not_found))
                .wrap(from_fn(crate::extract::authenticate))
                .wrap(from_fn(observe))
        })
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_grace_seconds)
        .run();
        Ok(Application { port, server, relay, shutdown })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT (actix drains in-flight requests), then stops the relay.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await;
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.relay).await;
        Ok(result?)
    }
}
