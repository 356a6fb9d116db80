//! Memory per idle stream: opens N `/v1/stream` connections to an in-process service, waits for each
//! hydrate, and reports how much the process's resident memory grew per connection.
//!
//! `cargo run --release -p vexil-streaming --example idle_streams -- 9000` (needs `ulimit -n` above
//! 2 N: both ends of every connection are in this process). The client side of each connection is a
//! bare `TcpStream`, so the figure is a slight overestimate of the server's share. With a second
//! argument `healthz`, the connections make one `/healthz` request each and stay open idle instead:
//! the cost of an idle keep-alive connection to actix, to subtract.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vexil_config::Settings;
use vexil_dataplane::Cache;
use vexil_proto::{EnvironmentSnapshot, SdkKey};
use vexil_store::secrets::{self, SecretKind};
use vexil_streaming::Application;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Connects, sends the request, and reads until the hydrate (or the `/healthz` answer) has arrived.
async fn open(port: u16, request: &[u8]) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request).await?;
    let mut buf = [0u8; 8192];
    let mut seen = Vec::new();
    let done = |seen: &[u8]| {
        seen.ends_with(br#"{"status":"ok"}"#)
            || seen.windows(14).any(|w| w == b"event: hydrate")
                && (seen.ends_with(b"\n\n\r\n") || seen.ends_with(b"\n\n"))
    };
    while !done(&seen) {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed before the hydrate");
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(stream)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(10_000), |arg| arg.parse())?;
    let secret = secrets::generate(SecretKind::Server);
    let flags: Vec<_> = (0..50)
        .map(|i| {
            json!({"flag": {"key": format!("flag-{i}"), "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
                   "config": {"on": true, "off_variation": 1, "fallthrough": {"variation": 0}}})
        })
        .collect();
    let cache = Cache::new();
    cache.load(&EnvironmentSnapshot {
        environment_id: 1,
        project: "bench".into(),
        environment: "production".into(),
        revision: 1,
        snapshot_json: serde_json::to_vec(&json!({"revision": 1, "flags": flags}))?,
        keys: vec![SdkKey {
            id: secret.id.clone(),
            kind: "server".into(),
            secret_sha256: secret.sha256.to_vec(),
            expires_at_ms: 0,
        }],
        committed_at_ms: 0,
    })?;
    cache.mark_ready();
    let mut settings = Settings::default();
    settings.server.port = 0;
    let application = Application::build(settings, cache).await?;
    let port = application.port();
    let state = application.state();
    let server = tokio::spawn(application.run_until_stopped());
    let healthz = std::env::args().nth(2).is_some_and(|arg| arg == "healthz");
    let path = if healthz { "/healthz".to_owned() } else { format!("/v1/stream?key={}", secret.secret) };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();

    // Warm up the allocator and the workers before the baseline.
    let warm: Vec<_> = futures::future::try_join_all((0..100).map(|_| open(port, &request))).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let opened = futures::future::try_join_all(chunk.iter().map(|_| open(port, &request))).await?;
        streams.extend(opened);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib();
    println!(
        "{n} idle {} opened in {:.1?}; streams gauge {}; RSS {before} KiB -> {after} KiB: {:.2} KiB per connection (both ends)",
        if healthz { "keep-alive connections" } else { "streams" },
        started.elapsed(),
        state.metrics().connections(),
        (after.saturating_sub(before)) as f64 / n as f64,
    );
    drop(streams);
    state.shutdown();
    server.await??;
    Ok(())
}
