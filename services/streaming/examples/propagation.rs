//! Propagation: how long a change made through the control API takes to reach every SSE client of one
//! streaming replica.
//!
//! ```text
//! cargo build --release -p vexil                      # the binary under test
//! cargo run --release -p vexil-streaming --example propagation -- \
//!     --vexil target/release/vexil --clients 10000 --changes 50
//! ```
//!
//! The deployment's shape, as real processes: `vexil control-api --migrate` and one `vexil streaming`
//! over a fresh PostgreSQL database (`VEXIL_TEST_DATABASE_URL`, default the local server, as the
//! tests use it) and a private `redis-server`. This process is only the clients: N connections to
//! `GET /v1/stream` (bare `TcpStream`s that parse just the `id:` lines, so that one process holds
//! 10,000; `ulimit -n` above N), all on the one environment the changes are made in.
//!
//! Each change toggles one flag (`POST .../toggle`), one at a time, `--interval-ms` apart. Its clock
//! starts just before the request is sent and stops, per client, when that client has read the
//! event's `id:` line: the whole path (HTTP, the PostgreSQL commit, the relay's LISTEN/NOTIFY, Redis
//! pub/sub, the replica's apply, the write to N sockets, and this process reading N sockets). Printed:
//! every delivery's latency (p50/p99/max over N × changes), and per change the latency of its *last*
//! client (p50/p99/max over the changes) — "until every client has it".
//!
//! `--arrival` stops each client's clock when the event *arrived* in its socket instead: the kernel's
//! receive timestamp of the data (`SO_TIMESTAMPNS`, read with the data by `recvmsg`), and this process
//! runs under `SCHED_IDLE` once the servers are up, so reading 10,000 sockets does not take the
//! replica's CPU while it is still writing to them. That is the replica's share of the path as a
//! deployment sees it, with the clients on other hosts: on one machine the clients' reads (~6 µs of CPU
//! each) otherwise compete for the same two cores. The loopback's receive-side TCP processing still runs
//! on the server's writes (it happens inside the sender's `write`), so the server is not flattered.
//! When one read holds more than one segment, the timestamp is the last one's: never earlier than the
//! event's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use vexil_testkit::{RedisServer, TestDatabase};

const ADMIN: &str = "propagation-bench-admin-token";

struct Args {
    vexil: PathBuf,
    clients: usize,
    changes: usize,
    interval: Duration,
    /// Kernel arrival timestamps and a `SCHED_IDLE` client process (see the crate docs).
    arrival: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        vexil: PathBuf::from("target/release/vexil"),
        clients: 1_000,
        changes: 50,
        interval: Duration::from_millis(200),
        arrival: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--vexil" => args.vexil = PathBuf::from(value()?),
            "--clients" => args.clients = value()?.parse()?,
            "--changes" => args.changes = value()?.parse()?,
            "--interval-ms" => args.interval = Duration::from_millis(value()?.parse()?),
            "--arrival" => args.arrival = true,
            other => bail!("unknown argument {other}; see the example's documentation"),
        }
    }
    Ok(args)
}

/// A `vexil` child process, killed on drop; its output goes to a log file.
struct Process {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Process {
    fn spawn(vexil: &Path, role: &[&str], env: &[(&str, String)], dir: &Path) -> anyhow::Result<Process> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = dir.join(format!("{}-{port}.log", role[0]));
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(vexil);
        command.args(role);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VEXIL") {
                command.env_remove(name);
            }
        }
        command
            .env("VEXIL_CONFIG_DIR", dir.join("no-config"))
            .env("VEXIL__SERVER__HOST", "127.0.0.1")
            .env("VEXIL__SERVER__PORT", port.to_string())
            .env("VEXIL__LOG__FORMAT", "json")
            .env("VEXIL__LOG__LEVEL", "warn")
            .env("VEXIL_BOOTSTRAP_TOKEN", ADMIN)
            .envs(env.iter().map(|(name, value)| (*name, value)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("spawning {}", vexil.display()))?;
        Ok(Process { child, port, log })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited with {status}: see {}", self.log.display());
            }
            if let Ok(response) = http.get(format!("{}/readyz", self.url())).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "not ready in 60 s: see {}", self.log.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One SSE client: reads `/v1/stream` and reports every event id with the time it was read — or, with
/// `arrival`, the time its data arrived in the socket.
async fn client(
    port: u16,
    key: String,
    arrival: bool,
    events: mpsc::UnboundedSender<(u64, SystemTime)>,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    if arrival {
        stamped::enable(&stream)?;
    }
    let request = format!("GET /v1/stream HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = [0u8; 1024];
    // The start of the current line (enough for `id: <u64>`).
    let mut line = [0u8; 32];
    let mut len = 0;
    loop {
        let (n, at) = if arrival {
            let (n, arrived) = stamped::read(&stream, &mut buf).await?;
            (n, arrived.context("a read without a receive timestamp")?)
        } else {
            let n = stream.read(&mut buf).await?;
            (n, SystemTime::now())
        };
        ensure!(n > 0, "the stream ended");
        for &byte in &buf[..n] {
            if byte == b'\n' {
                if let Some(id) = line[..len].strip_prefix(b"id: ") {
                    let id = std::str::from_utf8(id)?.trim().parse()?;
                    if events.send((id, at)).is_err() {
                        return Ok(());
                    }
                }
                len = 0;
            } else if len < line.len() {
                line[len] = byte;
                len += 1;
            }
        }
    }
}

/// Kernel receive timestamps on TCP sockets, and a process that only runs when nothing else wants the
/// CPU. Linux only; the few `unsafe` calls are plain system calls on buffers owned here.
#[allow(unsafe_code)]
mod stamped {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Asks the kernel to timestamp the data `stream` receives.
    pub(super) fn enable(stream: &TcpStream) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: `on` outlives the call and its size is passed with it.
        let done = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Reads into `buf`: the byte count, and when the (last) segment read arrived.
    pub(super) async fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
        loop {
            stream.readable().await?;
            match stream.try_io(Interest::READABLE, || recv(stream.as_raw_fd(), buf)) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                read => return read,
            }
        }
    }

    fn recv(fd: libc::c_int, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // Room for one `SCM_TIMESTAMPNS` message, aligned for `cmsghdr`.
        let mut control = [0u64; 8];
        // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: `msg` points at `iov` (which points at `buf`) and `control`, all live and sized.
        let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut stamp = None;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within `msg_controllen`.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let at: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    stamp = Some(SystemTime::UNIX_EPOCH + Duration::new(at.tv_sec as u64, at.tv_nsec as u32));
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        Ok((n as usize, stamp))
    }

    /// Moves every thread of this process to `SCHED_IDLE`: they run only when no other process wants
    /// the CPU. (Per thread, so after the server processes are spawned: children would inherit it.)
    pub(super) fn idle_priority() -> io::Result<()> {
        let param = libc::sched_param { sched_priority: 0 };
        for task in std::fs::read_dir("/proc/self/task")? {
            let Ok(tid) = task?.file_name().to_string_lossy().parse::<libc::pid_t>() else { continue };
            // SAFETY: `param` outlives the call.
            if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &raw const param) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// CPU time (user + system) a process has used so far: `/proc/<pid>/stat` fields 14 and 15, in
/// clock ticks of 10 ms (`USER_HZ` is 100 on Linux).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    ensure!(
        args.vexil.is_file(),
        "{} is not a file: build it with `cargo build --release -p vexil`",
        args.vexil.display()
    );
    let database = TestDatabase::create().await;
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("vexil-propagation-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let env = [("VEXIL__DATABASE__URL", database.url().to_owned()), ("VEXIL__BUS__URL", redis.url())];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;

    let mut control = Process::spawn(&args.vexil, &["control-api", "--migrate"], &env, &dir)?;
    control.wait_ready(&http).await?;
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}/api/v1{path}", control.url())).bearer_auth(ADMIN)
    };
    let project: Value =
        admin(reqwest::Method::POST, "/projects").json(&json!({"key": "bench"})).send().await?.json().await?;
    let key = project["environments"]
        .as_array()
        .and_then(|environments| environments.iter().find(|e| e["environment"] == "production"))
        .and_then(|environment| environment["server_key"].as_str())
        .with_context(|| format!("no production server key in {project}"))?
        .to_owned();
    let created = admin(reqwest::Method::POST, "/projects/bench/flags")
        .json(&json!({"key": "bench-flag", "name": "bench-flag", "kind": "boolean",
                      "variations": [{"value": true, "name": "on"}, {"value": false, "name": "off"}]}))
        .send()
        .await?;
    ensure!(created.status() == 201, "creating the flag: {}", created.text().await?);

    let mut streaming = Process::spawn(&args.vexil, &["streaming"], &env, &dir)?;
    streaming.wait_ready(&http).await?;
    println!(
        "vexil control-api on {}, streaming on {}; logs in {}",
        control.url(),
        streaming.url(),
        dir.display()
    );

    // Connect the clients, a few hundred at a time, and wait for every hydrate.
    let (events, mut received) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut clients = Vec::with_capacity(args.clients);
    for batch in (0..args.clients).collect::<Vec<_>>().chunks(250) {
        for _ in batch {
            clients.push(tokio::spawn(client(streaming.port, key.clone(), args.arrival, events.clone())));
        }
        tokio::task::yield_now().await;
    }
    drop(events);
    let mut hydrated = 0;
    let mut revision = 0;
    while hydrated < args.clients {
        let (id, _) = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .context("clients still connecting after 60 s")?
            .context("every client failed")?;
        revision = revision.max(id);
        hydrated += 1;
    }
    println!("{} clients connected and hydrated in {:.1?}", args.clients, started.elapsed());
    if args.arrival {
        stamped::idle_priority().context("moving the clients to SCHED_IDLE")?;
        println!("measuring arrival (kernel receive timestamps); clients under SCHED_IDLE");
    }

    let server_pid = streaming.child.id().context("the streaming process exited")?.to_string();
    let cpu_before = (cpu_time(&server_pid), cpu_time("self"));
    let mut deliveries = Vec::with_capacity(args.clients * args.changes);
    let mut last_client = Vec::with_capacity(args.changes);
    let mut acknowledged = Vec::with_capacity(args.changes);
    for change in 0..args.changes {
        tokio::time::sleep(args.interval).await;
        let sent = SystemTime::now();
        let toggled =
            admin(reqwest::Method::POST, "/projects/bench/flags/bench-flag/environments/production/toggle")
                .json(&json!({"on": change % 2 == 0}))
                .send()
                .await?;
        ensure!(toggled.status() == 200, "toggle {change}: {}", toggled.text().await?);
        acknowledged.push(sent.elapsed().unwrap_or_default());
        let mut arrived: HashMap<u64, usize> = HashMap::new();
        let mut slowest = Duration::ZERO;
        let mut count = 0;
        while count < args.clients {
            let (id, at) = tokio::time::timeout(Duration::from_secs(30), received.recv())
                .await
                .with_context(|| {
                    format!("change {change}: {count} of {} clients had it after 30 s", args.clients)
                })?
                .context("every client failed")?;
            ensure!(id > revision, "change {change}: an event {id} not after {revision}");
            *arrived.entry(id).or_default() += 1;
            let latency = at.duration_since(sent).unwrap_or_default();
            slowest = slowest.max(latency);
            deliveries.push(latency);
            count += 1;
        }
        ensure!(arrived.len() == 1, "change {change}: more than one event: {arrived:?}");
        revision = arrived.into_keys().next().unwrap_or(revision);
        last_client.push(slowest);
    }

    let cpu_after = (cpu_time(&server_pid), cpu_time("self"));
    let per_delivery = |before: Duration, after: Duration| {
        after.saturating_sub(before).as_secs_f64() * 1e6 / (args.clients * args.changes) as f64
    };

    println!("{} clients, {} changes, {:?} apart:", args.clients, args.changes, args.interval);
    println!("  every delivery:          {}", summary(deliveries));
    println!("  last client per change:  {}", summary(last_client));
    println!("  control API answered:    {}", summary(acknowledged));
    println!(
        "  CPU per delivery:        streaming process {:.1} µs, this (client) process {:.1} µs",
        per_delivery(cpu_before.0, cpu_after.0),
        per_delivery(cpu_before.1, cpu_after.1)
    );
    let metrics = http.get(format!("{}/metrics", streaming.url())).send().await?.text().await?;
    for line in metrics.lines().filter(|line| line.starts_with("vexil_streaming_propagation_lag_seconds_")) {
        if !line.contains("_bucket") || line.contains("le=\"0.05\"") || line.contains("le=\"+Inf\"") {
            println!("  server: {line}");
        }
    }
    for client in clients {
        client.abort();
    }
    drop((streaming, control));
    database.drop_database().await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
