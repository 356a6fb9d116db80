//! What only `Application`'s own HTTP/1.1 server does, seen from a bare TCP connection: framing,
//! keep-alive, limits, malformed requests, and noticing a client that went away.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vexil_testkit::eventually;

use crate::helpers::*;

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").into_bytes()
}

fn problem_code(body: &[u8]) -> String {
    let problem: Value = serde_json::from_slice(body).expect("a problem document");
    problem["code"].as_str().expect("a code").to_owned()
}

fn header<'h>(head: &'h [String], name: &str) -> Option<&'h str> {
    head.iter().find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

#[tokio::test]
async fn a_stream_is_chunked_and_ends_with_the_last_chunk_on_shutdown() {
    let mut app = spawn_app().await;
    let mut client = RawClient::connect(app.port).await;
    client.send(&get(&format!("/v1/stream?key={}", app.production.server), "")).await;
    assert!(client.read_until(|bytes| contains(bytes, b"event: hydrate")).await);

    app.stop().await;
    client.read_to_end().await;

    let text = client.text();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for line in ["transfer-encoding: chunked", "content-type: text/event-stream", "connection: close"] {
        assert!(head.contains(line), "{line} in {head}");
    }
    assert!(body.starts_with(&format!("{:x}\r\nretry: 200\n\n\r\n", "retry: 200\n\n".len())), "{body}");
    assert!(body.ends_with("\r\n0\r\n\r\n"), "a clean end: {body:?}");
}

#[tokio::test]
async fn an_idle_stream_ends_as_soon_as_its_client_goes_away() {
    // Heartbeats every 60 s: the server must notice the disconnect by itself, not by a failed ping.
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.port).await;
    client.send(&get(&format!("/v1/stream?key={}", app.production.server), "")).await;
    assert!(client.read_until(|bytes| contains(bytes, b"event: hydrate")).await);
    assert!(app.metrics().await.contains("vexil_streaming_connections{stream=\"server\"} 1\n"));
    let started = Instant::now();

    drop(client);

    let gone = eventually(DEADLINE, || async {
        app.metrics().await.contains("vexil_streaming_connections{stream=\"server\"} 0\n")
    })
    .await;
    assert!(gone, "the gauge goes back to 0: {}", app.metrics().await);
    assert!(started.elapsed() < Duration::from_secs(5), "noticed in {:?}", started.elapsed());
}

#[tokio::test]
async fn an_http_1_0_client_gets_a_close_delimited_stream() {
    let mut app = spawn_app().await;
    let mut client = RawClient::connect(app.port).await;
    let request = format!("GET /v1/stream?key={} HTTP/1.0\r\n\r\n", app.production.server);
    client.send(request.as_bytes()).await;
    assert!(client.read_until(|bytes| contains(bytes, b"event: hydrate")).await);

    app.stop().await;
    client.read_to_end().await;

    let text = client.text();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(body.starts_with("retry: 200\n\nevent: hydrate\n"), "{body}");
    assert!(body.ends_with("}\n\n"), "{body:?}");
}

#[tokio::test]
async fn probes_keep_the_connection_alive_and_pipelined_requests_are_answered_in_order() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.port).await;

    client.send(&[get("/healthz", ""), get("/readyz", ""), get("/nowhere", "")].concat()).await;
    assert!(client.read_until(|bytes| responses(bytes).len() == 3).await);
    client.send(&get("/healthz", "Connection: close\r\n")).await;
    client.read_to_end().await;

    let answers = responses(&client.received);
    let statuses: Vec<&str> = answers.iter().map(|(head, _)| head[0].as_str()).collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"],
        "{}",
        client.text()
    );
    assert_eq!(answers[0].1, br#"{"status":"ok"}"#);
    assert_eq!(answers[1].1, br#"{"status":"ready"}"#);
    assert_eq!(problem_code(&answers[2].1), "not_found");
    assert_eq!(header(&answers[0].0, "connection"), None, "kept alive");
    assert_eq!(header(&answers[3].0, "connection"), Some("close"));
    assert!(header(&answers[0].0, "date").is_some());
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_that_names_the_allowed_ones() {
    let app = spawn_app().await;

    for (request, allow) in [
        (
            format!("POST /v1/stream?key={} HTTP/1.1\r\ncontent-length: 0\r\n\r\n", app.production.server),
            "GET, OPTIONS",
        ),
        ("OPTIONS /v1/client/stream HTTP/1.1\r\n\r\n".to_owned(), "GET, OPTIONS"),
        ("DELETE /healthz HTTP/1.1\r\n\r\n".to_owned(), "GET"),
    ] {
        let mut client = RawClient::connect(app.port).await;
        client.send(request.as_bytes()).await;
        assert!(client.read_until(|bytes| !responses(bytes).is_empty()).await, "{request}");
        let (head, body) = &responses(&client.received)[0];
        assert_eq!(head[0], "HTTP/1.1 405 Method Not Allowed", "{request}");
        assert_eq!(header(head, "allow"), Some(allow), "{request}");
        assert_eq!(header(head, "content-type"), Some("application/problem+json"), "{request}");
        assert_eq!(problem_code(body), "method_not_allowed", "{request}");
    }
    let mut client = RawClient::connect(app.port).await;
    client.send(b"HEAD /metrics HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(client.read_until(|bytes| contains(bytes, br#"{"status":"ok"}"#)).await);
    let text = client.text();
    assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
    let second = text.find("HTTP/1.1 200 OK\r\n").expect("the GET's answer");
    assert!(text[..second].ends_with("\r\n\r\n"), "the HEAD answer has no body: {text}");
}

#[tokio::test]
async fn an_oversized_head_is_a_431_problem_and_the_connection_closes() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.port).await;
    let cookie = format!("Cookie: {}\r\n", "c".repeat(20 * 1024));

    client.send(&get("/healthz", &cookie)).await;
    client.read_to_end().await;

    let answers = responses(&client.received);
    assert_eq!(answers.len(), 1, "{}", client.text());
    assert_eq!(answers[0].0[0], "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(header(&answers[0].0, "connection"), Some("close"));
    assert_eq!(problem_code(&answers[0].1), "headers_too_large");
}

#[tokio::test]
async fn a_malformed_head_is_a_400_problem_and_the_connection_closes() {
    let app = spawn_app().await;

    for request in
        ["GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", "GET /healthz HTTP/7.0\r\n\r\n", "\x01\x02\r\n\r\n"]
    {
        let mut client = RawClient::connect(app.port).await;
        client.send(request.as_bytes()).await;
        client.read_to_end().await;
        let answers = responses(&client.received);
        assert_eq!(answers.len(), 1, "{request:?}: {}", client.text());
        assert_eq!(answers[0].0[0], "HTTP/1.1 400 Bad Request", "{request:?}");
        assert_eq!(problem_code(&answers[0].1), "malformed_request", "{request:?}");
    }
}

#[tokio::test]
async fn a_head_that_does_not_arrive_in_time_closes_the_connection() {
    let app =
        spawn_app_with(Options { head_timeout: Some(Duration::from_millis(300)), ..Options::default() })
            .await;
    let mut idle = RawClient::connect(app.port).await;
    let mut slow = RawClient::connect(app.port).await;
    let started = Instant::now();

    slow.send(b"GET /healthz HTTP/1.1\r\nHost: loc").await;
    idle.read_to_end().await;
    slow.read_to_end().await;

    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    assert_eq!((idle.received.len(), slow.received.len()), (0, 0), "closed without an answer");
    let mut kept = RawClient::connect(app.port).await;
    kept.send(&get("/healthz", "")).await;
    assert!(kept.read_until(|bytes| responses(bytes).len() == 1).await);
    kept.read_to_end().await;
    assert_eq!(responses(&kept.received).len(), 1, "an idle keep-alive connection ends too");
}

#[tokio::test]
async fn a_doubled_leading_slash_and_an_absolute_target_reach_the_route() {
    let app = spawn_app().await;

    for target in [
        format!("//ofrep/v1/stream?key={}", app.production.client),
        format!("http://localhost/v1/stream?key={}", app.production.server),
    ] {
        let mut client = RawClient::connect(app.port).await;
        client.send(&get(&target, "")).await;
        assert!(client.read_until(|bytes| contains(bytes, b"retry: 200")).await, "{target}");
        assert!(client.has("HTTP/1.1 200 OK\r\n"), "{target}: {}", client.text());
    }
}

#[tokio::test]
async fn a_stream_client_that_keeps_sending_is_disconnected() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.port).await;
    client.send(&get(&format!("/v1/stream?key={}", app.production.server), "")).await;
    assert!(client.read_until(|bytes| contains(bytes, b"event: hydrate")).await);

    // More than a request head's worth of bytes after the request: not an SSE client.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut client.stream, &vec![b'x'; 64 * 1024]).await;

    let gone = eventually(DEADLINE, || async {
        app.metrics().await.contains("vexil_streaming_connections{stream=\"server\"} 0\n")
    })
    .await;
    assert!(gone, "{}", app.metrics().await);
}

/// The ids of the events in a raw stream body (chunk framing and all), in order.
fn ids(bytes: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(|id| id.trim().parse().expect("a numeric id"))
        .collect()
}

/// A production configuration of `checkout` that targets `users` user keys (~20 bytes each in a frame).
fn targeting(users: usize, round: usize) -> Value {
    let values: Vec<String> = (0..users).map(|i| format!("user-{round}-{i:06}")).collect();
    json!({"on": true, "off_variation": 1, "fallthrough": {"variation": 0},
           "targets": [{"variation": 0, "values": values}]})
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_every_change_in_order_once_it_reads_again() {
    let app = spawn_app().await;
    let mut client = RawClient::connect_with_receive_buffer(app.port, 4096).await;
    client.send(&get(&format!("/v1/stream?key={}", app.production.server), "")).await;
    assert!(client.read_until(|bytes| contains(bytes, b"event: hydrate")).await);
    let first = app.revision("production").await;
    assert_eq!(ids(&client.received), [first]);

    // The client reads nothing while ~50 kB changes are made, until the socket is full and the
    // fan-out has had to hand a change over to the stream's own task.
    for round in 0..300 {
        app.configure("checkout", targeting(2_500, round)).await;
        if app.metric("vexil_streaming_fanout_handovers_total").await > 0 {
            break;
        }
    }
    assert!(app.metric("vexil_streaming_fanout_handovers_total").await > 0, "the socket never filled up");
    // One more, made while the stream's task (not the fan-out) has the socket.
    let last = app.configure("checkout", targeting(10, 1_000)).await;

    assert!(client.read_until(|bytes| ids(bytes).last() == Some(&last)).await);
    let expected: Vec<u64> = (first..=last).collect();
    assert_eq!(ids(&client.received), expected, "every change once, in order, after the hydrate");
    assert!(client.has("user-1000-000009"), "the last change's data arrived whole");
}

#[tokio::test]
async fn parked_streams_get_every_change_once_and_in_order_and_each_is_counted_once() {
    let app = spawn_app().await;
    let mut readers = Vec::new();
    for _ in 0..20 {
        let mut reader = app.open_flags("", &[]).await;
        assert_eq!(reader.event().await.name, "hydrate");
        readers.push(reader);
    }
    let first = app.revision("production").await;
    let mut last = first;
    for change in 0..25 {
        last = app.toggle("checkout", change % 2 == 0).await;
    }

    for reader in &mut readers {
        for expected in first + 1..=last {
            let event = reader.event().await;
            assert_eq!((event.name.as_str(), event.id), ("patch", Some(expected)));
            assert_eq!(event.data["config"]["on"], json!((expected - first) % 2 == 1), "{event:?}");
        }
    }
    let deliveries = 20 * (last - first);
    assert_eq!(app.metric("vexil_streaming_events_sent_total{event=\"patch\"}").await, deliveries);
    assert_eq!(app.metric("vexil_streaming_propagation_lag_seconds_count").await, deliveries);
}
