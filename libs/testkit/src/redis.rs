//! Private `redis-server` processes: a single server, or a cluster of masters.

use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::resp;

/// How long a `redis-server` may take to answer after it is spawned. It takes milliseconds on an
/// idle machine; the margin is for a 2-core machine busy compiling.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long `redis-cli --cluster create` plus the cluster's convergence may take.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(60);
/// Attempts at starting a server on a fresh free port: another process may take the port between
/// our probe and the server's bind.
const START_ATTEMPTS: usize = 5;
/// Pause between two checks while waiting for a process or a cluster.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// `redis-cli --cluster create` refuses fewer masters than this.
const MIN_CLUSTER_MASTERS: usize = 3;

/// A private `redis-server` process on a free loopback port, for tests that stop/restart Redis.
///
/// It keeps nothing on disk (`--save "" --appendonly no`): a restarted server is empty. Its working
/// directory and log (`redis.log`) are in a temporary directory, removed on drop unless the
/// thread is panicking (then it is kept, and named on stderr, for a post-mortem).
///
/// The process is killed on drop. A test process that is itself killed (SIGKILL, a harness
/// timeout) cannot run `Drop`, so its servers outlive it.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Mutex<Option<Child>>,
    dir: ScratchDir,
}

impl RedisServer {
    /// Spawns `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no` on a free port and
    /// waits (with a deadline) until it answers.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed, or no server answered after a few attempts.
    pub fn start() -> RedisServer {
        let dir = ScratchDir::new("redis");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match launch(port, dir.path(), &[]) {
                Ok(child) => return RedisServer { port, child: Mutex::new(Some(child)), dir },
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "vexil-testkit: redis-server did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        )
    }

    /// The port the server listens on (on 127.0.0.1); it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL, as in a crash) and waits for it to exit. Does nothing when the
    /// server is already stopped.
    pub fn stop(&mut self) {
        if let Some(child) = self.child_slot().take() {
            kill(child);
        }
    }

    /// Starts the server again on the same port and waits until it answers; a running server is
    /// stopped first, so this is also a restart. The new server is empty.
    ///
    /// # Panics
    ///
    /// When the server does not answer before the deadline, for example because another process
    /// took the port while it was stopped.
    pub fn start_again(&mut self) {
        self.stop();
        let give_up_at = Instant::now() + START_DEADLINE;
        loop {
            match launch(self.port, self.dir.path(), &[]) {
                Ok(child) => {
                    *self.child_slot() = Some(child);
                    return;
                }
                // The port can only be busy if someone else took it; wait and see if they let go.
                Err(failure) if Instant::now() >= give_up_at => {
                    panic!("vexil-testkit: redis-server did not start again on port {}: {failure}", self.port)
                }
                Err(_) => thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// Whether the server process is alive (started and neither stopped nor crashed).
    pub fn is_running(&self) -> bool {
        let mut slot = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn child_slot(&mut self) -> &mut Option<Child> {
        self.child.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of `masters` master nodes (no replicas), each a private `redis-server` with
/// `cluster-enabled yes`, on free loopback ports.
///
/// Nodes keep nothing on disk but their cluster configuration, in a temporary directory (kept on a
/// panic, like [`RedisServer`]'s). All nodes are killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    ports: Vec<u16>,
    nodes: Vec<Child>,
    dir: ScratchDir,
}

impl RedisCluster {
    /// Starts `masters` nodes, joins them with
    /// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, and waits until every
    /// node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// When `masters` is below 3 (`redis-cli` refuses to create such a cluster), when `redis-server`
    /// or `redis-cli` is not installed, or when the cluster is not ready before the deadline.
    pub fn start(masters: usize) -> RedisCluster {
        assert!(
            masters >= MIN_CLUSTER_MASTERS,
            "vexil-testkit: a Redis Cluster needs at least {MIN_CLUSTER_MASTERS} masters, not {masters}"
        );
        // Built up in place, so that a panic half-way kills the nodes already started.
        let mut cluster =
            RedisCluster { ports: Vec::new(), nodes: Vec::new(), dir: ScratchDir::new("redis-cluster") };
        for _ in 0..masters {
            cluster.start_node();
        }
        cluster.create();
        cluster.wait_until_every_node_is_ok();
        cluster
    }

    /// The URL `fred` 10 accepts for a cluster: the first node as host, the others as `node`
    /// query parameters, e.g. `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`.
    ///
    /// `fred` needs only one reachable node to discover the rest; listing all of them lets it
    /// connect while any one is up.
    pub fn url(&self) -> String {
        cluster_url(&self.ports)
    }

    /// The client port of every node, in the order they were started.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    fn start_node(&mut self) {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            // The cluster bus listens on port + 10000 by default, which does not exist above 55535
            // and may be taken below it: pick a free bus port the same way as the client port.
            let bus_port = loop {
                let candidate = free_port();
                if candidate != port {
                    break candidate;
                }
            };
            // One directory per attempt, so that a failed attempt leaves no nodes.conf behind.
            let dir = self.dir.path().join(format!("node-{port}"));
            fs::create_dir_all(&dir)
                .unwrap_or_else(|error| panic!("vexil-testkit: cannot create {}: {error}", dir.display()));
            let bus_port = bus_port.to_string();
            let nodes_conf = dir.join("nodes.conf");
            let cluster_args = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus_port,
                "--cluster-config-file",
                nodes_conf.to_str().expect("the temporary directory is UTF-8"),
            ];
            match launch(port, &dir, &cluster_args) {
                Ok(child) => {
                    self.nodes.push(child);
                    self.ports.push(port);
                    return;
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "vexil-testkit: a Redis Cluster node did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        )
    }

    fn create(&self) {
        let log_path = self.dir.path().join("cluster-create.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|error| panic!("vexil-testkit: cannot create {}: {error}", log_path.display()));
        let mut command = Command::new("redis-cli");
        command.args(["--cluster", "create"]);
        command.args(self.ports.iter().map(|port| format!("127.0.0.1:{port}")));
        command.args(["--cluster-replicas", "0", "--cluster-yes"]);
        command.stdin(Stdio::null()).stdout(clone_file(&log)).stderr(log);
        let mut child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "vexil-testkit: cannot run `redis-cli` ({error}); install it (`apt-get install redis-tools`)"
            )
        });

        let give_up_at = Instant::now() + CLUSTER_DEADLINE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < give_up_at => thread::sleep(POLL_INTERVAL),
                outcome => {
                    kill(child);
                    panic!(
                        "vexil-testkit: `redis-cli --cluster create` did not finish within {CLUSTER_DEADLINE:?} \
                         ({outcome:?}):\n{}",
                        tail(&log_path)
                    );
                }
            }
        };
        assert!(
            status.success(),
            "vexil-testkit: `redis-cli --cluster create` failed ({status}):\n{}",
            tail(&log_path)
        );
    }

    fn wait_until_every_node_is_ok(&self) {
        let give_up_at = Instant::now() + CLUSTER_DEADLINE;
        loop {
            let states: Vec<(u16, String)> = self
                .ports
                .iter()
                .map(|&port| {
                    let info = resp::command(port, &["CLUSTER", "INFO"]);
                    let state = match info {
                        Ok(info) => info
                            .lines()
                            .find(|line| line.starts_with("cluster_state:"))
                            .unwrap_or("?")
                            .to_owned(),
                        Err(error) => error.to_string(),
                    };
                    (port, state)
                })
                .collect();
            if states.iter().all(|(_, state)| state == "cluster_state:ok") {
                return;
            }
            assert!(
                Instant::now() < give_up_at,
                "vexil-testkit: the Redis Cluster was not ok on every node within {CLUSTER_DEADLINE:?}: {states:?}"
            );
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.nodes.drain(..) {
            kill(node);
        }
    }
}

/// `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=...`, the syntax of `fred::types::config::Config::from_url`.
fn cluster_url(ports: &[u16]) -> String {
    let mut nodes = ports.iter().map(|port| format!("127.0.0.1:{port}"));
    let mut url = format!("redis-cluster://{}", nodes.next().unwrap_or_default());
    for (i, node) in nodes.enumerate() {
        url.push_str(if i == 0 { "?node=" } else { "&node=" });
        url.push_str(&node);
    }
    url
}

/// Spawns a `redis-server` on `port` with its files in `dir`, and waits until that very process
/// answers (another server could answer on the port if ours failed to bind it).
///
/// Returns why it failed when the process exits or stays silent: the caller may retry. Panics when
/// `redis-server` cannot be run at all.
fn launch(port: u16, dir: &Path, extra_args: &[&str]) -> Result<Child, String> {
    let output_path = dir.join("output.log");
    let output = File::create(&output_path)
        .unwrap_or_else(|error| panic!("vexil-testkit: cannot create {}: {error}", output_path.display()));
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(extra_args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(clone_file(&output))
        .stderr(output)
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "vexil-testkit: cannot run `redis-server` ({error}); install it (`apt-get install redis-server`, \
                 or `source scripts/services.sh`)"
            )
        });

    let give_up_at = Instant::now() + START_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => {
                return Err(format!(
                    "redis-server on port {port} exited ({status}):\n{}{}",
                    tail(&output_path),
                    tail(&dir.join("redis.log"))
                ));
            }
            Err(error) => {
                kill(child);
                return Err(format!("cannot watch redis-server on port {port}: {error}"));
            }
        }
        if resp::server_pid(port) == Some(child.id()) {
            return Ok(child);
        }
        if Instant::now() >= give_up_at {
            kill(child);
            return Err(format!(
                "redis-server on port {port} did not answer within {START_DEADLINE:?}:\n{}",
                tail(&dir.join("redis.log"))
            ));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Kills `child` and reaps it, so that it is gone (not a zombie) when this returns.
fn kill(mut child: Child) {
    // Fails only when the process has already exited, which is what we want anyway.
    let _ = child.kill();
    let _ = child.wait();
}

/// A port that was free on 127.0.0.1 a moment ago (the OS picks it; we release it at once).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|error| panic!("vexil-testkit: cannot bind a loopback port: {error}"))
}

fn clone_file(file: &File) -> File {
    file.try_clone()
        .unwrap_or_else(|error| panic!("vexil-testkit: cannot duplicate a log file handle: {error}"))
}

/// The last lines of a log file, for panic messages.
fn tail(path: &Path) -> String {
    const LINES: usize = 20;
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    if !tail.is_empty() {
        tail.push('\n');
    }
    tail
}

/// A uniquely named temporary directory, removed on drop unless the thread is panicking.
#[derive(Debug)]
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(kind: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!("vexil-testkit-{kind}-{}", Uuid::new_v4().simple()));
        fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("vexil-testkit: cannot create {}: {error}", path.display()));
        ScratchDir { path }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("vexil-testkit: kept {} for a post-mortem", self.path.display());
        } else {
            // A leftover directory in the temporary directory is harmless; don't panic in drop.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{RedisCluster, RedisServer, cluster_url};
    use crate::resp;

    fn answers_ping(port: u16) -> bool {
        resp::command(port, &["PING"]).is_ok_and(|reply| reply == "PONG")
    }

    fn process_exists(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_server_answers_until_stopped_and_again_on_the_same_port_after_start_again() {
        let mut server = RedisServer::start();
        let port = server.port();
        assert!(answers_ping(port));
        assert!(server.is_running());
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));

        server.stop();
        assert!(!server.is_running());
        assert!(!answers_ping(port), "the stopped server still answers");

        server.start_again();
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        assert!(answers_ping(port));
    }

    #[test]
    fn stop_is_idempotent() {
        let mut server = RedisServer::start();

        server.stop();
        server.stop();

        assert!(!server.is_running());
    }

    #[test]
    fn a_restarted_server_is_empty() {
        let mut server = RedisServer::start();
        resp::command(server.port(), &["SET", "flag", "on"]).expect("SET");

        server.start_again();

        assert_eq!(resp::command(server.port(), &["GET", "flag"]).expect("GET"), "");
    }

    #[test]
    fn a_crashed_server_is_not_running() {
        let server = RedisServer::start();

        // SHUTDOWN closes the connection instead of answering.
        let _ = resp::command(server.port(), &["SHUTDOWN", "NOSAVE"]);

        let deadline = Instant::now() + Duration::from_secs(10);
        while server.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!server.is_running());
    }

    #[test]
    fn dropping_a_server_kills_its_process() {
        let server = RedisServer::start();
        let port = server.port();
        let pid = resp::server_pid(port).expect("the server reports its pid");

        drop(server);

        assert!(!process_exists(pid), "redis-server {pid} is still alive");
        assert!(!answers_ping(port));
    }

    #[test]
    fn a_three_master_cluster_is_ok_on_every_node_and_dies_with_its_handle() {
        let cluster = RedisCluster::start(3);
        let ports = cluster.ports().to_vec();
        assert_eq!(ports.len(), 3);
        let mut pids = Vec::new();
        for &port in &ports {
            let info = resp::command(port, &["CLUSTER", "INFO"]).expect("CLUSTER INFO");
            assert!(info.contains("cluster_state:ok"), "node {port}: {info}");
            assert!(info.contains("cluster_slots_assigned:16384"), "node {port}: {info}");
            assert!(info.contains("cluster_known_nodes:3"), "node {port}: {info}");
            pids.push(resp::server_pid(port).expect("pid"));
        }

        drop(cluster);

        for (port, pid) in ports.into_iter().zip(pids) {
            assert!(!process_exists(pid), "cluster node {pid} is still alive");
            assert!(!answers_ping(port));
        }
    }

    #[test]
    fn the_cluster_url_names_the_first_node_and_the_others_as_node_parameters() {
        assert_eq!(
            cluster_url(&[7000, 7001, 7002]),
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002"
        );
    }

    #[test]
    #[should_panic(expected = "at least 3 masters")]
    fn a_cluster_of_two_masters_is_refused() {
        let _ = RedisCluster::start(2);
    }
}
