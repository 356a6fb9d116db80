//! End-to-end propagation: how long from sending a flag change to the control API until every
//! connected SDK client's change listener has fired for it.
//!
//! Connects `--clients` streaming clients, creates (or reuses) a boolean flag, toggles it
//! `--warmup` times unmeasured and then `--changes` times one after another (each change waits until
//! every client has seen the previous one), and prints p50 / p99 / max of the time from just before the
//! toggle request is sent until the last client's listener fired, next to the toggle request's own
//! round trip and the first client's time.
//!
//! ```sh
//! VEXIL_BOOTSTRAP_TOKEN=bench-token target/release/vexil standalone --data-dir /tmp/vexil-bench --port 18080
//! cargo run --release -p vexil-sdk --example sdk_propagation -- --url http://127.0.0.1:18080 \
//!     --token bench-token --server-key <production server key> --clients 100
//! ```
//!
//! Results and the machine they came from: BENCHMARKS.md, "SDK end-to-end propagation".

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use vexil_sdk::{Client, State};

#[derive(Parser)]
#[command(about = "Time from a flag change at the control API until every SDK client has it")]
struct Args {
    /// Base URL of Vexil (standalone: the control API and the data plane on one port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Base URL of the control API, when it is not `--url`.
    #[arg(long)]
    control_url: Option<String>,
    /// A management token that may edit flags in the project.
    #[arg(long, env = "VEXIL_TOKEN", hide_env_values = true)]
    token: String,
    /// The environment's server SDK key.
    #[arg(long, env = "SERVER_KEY", hide_env_values = true)]
    server_key: String,
    /// The project.
    #[arg(long, default_value = "default")]
    project: String,
    /// The environment the server key belongs to.
    #[arg(long, default_value = "production")]
    environment: String,
    /// How many SDK clients to connect.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// How many measured changes.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Changes made first and not measured (connections and caches warm up).
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// The boolean flag to toggle (created when missing).
    #[arg(long, default_value = "propagation-bench")]
    flag: String,
    /// How long one change may take to reach every client before the run fails.
    #[arg(long, default_value_t = 10)]
    deadline_seconds: u64,
}

/// A client's change listener fired for the flag: which client, which revision, when.
type Seen = (usize, u64, Instant);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("propagation: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let control = args.control_url.clone().unwrap_or_else(|| args.url.clone());
    let config_url = format!(
        "{}/api/v1/projects/{}/flags/{}/environments/{}",
        control.trim_end_matches('/'),
        args.project,
        args.flag,
        args.environment
    );
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    create_flag(&http, args, &control).await?;

    let started = Instant::now();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();
    let mut clients = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let client = Client::builder(args.server_key.as_str())
            .url(&args.url)
            .start_timeout(Duration::from_secs(30))
            .start()
            .await
            .map_err(|error| format!("starting client {index}: {error}"))?;
        if client.state() != State::Ready {
            return Err(format!("client {index} is {:?} after its start timeout", client.state()));
        }
        tokio::spawn(listen(index, client.clone(), args.flag.clone(), seen_tx.clone()));
        clients.push(client);
    }
    drop(seen_tx);
    println!("{} clients ready in {:?}", args.clients, started.elapsed());

    let deadline = Duration::from_secs(args.deadline_seconds);
    let mut on = toggle_start(&http, args, &config_url).await?;
    let mut last = Vec::with_capacity(args.changes);
    let mut first = Vec::with_capacity(args.changes);
    let mut request = Vec::with_capacity(args.changes);
    for change in 0..args.warmup + args.changes {
        on = !on;
        let sent = Instant::now();
        let response = http
            .post(format!("{config_url}/toggle"))
            .bearer_auth(&args.token)
            .json(&json!({"on": on}))
            .send()
            .await
            .map_err(|error| format!("toggle {change}: {error}"))?;
        let answered = Instant::now();
        if !response.status().is_success() {
            let status = response.status();
            return Err(format!("toggle {change}: {status}: {}", response.text().await.unwrap_or_default()));
        }
        let arrivals =
            wait_for_all(&mut seen_rx, args.clients, sent + deadline).await.map_err(|missing| {
                format!(
                    "change {change}: {missing} of {} clients did not see it in {deadline:?}",
                    args.clients
                )
            })?;
        if change >= args.warmup {
            request.push(answered - sent);
            first.push(arrivals.first_at - sent);
            last.push(arrivals.last_at - sent);
        }
    }

    println!("{} changes, {} clients (after {} warm-up changes):", args.changes, args.clients, args.warmup);
    println!("  {:<40} {}", "control API toggle round trip", summary(&mut request));
    println!("  {:<40} {}", "until the first client's listener fired", summary(&mut first));
    println!("  {:<40} {}", "until every client's listener fired", summary(&mut last));
    for client in &clients {
        client.close().await;
    }
    Ok(())
}

/// Forwards every change of `flag` that `client` reports, stamped with the time its listener saw it.
async fn listen(index: usize, client: Client, flag: String, seen: mpsc::UnboundedSender<Seen>) {
    let mut changes = client.subscribe_changes();
    loop {
        match changes.recv().await {
            Ok(change) if change.keys.contains(&flag) => {
                if seen.send((index, change.revision, Instant::now())).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            // A lagging listener would hide a change; with one change in flight it cannot lag.
            Err(RecvError::Lagged(missed)) => eprintln!("client {index}: listener lagged by {missed}"),
            Err(RecvError::Closed) => return,
        }
    }
}

struct Arrivals {
    first_at: Instant,
    last_at: Instant,
}

/// Waits until each of `clients` has reported a change (the one in flight: changes are made one at a
/// time), checking they all report the same revision. `Err` holds how many never did.
async fn wait_for_all(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    clients: usize,
    deadline: Instant,
) -> Result<Arrivals, usize> {
    let mut arrived: HashMap<usize, (u64, Instant)> = HashMap::with_capacity(clients);
    while arrived.len() < clients {
        match tokio::time::timeout_at(deadline.into(), seen.recv()).await {
            Ok(Some((index, revision, at))) => {
                arrived.insert(index, (revision, at));
            }
            Ok(None) | Err(_) => return Err(clients - arrived.len()),
        }
    }
    let revisions: Vec<u64> = arrived.values().map(|(revision, _)| *revision).collect();
    if revisions.iter().any(|revision| *revision != revisions[0]) {
        eprintln!("clients saw different revisions for one change: {revisions:?}");
    }
    let times = arrived.values().map(|(_, at)| *at);
    let first_at = times.clone().min().unwrap_or_else(Instant::now);
    let last_at = times.max().unwrap_or_else(Instant::now);
    Ok(Arrivals { first_at, last_at })
}

/// Creates the boolean flag; one that exists already (409) is reused.
async fn create_flag(http: &reqwest::Client, args: &Args, control: &str) -> Result<(), String> {
    let response = http
        .post(format!("{}/api/v1/projects/{}/flags", control.trim_end_matches('/'), args.project))
        .bearer_auth(&args.token)
        .json(&json!({
            "key": args.flag, "name": "Propagation benchmark", "kind": "boolean",
            "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}],
            "temporary": true
        }))
        .send()
        .await
        .map_err(|error| format!("creating flag {}: {error}", args.flag))?;
    match response.status().as_u16() {
        200..=299 | 409 => Ok(()),
        status => Err(format!(
            "creating flag {}: {status}: {}",
            args.flag,
            response.text().await.unwrap_or_default()
        )),
    }
}

/// Whether the flag is on now, so that the first toggle changes something.
async fn toggle_start(http: &reqwest::Client, args: &Args, config_url: &str) -> Result<bool, String> {
    let response = http
        .get(config_url)
        .bearer_auth(&args.token)
        .send()
        .await
        .map_err(|error| format!("reading {config_url}: {error}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|error| format!("{config_url}: {error}"))?;
    if !status.is_success() {
        return Err(format!("reading {config_url}: {status}: {body}"));
    }
    Ok(body["on"].as_bool().unwrap_or(false))
}

/// `p50 … p99 … max …` in milliseconds (nearest rank).
fn summary(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "no samples".to_owned();
    }
    samples.sort_unstable();
    let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:7.2} ms   p99 {:7.2} ms   max {:7.2} ms",
        ms(rank(0.50)),
        ms(rank(0.99)),
        ms(samples[samples.len() - 1])
    )
}
