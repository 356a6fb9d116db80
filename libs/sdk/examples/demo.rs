//! Three SDK clients side by side against a running Vexil, printing what each one sees:
//!
//! - `[poll]`: polling only, every 5 s, with ETags: every answer, `200` (new data) or `304` (nothing
//!   changed), and the changes a `200` brought;
//! - `[live]`: streaming: every change the moment it arrives, with the new values for a demo user;
//! - `[beta]`: streaming only the flags whose key starts with `beta`.
//!
//! ```sh
//! make run                                   # another terminal: Vexil standalone; note the server key
//! make demo ARGS="--server-key <production server key>"
//! ```
//!
//! Then create and toggle flags (README.md, "Demo"). Ctrl-C stops it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::sync::broadcast::error::RecvError;
use vexil_sdk::{Client, Context, ErrorKind, Reason, State, SyncEvent};

#[derive(Parser)]
#[command(about = "Three Vexil SDK clients (polling, streaming, prefix-filtered) printing what they see")]
struct Args {
    /// Base URL of Vexil (standalone, or the data plane).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An environment's server SDK key (printed by Vexil at first start).
    #[arg(long, env = "SERVER_KEY", hide_env_values = true)]
    server_key: String,
    /// The demo user's targeting key.
    #[arg(long, default_value = "user-1")]
    user: String,
    /// The demo user's `country` attribute.
    #[arg(long, default_value = "DE")]
    country: String,
    /// How often the polling client polls.
    #[arg(long, default_value_t = 5)]
    poll_seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), vexil_sdk::Error> {
    let args = Args::parse();
    let user = Context::new(args.user.as_str()).with("country", args.country.as_str());
    println!("{} demo user: {}", now(), serde_json::to_string(&user).unwrap_or_default());

    let polling = Client::builder(args.server_key.as_str())
        .url(&args.url)
        .streaming(false)
        .poll_interval(Duration::from_secs(args.poll_seconds.max(1)))
        .start()
        .await?;
    let live = Client::builder(args.server_key.as_str()).url(&args.url).start().await?;
    let beta = Client::builder(args.server_key.as_str()).url(&args.url).prefix("beta").start().await?;

    for (label, client) in [("poll", &polling), ("live", &live), ("beta", &beta)] {
        println!(
            "{} [{label}] started: {:?}, revision {}, flags: {}",
            now(),
            client.state(),
            revision(client.revision()),
            list(&client.flag_keys())
        );
        tokio::spawn(print_states(label, client.clone()));
    }
    tokio::spawn(print_polls(polling.clone()));
    tokio::spawn(print_changes("poll", polling.clone(), user.clone()));
    tokio::spawn(print_changes("live", live.clone(), user.clone()));
    tokio::spawn(print_changes("beta", beta.clone(), user));

    println!("{} watching; change flags in another terminal (Ctrl-C stops)", now());
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("cannot listen for Ctrl-C ({error}); stopping");
    }
    for client in [&polling, &live, &beta] {
        client.close().await;
    }
    println!("{} stopped", now());
    Ok(())
}

/// Every answer the polling client gets: `200` with the new revision, or `304`.
async fn print_polls(client: Client) {
    let mut events = client.subscribe_sync_events();
    loop {
        match events.recv().await {
            Ok(SyncEvent::Polled { status: 304, revision: seen }) => {
                println!("{} [poll] 304 Not Modified: still revision {}", now(), revision(seen))
            }
            Ok(SyncEvent::Polled { status: 200, revision: seen }) => {
                println!("{} [poll] 200 OK: new data, revision {}", now(), revision(seen))
            }
            Ok(SyncEvent::Polled { status, .. }) => println!("{} [poll] {status}", now()),
            Ok(SyncEvent::PollFailed { reason }) => println!("{} [poll] no answer: {reason}", now()),
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => println!("{} [poll] ({missed} sync events missed)", now()),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Every change a client receives, with the changed flags' new values for `user`.
async fn print_changes(label: &'static str, client: Client, user: Context) {
    let mut changes = client.subscribe_changes();
    loop {
        match changes.recv().await {
            Ok(change) => {
                println!("{} [{label}] revision {}:", now(), change.revision);
                for key in &change.keys {
                    println!("{:>12}   {key} = {}", "", describe(&client, key, &user));
                }
                if label == "beta" {
                    println!("{:>12}   ([beta] sees only: {})", "", list(&client.flag_keys()));
                }
            }
            Err(RecvError::Lagged(missed)) => println!("{} [{label}] ({missed} changes missed)", now()),
            Err(RecvError::Closed) => return,
        }
    }
}

async fn print_states(label: &'static str, client: Client) {
    let mut states = client.watch_state();
    while states.changed().await.is_ok() {
        let state: State = *states.borrow_and_update();
        let age =
            client.data_age().map_or_else(|| "none".to_owned(), |age| format!("{:.1} s", age.as_secs_f64()));
        println!("{} [{label}] state: {state:?} (data age {age})", now());
    }
}

/// A flag's value for `user` whatever its kind (the SDK answers `WrongType` for the other kinds), with
/// the reason; or that it is gone.
fn describe(client: &Client, key: &str, user: &Context) -> String {
    let wrong_type = |reason: &Reason<'_>| reason.error_kind() == Some(ErrorKind::WrongType);
    let bool_detail = client.bool_detail(key, user, false);
    let (value, reason) = if !wrong_type(&bool_detail.reason) {
        (bool_detail.value.to_string(), bool_detail.reason)
    } else {
        let string = client.string_detail(key, user, "");
        if !wrong_type(&string.reason) {
            (format!("{:?}", string.value), string.reason)
        } else {
            let number = client.number_detail(key, user, 0.0);
            if !wrong_type(&number.reason) {
                (number.value.to_string(), number.reason)
            } else {
                let json = client.json_detail(key, user, serde_json::Value::Null);
                (json.value.to_string(), json.reason)
            }
        }
    };
    match reason {
        Reason::Error { error_kind: ErrorKind::FlagNotFound } => "(deleted)".to_owned(),
        Reason::Error { error_kind } => format!("the default ({error_kind:?})"),
        reason => format!("{value}  ({})", reason_text(&reason)),
    }
}

fn reason_text(reason: &Reason<'_>) -> String {
    match reason {
        Reason::Off => "off".into(),
        Reason::TargetMatch => "individually targeted".into(),
        Reason::RuleMatch { rule_id, .. } => format!("rule {rule_id}"),
        Reason::Fallthrough => "fallthrough".into(),
        Reason::PrerequisiteFailed { prerequisite_key } => format!("prerequisite {prerequisite_key} failed"),
        Reason::Error { error_kind } => format!("{error_kind:?}"),
    }
}

fn revision(revision: Option<u64>) -> String {
    revision.map_or_else(|| "none".to_owned(), |revision| revision.to_string())
}

fn list(keys: &[String]) -> String {
    if keys.is_empty() { "(none)".to_owned() } else { keys.join(", ") }
}

/// The wall-clock time of day (UTC) to the millisecond, to see when each client learns of a change.
fn now() -> String {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        since_epoch.subsec_millis()
    )
}
