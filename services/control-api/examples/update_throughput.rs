//! Sustained configuration updates per second through the real management API, with the audit log
//! and the change relay on: PostgreSQL (a fresh database) and Redis, the control plane in process.
//!
//! ```text
//! cargo run --release -p vexil-control-api --example update_throughput -- \
//!     --seconds 20 --concurrency 64 --flags 100
//! ```
//!
//! Options: `--seconds D` (measured run), `--concurrency C` (workers, each with one request in flight),
//! `--flags N` (updated round-robin), `--environments E` (spread the flags over E projects' production
//! environments instead of one; 1 by default), `--mode put|toggle` (`PUT .../environments/production`
//! with a whole configuration, or `POST .../toggle`), `--pool P` (PostgreSQL pool size,
//! `settings.database.max_connections`), `--redis URL` (default `VEXIL_TEST_REDIS_URL` or
//! `redis://127.0.0.1:6379`), `--without-notify true` (an experiment, not a configuration: disables
//! the change log's NOTIFY trigger in the benchmark's database, so the relay finds changes by polling
//! every second, to measure what PostgreSQL's global NOTIFY commit lock costs). PostgreSQL is `VEXIL_TEST_DATABASE_URL` or
//! `postgres://postgres@127.0.0.1:5432/postgres`; the database is created fresh, and dropped after a
//! clean run (kept after a failed one).
//!
//! It reports updates/s, latency percentiles, errors, where PostgreSQL backends waited (sampled from
//! `pg_stat_activity` every 20 ms), whether the relay delivered every change (the change log drains to
//! 0 unsent and a Redis subscriber saw every revision once, in order), and whether the audit chain
//! verifies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sqlx::PgPool;
use vexil_bus::Bus;
use vexil_config::Settings;
use vexil_control_api::Application;
use vexil_store::Store;

struct Options {
    seconds: u64,
    concurrency: usize,
    flags: usize,
    environments: usize,
    mode: Mode,
    pool: u32,
    redis: String,
    without_notify: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Put,
    Toggle,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 20,
        concurrency: 64,
        flags: 100,
        environments: 1,
        mode: Mode::Put,
        pool: 16,
        redis: vexil_testkit::redis_url(),
        without_notify: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(name) = args.next() {
        let value = args.next().with_context(|| format!("{name} needs a value"))?;
        match name.as_str() {
            "--seconds" => options.seconds = value.parse()?,
            "--concurrency" => options.concurrency = value.parse()?,
            "--flags" => options.flags = value.parse()?,
            "--environments" => options.environments = value.parse()?,
            "--pool" => options.pool = value.parse()?,
            "--redis" => options.redis = value,
            "--without-notify" => options.without_notify = value.parse()?,
            "--mode" => {
                options.mode = match value.as_str() {
                    "put" => Mode::Put,
                    "toggle" => Mode::Toggle,
                    other => bail!("--mode is put or toggle, not {other}"),
                }
            }
            other => bail!("unknown option {other}"),
        }
    }
    if options.flags == 0 || options.concurrency == 0 || options.environments == 0 {
        bail!("--flags, --concurrency and --environments must be at least 1");
    }
    Ok(options)
}

/// One flag to update: its project and key.
struct Target {
    project: String,
    flag: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // The control plane, in process, on a fresh database and the real Redis.
    let database = vexil_testkit::TestDatabase::create().await;
    let store = Store::connect_with(database.url(), options.pool).await.context("connect to PostgreSQL")?;
    store.migrate().await.context("migrate")?;
    if options.without_notify {
        let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(database.url()).await?;
        sqlx::query("alter table change_log disable trigger change_log_notify")
            .execute(&mut connection)
            .await?;
    }
    let admin = format!("bench-admin-{run}");
    store.ensure_bootstrap_token(&admin).await?;
    let bus = Bus::connect(&options.redis).await.context("connect to Redis")?;
    let mut settings = Settings::default();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.database.url = database.url().to_owned().into();
    settings.database.max_connections = options.pool;
    let application = Application::build(settings, store.clone(), bus.clone()).await?;
    let base = format!("http://127.0.0.1:{}/api/v1", application.port());
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.concurrency).build()?;
    let api = Api { client: client.clone(), base: base.clone(), token: admin.clone() };

    // Projects (each with development and production) and flags, round-robin over the projects.
    let projects: Vec<String> = (0..options.environments).map(|i| format!("bench-{run}-{i}")).collect();
    for project in &projects {
        api.send(reqwest::Method::POST, "/projects", &json!({"key": project}))
            .await
            .context("create project")?;
    }
    let targets: Vec<Target> = (0..options.flags)
        .map(|i| Target { project: projects[i % projects.len()].clone(), flag: format!("flag-{i:04}") })
        .collect();
    for target in &targets {
        api.send(
            reqwest::Method::POST,
            &format!("/projects/{}/flags", target.project),
            &json!({"key": target.flag, "kind": "boolean", "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]}),
        )
        .await
        .context("create flag")?;
    }
    wait_until_sent(&store, Duration::from_secs(30)).await?;
    let revisions_before = production_revisions(&api, &projects).await?;

    // A data-plane subscriber on the same Redis, counting this run's events per environment.
    let environment_ids = production_ids(&store, &projects).await?;
    let mut subscription = Bus::connect(&options.redis).await?.subscribe(&environment_ids).await?;
    let seen: Arc<std::sync::Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let collector = {
        let seen = seen.clone();
        let prefix = format!("bench-{run}-");
        tokio::spawn(async move {
            while let Some(event) = subscription.next().await {
                // Other users of a shared Redis may have environments with the same ids.
                if event.project.starts_with(&prefix) {
                    seen.lock().unwrap().entry(event.project.clone()).or_default().push(event.revision);
                }
            }
        })
    };

    // Where PostgreSQL backends of this database wait, sampled while the load runs.
    let probe = PgPool::connect(database.url()).await?;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn(sample_waits(probe.clone(), sampling.clone()));

    // The measured run.
    println!(
        "running {} s: {} workers, {} flags in {} environment(s), mode {}, pool {}{}",
        options.seconds,
        options.concurrency,
        options.flags,
        options.environments,
        if options.mode == Mode::Put { "PUT config" } else { "POST toggle" },
        options.pool,
        if options.without_notify { ", change-log NOTIFY disabled" } else { "" }
    );
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (api, targets, next, mode) = (api.clone(), targets.clone(), next.clone(), options.mode);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let target = &targets[(n % targets.len() as u64) as usize];
                    let on = (n / targets.len() as u64).is_multiple_of(2);
                    let sent = Instant::now();
                    let outcome = update(&api, target, mode, on, n).await;
                    match outcome {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(error) => *errors.entry(error).or_default() += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for worker in workers {
        let (mut worker_latencies, worker_errors) = worker.await?;
        latencies.append(&mut worker_latencies);
        for (error, count) in worker_errors {
            *errors.entry(error).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let waits = sampler.await?;

    // Delivery: the change log drains, and the subscriber saw every revision once, in order.
    let drain_started = Instant::now();
    wait_until_sent(&store, Duration::from_secs(60)).await?;
    let drained_in = drain_started.elapsed();
    let revisions_after = production_revisions(&api, &projects).await?;
    let expected: u64 =
        revisions_after.iter().zip(&revisions_before).map(|(after, before)| after - before).sum();
    let delivered = wait_for_events(&seen, &projects, &revisions_after, Duration::from_secs(30)).await;
    collector.abort();
    let mut in_order = true;
    let mut received = 0;
    for (project, (before, after)) in projects.iter().zip(revisions_before.iter().zip(&revisions_after)) {
        let got = seen.lock().unwrap().get(project).cloned().unwrap_or_default();
        received += got.len() as u64;
        in_order &= got == (before + 1..=*after).collect::<Vec<_>>();
    }
    let cached: Vec<Option<u64>> = {
        let mut cached = Vec::new();
        for id in &environment_ids {
            cached.push(bus.snapshot(*id).await?.map(|snapshot| snapshot.revision));
        }
        cached
    };

    // The audit chain.
    let verify: Value = api.get("/audit/verify").await?;

    // Report.
    latencies.sort_unstable();
    let ok = latencies.len() as u64;
    let failed: u64 = errors.values().sum();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1e3
    };
    println!();
    println!(
        "updates:        {ok} ok in {:.1} s = {:.0} updates/s",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency:        p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.5),
        percentile(0.9),
        percentile(0.99),
        percentile(1.0)
    );
    println!("errors:         {failed} {errors:?}");
    println!(
        "revisions:      +{expected} (environment revisions before/after: {revisions_before:?} -> {revisions_after:?})"
    );
    println!(
        "relay:          change log drained {:.2} s after the load; subscriber received {received} of {expected} events, every revision once and in order: {}",
        drained_in.as_secs_f64(),
        delivered && in_order && received == expected
    );
    let foreign =
        cached.iter().zip(&revisions_after).any(|(cached, revision)| cached.is_some_and(|c| c > *revision));
    println!(
        "snapshot cache: revisions {cached:?} (environments {revisions_after:?}){}",
        if foreign {
            "; a newer snapshot under the same environment id was already cached: environment ids are \
             per database, and this Redis is shared with other databases (earlier runs, tests)"
        } else {
            ""
        }
    );
    println!("audit verify:   ok={} records={}", verify["ok"], verify["records"]);
    println!("postgres waits (share of sampled active backends of this database):");
    let total: u64 = waits.values().sum();
    let mut ranked: Vec<_> = waits.into_iter().collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (wait, count) in ranked.into_iter().take(10) {
        println!("  {:>5.1}%  {wait}", 100.0 * count as f64 / total.max(1) as f64);
    }
    if failed > 0 || !(delivered && in_order) || verify["ok"] != true {
        bail!(
            "the run had errors, an undelivered change or a broken audit chain; database {} is kept for a post-mortem",
            database.name()
        );
    }
    probe.close().await;
    database.drop_database().await;
    Ok(())
}

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response =
            self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }
}

/// One configuration update; an error is named by its status (or transport failure) for the report.
async fn update(api: &Api, target: &Target, mode: Mode, on: bool, n: u64) -> Result<(), String> {
    let path =
        format!("{}/projects/{}/flags/{}/environments/production", api.base, target.project, target.flag);
    let request = match mode {
        Mode::Toggle => api.client.post(format!("{path}/toggle")).json(&json!({"on": on})),
        // A realistic configuration: a rule and a percentage rollout, with a changing target list.
        Mode::Put => api.client.put(&path).json(&json!({
            "on": on, "off_variation": 1,
            "targets": [{"variation": 0, "values": [format!("user-{}", n % 1000)]}],
            "rules": [{"id": "germany", "clauses": [{"attribute": "country", "op": "in", "values": ["DE", "AT"]}],
                       "serve": {"variation": 0}}],
            "fallthrough": {"rollout": {"weights": [{"variation": 0, "weight": 25000}, {"variation": 1, "weight": 75000}]}}
        })),
    };
    match request.bearer_auth(&api.token).send().await {
        Ok(response) if response.status().is_success() => {
            // Read the body, as a client would.
            response.bytes().await.map(drop).map_err(|error| format!("body: {error}"))
        }
        Ok(response) => Err(response.status().to_string()),
        Err(error) => Err(format!("transport: {error}")),
    }
}

async fn production_revisions(api: &Api, projects: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut revisions = Vec::new();
    for project in projects {
        let environment = api.get(&format!("/projects/{project}/environments/production")).await?;
        revisions.push(environment["revision"].as_u64().context("revision")?);
    }
    Ok(revisions)
}

async fn production_ids(store: &Store, projects: &[String]) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for project in projects {
        let project = vexil_model::ProjectKey::parse(project.as_str())?;
        let production = vexil_model::EnvironmentKey::parse("production")?;
        ids.push(store.get_environment(&project, &production).await?.id);
    }
    Ok(ids)
}

async fn wait_until_sent(store: &Store, deadline: Duration) -> anyhow::Result<()> {
    let sent =
        vexil_testkit::eventually(deadline, || async move { store.unsent_count().await.ok() == Some(0) })
            .await;
    if !sent {
        bail!("{:?} change-log rows still unsent after {deadline:?}", store.unsent_count().await);
    }
    Ok(())
}

async fn wait_for_events(
    seen: &std::sync::Mutex<BTreeMap<String, Vec<u64>>>,
    projects: &[String],
    revisions: &[u64],
    deadline: Duration,
) -> bool {
    vexil_testkit::eventually(deadline, || async move {
        let seen = seen.lock().unwrap();
        projects.iter().zip(revisions).all(|(project, revision)| {
            seen.get(project).and_then(|revisions| revisions.last()).is_some_and(|last| last >= revision)
        })
    })
    .await
}

/// Counts `wait_event_type/wait_event` (or `CPU` when not waiting) of this database's active backends,
/// every 20 ms until `running` turns false.
async fn sample_waits(probe: PgPool, running: Arc<AtomicBool>) -> BTreeMap<String, u64> {
    const SQL: &str = "select coalesce(wait_event_type || '/' || wait_event, 'CPU (not waiting)') \
                       from pg_stat_activity where datname = current_database() and state = 'active' \
                       and pid <> pg_backend_pid() and query not ilike 'listen%' and query not ilike '%pg_try_advisory_lock%'";
    let mut counts = BTreeMap::new();
    while running.load(Ordering::Relaxed) {
        if let Ok(rows) = sqlx::query_scalar::<_, String>(SQL).fetch_all(&probe).await {
            for wait in rows {
                *counts.entry(wait).or_default() += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counts
}
