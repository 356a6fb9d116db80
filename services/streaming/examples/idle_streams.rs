//! Memory per idle stream: opens N `/v1/stream` connections to the streaming service, waits for each
//! hydrate, and reports how much the *server process's* resident memory grew per connection.
//!
//! ```text
//! cargo build --release -p vexil-streaming --example idle_streams
//! target/release/examples/idle_streams 10000            # Application (its own server)
//! target/release/examples/idle_streams 10000 --actix    # configure() on actix
//! target/release/examples/idle_streams 10000 --healthz  # idle keep-alive connections instead
//! ```
//!
//! The server runs in a child process (this example again, with `--serve`), so that its RSS is the
//! server's alone and each process needs only N file descriptors (`ulimit -n` above N). The environment
//! has 50 flags (a ~10 kB hydrate, shared by every stream); the clients are bare `TcpStream`s that
//! read their hydrate and then nothing. `--healthz` makes one `/healthz` request per connection and
//! keeps it open idle instead: the cost of an idle keep-alive connection, for comparison. `--actix`
//! serves the routes with `configure` on an actix `HttpServer` set up as standalone mode sets it up
//! (what the streaming deployment used before it had its own server).

use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use vexil_config::Settings;
use vexil_dataplane::Cache;
use vexil_keys::SecretKind;
use vexil_proto::{EnvironmentSnapshot, SdkKey};
use vexil_streaming::{Application, StreamingState};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
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

/// The server: a ready cache with one environment of 50 flags, served until stdin closes. Prints its
/// port and the server key.
async fn serve(actix: bool) -> anyhow::Result<()> {
    let secret = vexil_keys::generate(SecretKind::Server);
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
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    };
    if actix {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        println!("{} {}", listener.local_addr()?.port(), secret.secret);
        let streaming = web::Data::new(StreamingState::new(&settings.dataplane));
        let cache = web::Data::new(cache);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(cache.clone())
                .app_data(streaming.clone())
                .configure(vexil_streaming::configure_probes)
                .configure(vexil_streaming::configure)
        })
        .h1_write_buffer_size(4096)
        .backlog(1024)
        .listen(listener)?
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        stdin_closed.await;
        handle.stop(false).await;
    } else {
        let application = Application::build(settings, cache).await?;
        println!("{} {}", application.port(), secret.secret);
        let state = application.state();
        let server = tokio::spawn(application.run_until_stopped());
        stdin_closed.await;
        state.shutdown();
        server.await??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    if flag("--serve") {
        return serve(flag("--actix")).await;
    }
    let n: usize = args.iter().find(|arg| !arg.starts_with("--")).map_or(Ok(10_000), |arg| arg.parse())?;
    let healthz = flag("--healthz");

    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--serve").stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true);
    if flag("--actix") {
        command.arg("--actix");
    }
    let mut child = command.spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("the server exited"))?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first).await?;
    let (port, key) = first.trim().split_once(' ').ok_or_else(|| anyhow::anyhow!("no port: {first:?}"))?;
    let port: u16 = port.parse()?;
    let path = if healthz { "/healthz".to_owned() } else { format!("/v1/stream?key={key}") };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();

    // Warm up the allocator and the workers before the baseline.
    let warm: Vec<_> = futures::future::try_join_all((0..200).map(|_| open(port, &request))).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let opened = futures::future::try_join_all(chunk.iter().map(|_| open(port, &request))).await?;
        streams.extend(opened);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let metrics = open_metrics(port).await?;
    let gauge = metrics
        .lines()
        .find(|line| line.starts_with("vexil_streaming_connections{stream=\"server\"}"))
        .unwrap_or("no gauge");
    println!(
        "{n} idle {} ({}) opened in {:.1?}; {gauge}; \
         server RSS {before} KiB -> {after} KiB: {:.2} KiB per connection",
        if healthz { "keep-alive connections" } else { "streams" },
        if flag("--actix") { "actix, configure()" } else { "Application, own server" },
        started.elapsed(),
        (after.saturating_sub(before)) as f64 / n as f64,
    );
    drop(streams);
    drop(child.stdin.take());
    tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    Ok(())
}

/// The server's `/metrics`, over a connection of its own.
async fn open_metrics(port: u16) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}
