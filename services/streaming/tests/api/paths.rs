//! The two serving paths — `Application`'s own server and the actix routes of `configure` — over one
//! cache, sent the same requests: the same statuses, headers and bytes.

use actix_web::web::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::HeaderMap;

use crate::helpers::*;

/// Both servers over one cache.
struct Both {
    lean: reqwest::Client,
    lean_address: String,
    actix_address: String,
}

impl Both {
    /// `GET path` from each server, lean first.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> [reqwest::Response; 2] {
        let mut answers = Vec::new();
        for address in [&self.lean_address, &self.actix_address] {
            let mut request = self.lean.get(format!("{address}{path}"));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            answers.push(request.send().await.expect("request"));
        }
        answers.try_into().unwrap()
    }
}

/// Reads a streaming body until it has `blocks` more blank-line-terminated SSE blocks.
struct Body {
    stream: BoxStream<'static, reqwest::Result<Bytes>>,
    received: Vec<u8>,
}

impl Body {
    fn new(response: reqwest::Response) -> Body {
        Body { stream: response.bytes_stream().boxed(), received: Vec::new() }
    }

    async fn blocks(&mut self, blocks: usize) -> Vec<u8> {
        let start = self.received.len();
        let count = |bytes: &[u8]| bytes.windows(2).filter(|w| w == b"\n\n").count();
        let read = async {
            while count(&self.received[start..]) < blocks {
                let chunk = self.stream.next().await.expect("more of the stream").expect("a chunk");
                self.received.extend_from_slice(&chunk);
            }
        };
        tokio::time::timeout(DEADLINE, read).await.expect("the blocks within the deadline");
        self.received[start..].to_vec()
    }
}

/// The headers both servers must agree on: all but those each server sets for itself.
fn comparable(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            !matches!(name.as_str(), "date" | "transfer-encoding" | "connection" | "content-length")
        })
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
        .collect();
    list.sort();
    list
}

async fn both() -> (TestApp, Both) {
    let app = spawn_app().await;
    let (actix_port, _, _) = app.serve_also(Serving::Actix).await;
    let both = Both {
        lean: reqwest::Client::new(),
        lean_address: app.address.clone(),
        actix_address: format!("http://127.0.0.1:{actix_port}"),
    };
    (app, both)
}

#[tokio::test]
async fn both_paths_stream_the_same_bytes() {
    let (app, both) = both().await;
    let context = base64url(br#"{"targetingKey":"user-1"}"#);
    let before = app.revision("production").await;
    app.create_flag("banner", true).await;
    let server = app.production.server.clone();
    let client = app.production.client.clone();
    let since = before.to_string();
    // Each answers with two blocks at first: `retry:`, then
    let opened = [
        // a hydrate,
        (format!("/v1/stream?key={server}"), &[][..]),
        // the replayed creation of `banner`,
        (format!("/v1/stream?key={server}&prefix=ban"), &[("Last-Event-ID", since.as_str())][..]),
        // the values,
        (
            format!("/v1/client/stream?key={client}&context={context}"),
            &[("Origin", "https://shop.example")][..],
        ),
        // one refetch for what was missed.
        (format!("/ofrep/v1/stream?key={client}"), &[("Last-Event-ID", since.as_str())][..]),
    ];
    let mut streams = Vec::new();
    for (path, headers) in &opened {
        let [lean, actix] = both.get(path, headers).await;
        assert_eq!((lean.status().as_u16(), actix.status().as_u16()), (200, 200), "{path}");
        assert_eq!(comparable(lean.headers()), comparable(actix.headers()), "{path}");
        let (mut lean, mut actix) = (Body::new(lean), Body::new(actix));
        let (lean_bytes, actix_bytes) = (lean.blocks(2).await, actix.blocks(2).await);
        assert!(lean_bytes.starts_with(b"retry: "), "{path}: {}", String::from_utf8_lossy(&lean_bytes));
        assert_eq!(String::from_utf8_lossy(&lean_bytes), String::from_utf8_lossy(&actix_bytes), "{path}");
        streams.push((path.clone(), lean, actix));
    }

    app.toggle("checkout", true).await;
    app.toggle("banner", true).await;

    // Flag stream: two patches; filtered: one; client: two values; OFREP: two messages.
    for ((path, lean, actix), blocks) in streams.iter_mut().zip([2, 1, 2, 2]) {
        let (lean_bytes, actix_bytes) = (lean.blocks(blocks).await, actix.blocks(blocks).await);
        assert!(lean_bytes.starts_with(b"event: "), "{path}: {}", String::from_utf8_lossy(&lean_bytes));
        assert_eq!(String::from_utf8_lossy(&lean_bytes), String::from_utf8_lossy(&actix_bytes), "{path}");
    }
}

#[tokio::test]
async fn both_paths_answer_errors_with_the_same_problems() {
    let (app, both) = both().await;
    let server = &app.production.server;
    let cases = [
        "/v1/stream".to_owned(),
        "/v1/stream?key=vxs_nope".into(),
        format!("/v1/stream?key={}", app.production.client),
        format!("/v1/stream?key={server}&prefix=a%20b"),
        format!("/v1/stream?key={server}&prefix=a&prefix=b"),
        format!("/v1/client/stream?key={}&context=!!", app.production.client),
        "/ofrep/v1/stream?key=".into(),
        "/nowhere".into(),
        "/v1/stream/more".into(),
    ];

    for path in &cases {
        for headers in [&[][..], &[("Origin", "https://shop.example")][..]] {
            let [lean, actix] = both.get(path, headers).await;
            assert!(lean.status().is_client_error(), "{path}: {}", lean.status());
            assert_eq!(lean.status(), actix.status(), "{path}");
            assert_eq!(comparable(lean.headers()), comparable(actix.headers()), "{path} {headers:?}");
            assert_eq!(lean.headers()["content-type"], "application/problem+json", "{path}");
            let (lean, actix) = (lean.bytes().await.unwrap(), actix.bytes().await.unwrap());
            assert_eq!(String::from_utf8_lossy(&lean), String::from_utf8_lossy(&actix), "{path}");
        }
    }
}

#[tokio::test]
async fn both_paths_answer_probes_and_preflights_alike() {
    let (_app, both) = both().await;

    for path in ["/healthz", "/readyz"] {
        let [lean, actix] = both.get(path, &[]).await;
        assert_eq!((lean.status().as_u16(), actix.status().as_u16()), (200, 200), "{path}");
        assert_eq!(comparable(lean.headers()), comparable(actix.headers()), "{path}");
        assert_eq!(lean.bytes().await.unwrap(), actix.bytes().await.unwrap(), "{path}");
    }
    let [lean, actix] = both.get("/metrics", &[]).await;
    assert_eq!(comparable(lean.headers()), comparable(actix.headers()));
    let (lean, actix) = (lean.text().await.unwrap(), actix.text().await.unwrap());
    let names = |text: &str| -> Vec<String> {
        text.lines().map(|line| line.split(' ').next().unwrap_or_default().to_owned()).collect()
    };
    assert_eq!(names(&lean), names(&actix), "the same metrics");

    for path in ["/v1/stream", "/v1/client/stream", "/ofrep/v1/stream"] {
        let mut answers = Vec::new();
        for address in [&both.lean_address, &both.actix_address] {
            let preflight = both
                .lean
                .request(reqwest::Method::OPTIONS, format!("{address}{path}"))
                .header("Origin", "https://shop.example")
                .header("Access-Control-Request-Method", "GET")
                .header("Access-Control-Request-Headers", "last-event-id")
                .send()
                .await
                .unwrap();
            answers.push((preflight.status(), comparable(preflight.headers())));
        }
        assert_eq!(answers[0].0, 204, "{path}");
        assert_eq!(answers[0], answers[1], "{path}");
    }
}
