//! Many `native-node` processes on 127.0.0.1: one bootstrap and N-1 client
//! helpers in `serve` mode, driven through their stdin/stdout line protocol.
//! The same figures as in one process, over real sockets and real process
//! boundaries (latency includes the pipe round trip to the process, tens of
//! microseconds).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use dht_core::{Config, libp2p::PeerId, testnet};
use futures::future::join_all;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::{
    net::{Measurement, Transport},
    stats::{self, Latency, Rng, Rounds},
};

/// A `native-node` process answering one JSON line per request.
pub(crate) struct Process {
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    pub(crate) peer_id: PeerId,
}

impl Process {
    /// Starts `native-node --json ARGS` and waits for a line where `ready`
    /// holds; returns the process and that line.
    pub(crate) async fn start(
        binary: &Path,
        args: &[&str],
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(Self, Value)> {
        let mut child = Command::new(binary)
            .arg("--json")
            .args(args)
            .env_remove("DHT_BOOTSTRAP")
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                let value: Value = serde_json::from_str(&line)?;
                if ready(&value) {
                    return anyhow::Ok(value);
                }
            }
            bail!("the process exited before it was ready")
        })
        .await
        .map_err(|_| anyhow!("the process was not ready within 60 s"))??;
        let peer_id = line["peerId"]
            .as_str()
            .ok_or_else(|| anyhow!("no peer id in {line}"))?
            .parse()?;
        Ok((
            Self {
                child,
                stdin,
                lines,
                peer_id,
            },
            line,
        ))
    }

    /// Starts a `native-node bootstrap` without the page or the periodic
    /// report, its key file in `dir` (created if missing), listening on each
    /// of `listen`; returns it with its `started` line. A binary that was
    /// never built fails with a hint to build it.
    pub(crate) async fn start_bootstrap(
        binary: &Path,
        dir: &Path,
        listen: &[&str],
        extra: &[&str],
    ) -> anyhow::Result<(Self, Value)> {
        require_binary(binary)?;
        std::fs::create_dir_all(dir)?;
        let key = dir.join("bootstrap.key");
        let key = key
            .to_str()
            .ok_or_else(|| anyhow!("temporary path is not UTF-8"))?;
        let mut args = vec![
            "bootstrap",
            "--key-file",
            key,
            "--no-http",
            "--report-interval",
            "0",
        ];
        for address in listen {
            args.extend(["--listen", address]);
        }
        args.extend(extra);
        Self::start(binary, &args, |v| v["type"] == "started").await
    }

    /// Sends one request line and reads the answer.
    pub(crate) async fn request(&mut self, line: &str) -> anyhow::Result<Value> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        let answer = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .map_err(|_| anyhow!("no answer to {line:?} within 60 s"))??
            .ok_or_else(|| anyhow!("the process exited"))?;
        Ok(serde_json::from_str(&answer)?)
    }

    pub(crate) fn pid(&self) -> String {
        self.child.id().map(|p| p.to_string()).unwrap_or_default()
    }
}

/// CPU time a process used so far (`self` for this one).
pub(crate) fn process_cpu(pid: &str) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let fields: Vec<String> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The `native-node` next to this benchmark binary.
pub(crate) fn default_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name(format!("native-node{}", std::env::consts::EXE_SUFFIX))
}

/// Fails with a hint when the `native-node` binary has not been built.
fn require_binary(binary: &Path) -> anyhow::Result<()> {
    if !binary.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p native-node`",
            binary.display()
        );
    }
    Ok(())
}

/// The peer ids in a `closest` or `discover` answer of `native-node client`.
fn peer_ids(answer: &serde_json::Value) -> HashSet<String> {
    answer["peers"]
        .as_array()
        .or_else(|| answer["members"].as_array())
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| p["peerId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `size` processes and measures them.
pub(crate) async fn measure(
    binary: &Path,
    size: usize,
    rounds: usize,
    time_limit: Duration,
    seed: u64,
) -> anyhow::Result<Measurement> {
    let deadline = Instant::now() + time_limit;
    let mut rng = Rng::new(seed ^ (size as u64) << 8);
    let k = Config::default().replication_factor().get();
    let dir = std::env::temp_dir().join(format!("ns-dht-bench-{}", std::process::id()));
    let started = Instant::now();
    let (bootstrap, line) =
        Process::start_bootstrap(binary, &dir, &["/ip4/127.0.0.1/tcp/0"], &[]).await?;
    let address = line["addresses"][0]
        .as_str()
        .ok_or_else(|| anyhow!("no bootstrap address"))?
        .to_owned();

    let mut serving: Vec<Process> = Vec::new();
    while serving.len() < size - 1 {
        if Instant::now() > deadline {
            bail!(
                "time limit reached with {} processes started",
                serving.len() + 1
            );
        }
        let count = 8.min(size - 1 - serving.len());
        let client_args = [
            "client",
            "--bootstrap",
            address.as_str(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "serve",
        ];
        let batch =
            (0..count).map(|_| Process::start(binary, &client_args, |v| v["ready"] == true));
        for result in join_all(batch).await {
            serving.push(result?.0);
        }
        eprintln!(
            "  processes N={size}: {}/{size} running after {:.1} s",
            serving.len() + 1,
            started.elapsed().as_secs_f64()
        );
    }
    let join_seconds = started.elapsed().as_secs_f64();

    // Routing tables, from each process's own report.
    let target = (size - 1).min(k);
    let mut filled = None;
    let mut table_sizes = Vec::new();
    let fill_started = Instant::now();
    while fill_started.elapsed() < Duration::from_secs(60) {
        table_sizes.clear();
        for process in &mut serving {
            let report = process.request("report").await?;
            let size: u64 = report["report"]["buckets"]
                .as_array()
                .map(|b| b.iter().filter_map(|bucket| bucket["peers"].as_u64()).sum())
                .unwrap_or(0);
            table_sizes.push(size as usize);
        }
        if table_sizes.iter().all(|s| *s >= target) {
            filled = Some(join_seconds + fill_started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let pids: Vec<String> = std::iter::once(bootstrap.pid())
        .chain(serving.iter().map(Process::pid))
        .collect();
    let cpu_before: Duration = pids.iter().map(|p| process_cpu(p)).sum();
    let mut rounds_done = Rounds::default();
    let mut lookups = 0;
    for round in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        let (writer, reader) = rng.pair(serving.len());
        // Every other round a signed mutable record, the others immutable.
        let mutable = round % 2 == 1;
        let value = format!("value-{seed}-{size}-{round}");
        let request = if mutable {
            format!("put bench-{seed}-{size}-{round} {value}")
        } else {
            format!("put-immutable {value}")
        };
        let started = Instant::now();
        let put = serving[writer].request(&request).await?;
        let requests =
            (put["ok"] == true).then(|| put["stored"]["stats"]["requests"].as_f64().unwrap_or(0.0));
        rounds_done.put(started.elapsed(), requests);
        let key = put["stored"]["key"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let started = Instant::now();
        let got = serving[reader].request(&format!("get {key}")).await?;
        let found = got["ok"] == true && got["record"]["value"]["text"] == value.as_str();
        let requests = found.then(|| got["record"]["stats"]["requests"].as_f64().unwrap_or(0.0));
        rounds_done.get(mutable, started.elapsed(), requests);
        lookups += 2;
    }
    let ids: Vec<PeerId> = std::iter::once(bootstrap.peer_id)
        .chain(serving.iter().map(|p| p.peer_id))
        .collect();
    let mut recalls = Vec::new();
    for sample in 0..rounds.clamp(1, 50) {
        if Instant::now() > deadline {
            break;
        }
        let asker = rng.below(serving.len());
        let key = format!("closest-{seed}-{sample}");
        let others = ids.iter().copied().filter(|p| *p != serving[asker].peer_id);
        let truth = testnet::xor_closest(key.as_bytes(), others, k);
        let answer = serving[asker].request(&format!("closest {key}")).await?;
        lookups += 1;
        let found = peer_ids(&answer);
        let hits = truth
            .iter()
            .filter(|p| found.contains(&p.to_string()))
            .count();
        recalls.push(hits as f64 / truth.len().max(1) as f64);
    }
    let cpu: Duration = pids
        .iter()
        .map(|p| process_cpu(p))
        .sum::<Duration>()
        .saturating_sub(cpu_before);
    let rss: u64 = pids.iter().map(|p| stats::status_bytes(p, "VmRSS:")).sum();
    let peak: u64 = pids.iter().map(|p| stats::status_bytes(p, "VmHWM:")).sum();

    // Namespace discovery with 10 registered members.
    let namespace = format!("bench-{seed}-{size}");
    let mut members = HashSet::new();
    while members.len() < 10.min(serving.len() - 1) {
        members.insert(rng.below(serving.len()));
    }
    for member in &members {
        serving[*member]
            .request(&format!("register {namespace}"))
            .await?;
    }
    let (mut discovers, mut discover_ok) = (Vec::new(), 0);
    for _ in 0..rounds.clamp(1, 50) {
        if Instant::now() > deadline {
            break;
        }
        let seeker = rng.below(serving.len());
        let started = Instant::now();
        let answer = serving[seeker]
            .request(&format!("discover {namespace}"))
            .await?;
        discovers.push(started.elapsed());
        let found = peer_ids(&answer);
        if members
            .iter()
            .filter(|m| **m != seeker)
            .all(|m| found.contains(&serving[*m].peer_id.to_string()))
        {
            discover_ok += 1;
        }
    }
    for mut process in serving.into_iter().chain([bootstrap]) {
        let _ = process.child.start_kill();
        let _ = process.child.wait().await;
    }
    let _ = std::fs::remove_dir_all(&dir);

    Ok(Measurement {
        mode: "processes".into(),
        transport: Transport::Tcp,
        nodes: size,
        k,
        join_seconds,
        routing_tables_filled_seconds: filled,
        routing_table_mean: stats::mean(&table_sizes.iter().map(|s| *s as f64).collect::<Vec<_>>()),
        connections_mean: None,
        idle_cpu_percent: None,
        put: rounds_done.put_latency(),
        get: rounds_done.get_latency(),
        get_mutable: rounds_done.mutable_get_latency(),
        put_success: rounds_done.put_success(),
        get_success: rounds_done.get_success(),
        closest_recall: stats::mean(&recalls),
        requests_per_get: rounds_done.requests_per_get(),
        requests_per_mutable_get: rounds_done.requests_per_mutable_get(),
        requests_per_put: rounds_done.requests_per_put(),
        hops_mean: None,
        hops_max: None,
        cpu_seconds_per_1000_lookups: cpu.as_secs_f64() * 1000.0 / f64::from(lookups.max(1)),
        rss_bytes: rss,
        peak_rss_bytes: peak,
        rss_bytes_per_node: rss as f64 / size as f64,
        discover: Latency::of(&discovers),
        discover_success: f64::from(discover_ok) / discovers.len().max(1) as f64,
    })
}
