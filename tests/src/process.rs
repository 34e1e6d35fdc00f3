//! Real `native-node` processes on loopback, driven through their `--json`
//! output.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc::{Receiver, RecvTimeoutError, channel},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::netns::Testbed;

/// The `native-node` binary built alongside the tests.
pub fn native_node() -> PathBuf {
    let path = crate::target_dir().join(format!("native-node{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p native-node` (the README's test command does)",
        path.display()
    );
    path
}

/// A running `native-node` whose stdout JSON lines are collected.
pub struct NodeProcess {
    pub name: String,
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl NodeProcess {
    /// Starts `native-node --json ARGS`. The environment is cleared of
    /// `DHT_BOOTSTRAP` so the test says everything the node knows.
    pub fn start(name: &str, args: &[&str]) -> Self {
        Self::spawn(name, Command::new(native_node()), args)
    }

    /// Starts `native-node --json ARGS` on host `host` of `bed`.
    pub fn start_in(bed: &Testbed, host: usize, name: &str, args: &[&str]) -> Self {
        Self::spawn(name, bed.command(host, native_node()), args)
    }

    fn spawn(name: &str, mut command: Command, args: &[&str]) -> Self {
        let mut child = command
            .arg("--json")
            .args(args)
            .env_remove("DHT_BOOTSTRAP")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("native-node starts");
        let (sender, lines) = channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if sender.send(value).is_err() {
                            break;
                        }
                    }
                    Err(_) => panic!("native-node printed a line that is not JSON: {line}"),
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stream = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next line (seen before or new) for which `matches` holds, waiting
    /// up to `limit`; fails the test with the node's log otherwise.
    pub fn wait_for(
        &mut self,
        limit: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(position) = self.seen.iter().position(&matches) {
            return self.seen.remove(position);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) if matches(&value) => return value,
                Ok(value) => self.seen.push(value),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: timed out waiting for {what}\n{}",
                    self.name,
                    self.log_tail()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: exited while waiting for {what}\n{}",
                        self.name,
                        self.log_tail()
                    )
                }
            }
        }
    }

    /// Every line that arrives within `duration`, plus those seen but unused.
    pub fn drain(&mut self, duration: Duration) -> Vec<Value> {
        let deadline = Instant::now() + duration;
        while let Ok(value) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(value);
        }
        std::mem::take(&mut self.seen)
    }

    /// The `started` line: peer id and dialable addresses.
    pub fn started(&mut self) -> Started {
        let line = self.wait_for(Duration::from_secs(20), "the start-up line", |v| {
            v["type"] == "started"
        });
        let addresses = line["addresses"]
            .as_array()
            .expect("addresses")
            .iter()
            .map(|a| a.as_str().expect("address is a string").to_owned())
            .collect();
        Started {
            peer_id: line["peerId"].as_str().expect("peer id").to_owned(),
            addresses,
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(10))
    }

    /// Kills the process outright, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{}: did not exit within {limit:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self) -> String {
        let log = self.stderr.lock().map(|l| l.clone()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a line is the node's news that it serves the DHT now
/// (`serving-changed` to true: at its address, or through a relay).
pub fn serves(line: &Value) -> bool {
    line["type"] == "serving-changed" && line["serving"] == true
}

/// The routing-table size in a line of a node's monitor summary
/// (`--report-interval`); `None` for any other line.
pub fn routing_table_size(line: &Value) -> Option<u64> {
    if line["type"] != "report" {
        return None;
    }
    let buckets = line["report"]["buckets"].as_array()?;
    Some(buckets.iter().filter_map(|b| b["peers"].as_u64()).sum())
}

/// A bootstrap node on a testbed host, with what others join it by.
#[derive(Debug)]
pub struct Bootstrap {
    pub process: NodeProcess,
    pub peer_id: String,
    /// Its TCP address with `/p2p/`.
    pub address: String,
}

/// Starts a bootstrap node on host `host` of `bed`, listening on TCP `port`
/// with a fresh key and no HTTP server, printing its monitor summary every
/// `report_interval` ("0": never).
pub fn start_bootstrap_in(
    bed: &Testbed,
    host: usize,
    port: u16,
    report_interval: &str,
) -> Bootstrap {
    // Tests of one binary run at once in one process: one directory each.
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let nth = STARTED.fetch_add(1, Ordering::Relaxed);
    let listen = format!("/ip4/{}/tcp/{port}", bed.hosts()[host].ip);
    let key = temp_dir(&format!("bootstrap-{nth}")).join("bootstrap.key");
    let mut process = NodeProcess::start_in(
        bed,
        host,
        "bootstrap",
        &[
            "bootstrap",
            "--key-file",
            key.to_str().expect("temporary paths are UTF-8"),
            "--no-http",
            "--report-interval",
            report_interval,
            "--listen",
            &listen,
        ],
    );
    let peer_id = process.started().peer_id;
    Bootstrap {
        address: format!("{listen}/p2p/{peer_id}"),
        process,
        peer_id,
    }
}

/// What a node printed when it started.
#[derive(Debug, Clone)]
pub struct Started {
    pub peer_id: String,
    pub addresses: Vec<String>,
}

impl Started {
    /// The first address over the given transport: `tcp`, `quic-v1` or `ws`.
    pub fn address(&self, transport: &str) -> String {
        self.addresses
            .iter()
            .find(|a| match transport {
                "tcp" => a.contains("/tcp/") && !a.contains("/ws"),
                other => a.contains(&format!("/{other}/")),
            })
            .unwrap_or_else(|| panic!("no {transport} address in {:?}", self.addresses))
            .clone()
    }
}

/// A well-formed record key nobody wrote: the immutable record whose
/// value would hash to all zeros.
pub const MISSING_KEY: &str =
    "/ns-dht/i/0000000000000000000000000000000000000000000000000000000000000000";

/// The key a successful `native-node --json client put ...` printed.
pub fn stored_key(stdout: &str) -> String {
    let answer: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not a JSON answer ({e}): {stdout}"));
    answer["stored"]["key"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no stored key in {stdout}"))
        .to_owned()
}

/// The error code a failed `native-node --json ...` printed as its last
/// line, checking that the line is a failed answer.
pub fn error_code(stdout: &str) -> Option<String> {
    let answer: Value = serde_json::from_str(stdout.lines().last()?).ok()?;
    assert_eq!(answer["ok"], false, "{answer}");
    answer["error"]["code"].as_str().map(str::to_owned)
}

/// Runs `native-node ARGS` to completion and returns its status, stdout and
/// stderr.
pub fn run_once(args: &[&str]) -> (ExitStatus, String, String) {
    run_once_with(Command::new(native_node()), args)
}

/// [`run_once`] on host `host` of `bed`.
pub fn run_once_in(bed: &Testbed, host: usize, args: &[&str]) -> (ExitStatus, String, String) {
    run_once_with(bed.command(host, native_node()), args)
}

fn run_once_with(mut command: Command, args: &[&str]) -> (ExitStatus, String, String) {
    let output = command
        .args(args)
        .env_remove("DHT_BOOTSTRAP")
        .stdin(Stdio::null())
        .output()
        .expect("native-node runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port that was free a moment ago on 127.0.0.1, for TCP and UDP both.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("address").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ns-dht-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}
