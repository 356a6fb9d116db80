//! The routes on actix, for standalone mode (one port for every role): [`configure`] and
//! [`configure_probes`], their handlers — each a thin adapter over the server-agnostic route
//! (`crate::routes`) — and the streaming response. Nothing else in this crate's serving path knows
//! actix; the streaming deployment's own server (`crate::http1`) calls the same routes.

use std::convert::Infallible;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use vexil_dataplane::Cache;
use vexil_http::error::ApiError;

use crate::routes::health::{self, Reply};
use crate::routes::{StreamRequest, StreamRoute};
use crate::state::StreamingState;
use crate::stream::{self, Body, Open};

/// The largest piece of a frame handed to actix at once. actix copies each piece into the
/// connection's write buffer, which keeps (up to 128 KiB of) whatever capacity it grew to for as long
/// as the connection lives: a 100 kB hydrate written whole would cost every idle stream 100 kB.
/// Pieces this size, with the server's `h1_write_buffer_size` at the same figure, keep that buffer at
/// its initial 8 KiB. (The streaming deployment's own server writes frames straight to the socket,
/// whole.)
pub(crate) const MAX_CHUNK: usize = 4096;

/// Adds the three stream routes, each with CORS for browsers (`vexil_dataplane_http::cors`, on the
/// resource so that it answers their preflights too):
///
/// * `GET /v1/stream` — the flag configurations, for server SDKs;
/// * `GET /v1/client/stream` — values evaluated for one context, for client SDKs;
/// * `GET /ofrep/v1/stream` — OFREP change notifications.
///
/// The app must register `web::Data<vexil_dataplane::Cache>` and `web::Data<StreamingState>` (the
/// same `Data` in every worker: build them once, outside the `HttpServer` factory). The probes are
/// separate ([`configure_probes`]) so that a process serving several roles on one port can render
/// one `/metrics` ([`Metrics::render`](crate::Metrics::render) gives this crate's part).
///
/// A server embedding these routes should call [`StreamingState::shutdown`] before draining on
/// SIGTERM (open streams would otherwise hold the drain until its timeout), and set
/// `HttpServer::h1_write_buffer_size(4096)` (streams hand actix frames in 4 KiB pieces; with that
/// setting a large `hydrate` does not grow every stream's write buffer for the life of the connection).
pub fn configure(config: &mut web::ServiceConfig) {
    for (path, route) in [
        ("/v1/stream", StreamRoute::Flags),
        ("/v1/client/stream", StreamRoute::Values),
        ("/ofrep/v1/stream", StreamRoute::Ofrep),
    ] {
        config.service(web::resource(path).wrap(from_fn(vexil_dataplane_http::cors)).route(web::get().to(
            move |req: HttpRequest, cache: web::Data<Cache>, streaming: web::Data<StreamingState>| {
                open_stream(route, req, cache, streaming)
            },
        )));
    }
}

/// Adds `/healthz`, `/readyz` (503 until the cache is ready, and once shutting down) and `/metrics`.
pub fn configure_probes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(|| async { response(health::health()) }))
        .route(
            "/readyz",
            web::get().to(|cache: web::Data<Cache>, streaming: web::Data<StreamingState>| async move {
                response(health::readiness(&cache, &streaming))
            }),
        )
        .route(
            "/metrics",
            web::get().to(|streaming: web::Data<StreamingState>| async move {
                response(health::metrics_text(&streaming))
            }),
        );
}

/// One of the stream routes.
async fn open_stream(
    route: StreamRoute,
    req: HttpRequest,
    cache: web::Data<Cache>,
    streaming: web::Data<StreamingState>,
) -> Result<HttpResponse, ApiError> {
    let streaming: Arc<StreamingState> = streaming.into_inner();
    route.open(&request(&req), &cache, &streaming).map(stream_response)
}

/// What a stream route reads from an actix request.
fn request(req: &HttpRequest) -> StreamRequest<'_> {
    let header = |name: &str| req.headers().get(name).map(|value| value.to_str());
    StreamRequest {
        query: req.query_string(),
        authorization: header("authorization").and_then(Result::ok),
        api_key: header("x-api-key").and_then(Result::ok),
        last_event_id: header("last-event-id").map(|value| value.unwrap_or("\u{fffd}")),
    }
}

fn response(reply: Reply) -> HttpResponse {
    HttpResponse::build(reply.status).content_type(reply.content_type).body(reply.body)
}

/// A stream as an actix response: [`stream::HEADERS`], and the body in pieces of at most [`MAX_CHUNK`].
fn stream_response(body: Body) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    for header in stream::HEADERS {
        response.insert_header(header);
    }
    let pieces = frames(body).flat_map(|frame| futures::stream::iter(Pieces(frame)));
    response.streaming(pieces.map(Ok::<_, Infallible>))
}

/// The frames of a body, whole, in order; the end of the stream is a clean end of the response.
fn frames(body: Body) -> std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send>> {
    match body {
        Body::Open(open) => Box::pin(futures::stream::unfold(open, |mut open: Box<Open>| async move {
            let chunk = open.next_chunk().await?;
            Some((chunk, open))
        })),
        Body::RetryLater(frame) => Box::pin(futures::stream::iter([frame])),
    }
}

/// A frame in pieces of at most [`MAX_CHUNK`] bytes; zero-copy (each piece is a view of the same,
/// possibly shared, frame).
struct Pieces(Bytes);

impl Iterator for Pieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        (!self.0.is_empty()).then(|| self.0.split_to(self.0.len().min(MAX_CHUNK)))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use vexil_protocol::resume::LastEventId;

    use super::*;

    #[test]
    fn a_large_frame_is_handed_to_actix_in_pieces_of_at_most_max_chunk() {
        let large = Bytes::from(vec![b'x'; 2 * MAX_CHUNK + 10]);
        let pieces: Vec<Bytes> = Pieces(large.clone()).collect();
        assert_eq!(pieces.iter().map(Bytes::len).collect::<Vec<_>>(), [MAX_CHUNK, MAX_CHUNK, 10]);
        assert_eq!(pieces.concat(), large);
        assert_eq!(Pieces(Bytes::from_static(b"small")).collect::<Vec<_>>(), [Bytes::from_static(b"small")]);
        assert_eq!(Pieces(Bytes::new()).count(), 0);
    }

    #[test]
    fn a_last_event_id_header_that_is_not_text_is_invalid() {
        let req = TestRequest::default()
            .insert_header((
                "Last-Event-ID",
                actix_web::http::header::HeaderValue::from_bytes(b"4\xe92").unwrap(),
            ))
            .to_http_request();
        assert_eq!(LastEventId::of(request(&req).last_event_id, Some("7")), LastEventId::Invalid);
        let req = TestRequest::default().insert_header(("Last-Event-ID", "42")).to_http_request();
        assert_eq!(LastEventId::of(request(&req).last_event_id, Some("7")), LastEventId::Revision(42));
    }
}
