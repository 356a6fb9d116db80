//! Building and running the evaluation service: its routes, middleware and HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::uri::{PathAndQuery, Uri};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use utoipa::OpenApi;
use vexil_config::Settings;
use vexil_dataplane::Cache;
use vexil_http::error::{ApiError, ErrorCode};

use crate::routes;
use crate::state::EvaluationState;

/// The `/v1` API document; the paths come from the routes' `#[utoipa::path]`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Vexil evaluation API", description = "The data plane's request/response API for SDKs: polling with ETag, \
        server-side evaluation and event ingestion. Authenticate with an SDK key: `Authorization: Bearer <key>`, `X-API-Key`, \
        or `?key=`. Errors are `application/problem+json` with a stable `code`. OFREP (`/ofrep/v1/evaluate/flags[/{key}]`) follows \
        the OpenFeature Remote Evaluation Protocol and is not described here."),
    paths(routes::flags::get_flags, routes::evaluate::evaluate, routes::events::post_events),
    components(schemas(vexil_http::error::Problem, vexil_http::error::ErrorCode, vexil_model::FieldError)),
    modifiers(&SdkKeyAuth),
    tags((name = "polling"), (name = "evaluation"), (name = "events")),
)]
struct ApiDoc;

struct SdkKeyAuth;

impl utoipa::Modify for SdkKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "sdk_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the `/v1` routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Every route of the evaluation service: the SDK routes ([`configure_routes`]) plus `/healthz`,
/// `/readyz` and `/metrics`. Needs `web::Data<Cache>` and `web::Data<EvaluationState>` registered on the
/// app. Wrap the app in [`normalize_path`] (for `//ofrep/...`) and `vexil_dataplane_http::cors`, as
/// [`Application`] does.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(routes::health::healthz))
        .route("/readyz", web::get().to(routes::health::readyz))
        .route("/metrics", web::get().to(routes::health::metrics))
        .configure(configure_routes);
}

/// The SDK routes alone (`/v1/...`, `/ofrep/v1/...`), for an app that serves its own health and metrics.
pub fn configure_routes(config: &mut web::ServiceConfig) {
    let openapi_json = Arc::new(openapi().to_json().unwrap_or_default());
    config
        .service(
            web::resource("/v1/flags")
                .route(web::get().to(routes::flags::get_flags))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/evaluate")
                .route(web::post().to(routes::evaluate::evaluate))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/events")
                .route(web::post().to(routes::events::post_events))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v1/openapi.json").route(web::get().to(move || {
            let json = openapi_json.clone();
            async move { HttpResponse::Ok().content_type("application/json").body(json.as_str().to_owned()) }
        })))
        .service(
            web::resource("/ofrep/v1/evaluate/flags")
                .route(web::post().to(routes::ofrep::evaluate_flags_ofrep))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/ofrep/v1/evaluate/flags/{key}")
                .route(web::post().to(routes::ofrep::evaluate_flag_ofrep))
                .default_service(web::to(method_not_allowed)),
        );
}

/// A problem+json 404 for anything no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such route; the API is described at /v1/openapi.json"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::MethodNotAllowed, "this route does not answer that method"))
}

/// Collapses a run of leading slashes into one (`//ofrep/v1/...` → `/ofrep/v1/...`) before routing: the
/// JS OFREP providers produce a doubled slash when their base URL ends in `/`. Use with
/// `middleware::from_fn`.
pub async fn normalize_path(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.path().starts_with("//") {
        let path = format!("/{}", req.path().trim_start_matches('/'));
        let path_and_query = match req.query_string() {
            "" => path,
            query => format!("{path}?{query}"),
        };
        let mut parts = req.head().uri.clone().into_parts();
        parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            req.match_info_mut().get_mut().update(&uri);
            req.head_mut().uri = uri;
        }
    }
    next.call(req).await
}

/// Response metrics and a debug-level access log around every request (`middleware::from_fn`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<EvaluationState>>().map(|state| state.metrics.clone());
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let started = Instant::now();
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    if let Some(metrics) = metrics {
        metrics.responses.count(status);
    }
    tracing::debug!(%method, %path, status, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request");
    Ok(response)
}

/// The evaluation service, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `settings.server` (port 0 picks a free one) and builds the server over `cache`, which
    /// something else keeps current (a `BusSync`, or a test).
    pub async fn build(
        settings: Settings,
        cache: Cache,
        state: EvaluationState,
    ) -> anyhow::Result<Application> {
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
        let port = listener.local_addr()?.port();
        tracing::info!(
            port,
            rate_limit_per_second = state.settings.dataplane.rate_limit_per_second,
            max_body_bytes = state.settings.dataplane.max_body_bytes,
            "evaluation service listening"
        );
        let cache = web::Data::new(cache);
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(cache.clone())
                .app_data(state.clone())
                .configure(configure)
                .default_service(web::to(not_found))
                .wrap(from_fn(vexil_dataplane_http::cors))
                .wrap(from_fn(observe))
                .wrap(from_fn(normalize_path))
        })
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_grace_seconds)
        .run();
        Ok(Application { port, server })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT; actix drains in-flight requests for `shutdown_grace_seconds`.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        Ok(self.server.await?)
    }
}
