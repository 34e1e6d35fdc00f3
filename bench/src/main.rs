//! `dht-bench`: how fast and how large the DHT is.
//!
//! Builds networks of N nodes with the real code paths (default
//! configuration, noise + yamux, Kademlia as the nodes run it) and measures
//! latency, success, recall, hops, memory and CPU; then the same with
//! `native-node` processes, and a bootstrap's connection capacity. Prints a
//! table, writes one JSON file per run and an SVG plot. Timings are
//! reported, never asserted.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod capacity;
mod churn;
mod holders;
mod hops;
mod net;
mod netns;
mod plot;
mod procs;
mod stats;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use crate::net::{Measurement, Transport};

/// Measure the DHT: lookup latency, hops, recall, memory and CPU per network
/// size, in one process and across processes, and a bootstrap's capacity.
///
/// Everything runs on 127.0.0.1 or in memory; every run is bounded by
/// --time-limit. Build in release mode: `cargo run --release -p dht-bench`.
#[derive(Debug, Parser)]
#[command(name = "dht-bench", version)]
struct Args {
    /// Network sizes for the in-process memory-transport runs.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "16,64,256,1024")]
    sizes: Vec<usize>,

    /// Network sizes for the in-process runs over loopback TCP and QUIC
    /// (each node holds real sockets; empty to skip).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "16,64")]
    socket_sizes: Vec<usize>,

    /// Socket transports for --socket-sizes.
    #[arg(long, value_delimiter = ',', default_value = "tcp,quic")]
    transports: Vec<Transport>,

    /// Sizes of the multi-process runs (`native-node` processes on
    /// 127.0.0.1; give the option with no value to skip).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "16,64")]
    processes: Vec<usize>,

    /// Light clients for the bootstrap capacity run (0 to skip).
    #[arg(long, default_value_t = 2000)]
    capacity: usize,

    /// Relayed clients (stand-ins for browser tabs, serving through the
    /// bootstrap's relay) for the relay cost runs; give the option with no
    /// value to skip.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "100,1000")]
    relay_clients: Vec<usize>,

    /// Native nodes, and as many relayed ones, of the network in which reads
    /// from relayed holders are compared with reads from direct ones (in
    /// process, memory transport, k = 2); 0 to skip.
    #[arg(long, default_value_t = 16)]
    relayed_holders: usize,

    /// Nodes of the network in which a third crash, then another third,
    /// and of the one in which a node is replaced every 4 s for 2 minutes
    /// (in process, memory transport, k = 4, with re-replication on and
    /// off); 0 to skip.
    #[arg(long, default_value_t = 48)]
    churn: usize,

    /// Hosts of the run in network namespaces (as root; one native-node
    /// process per namespace): a cut in halves for 45 s, healing, the
    /// bootstrap killed for 20 s and restarted; 0 to skip (the default:
    /// it takes about 3 minutes).
    #[arg(long, default_value_t = 0)]
    netns: usize,

    /// Records the churn network holds.
    #[arg(long, default_value_t = 200)]
    churn_records: usize,

    /// Put/get rounds per network, from random nodes (and the probe's
    /// rounds at the bootstrap in the capacity run).
    #[arg(long, default_value_t = 200)]
    rounds: usize,

    /// Time limit of each run, in seconds.
    #[arg(long, default_value_t = 900)]
    time_limit: u64,

    /// Seed of the random choices, so runs are comparable.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Where the JSON results go (one file per run).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,

    /// Where the SVG plot of latency and hops against N goes.
    #[arg(long)]
    plot: Option<PathBuf>,

    /// The `native-node` binary (default: next to this one).
    #[arg(long)]
    native_node: Option<PathBuf>,

    /// Override the nodes' idle connection timeout, in seconds (default: the
    /// node default), to see what open connections cost.
    #[arg(long)]
    idle_timeout: Option<u64>,

    /// Override how often every node refreshes its routing table, in seconds
    /// (default: the node default, 300; 0: only when it joins), to see what
    /// the refresh costs a network at rest (in-process runs).
    #[arg(long)]
    bootstrap_interval: Option<u64>,

    /// Give every node of the in-process runs a store on disk (redb in a
    /// temporary directory, as `native-node --data-dir`), to see what an
    /// fsync per acknowledged write costs puts.
    #[arg(long)]
    disk_storage: bool,

    /// Stop a measurement whose process grows past this many MiB of
    /// resident memory (default: 85 % of the machine's memory), so a network
    /// too large for the machine fails as a result, not as an OOM kill of
    /// something else.
    #[arg(long)]
    memory_limit_mib: Option<u64>,

    /// Seconds the network rests, untouched, to measure its idle CPU use.
    #[arg(long, default_value_t = 5)]
    rest_seconds: u64,

    /// Measure nothing: read the results of an earlier run (a JSON file it
    /// wrote), print its table again and draw its plot (with --plot).
    #[arg(long, value_name = "RESULTS_JSON")]
    replot: Option<PathBuf>,

    /// Internal: run one measurement in this process and print it as JSON
    /// (`memory:N`, `tcp:N`, `quic:N`, `processes:N`, `capacity:N`,
    /// `relay:N` or `holders:N`). The
    /// harness runs each measurement in a fresh process of its own, so that
    /// memory figures are not inflated by earlier runs.
    #[arg(long, hide = true)]
    run_one: Option<String>,

    /// A small run that finishes in a minute or two (for CI): N=16, 20
    /// rounds, TCP only, 16 processes, 50 light clients, 20 relayed ones,
    /// 8 nodes of each kind for the reads by holder kind, no crashes (two
    /// minutes of waiting for repairs).
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec![16];
        args.socket_sizes = vec![16];
        args.transports = vec![Transport::Tcp];
        args.processes = vec![16];
        args.capacity = 50;
        args.relay_clients = vec![20];
        args.relayed_holders = args.relayed_holders.min(8);
        args.churn = 0;
        args.rounds = 20;
        args.time_limit = args.time_limit.min(300);
    }
    native_node::transport::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// One measurement, as the harness asks a child process for it.
async fn run_one(args: &Args, what: &str) -> anyhow::Result<serde_json::Value> {
    let limit = Duration::from_secs(args.time_limit);
    let binary = args
        .native_node
        .clone()
        .unwrap_or_else(procs::default_binary);
    let (kind, size) = what
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("expected KIND:N, got {what:?}"))?;
    let size: usize = size.parse()?;
    let value = match kind {
        "memory" | "tcp" | "quic" => {
            let transport = <Transport as clap::ValueEnum>::from_str(kind, false)
                .map_err(|e| anyhow::anyhow!(e))?;
            serde_json::to_value(
                net::measure(
                    size,
                    transport,
                    args.rounds,
                    limit,
                    args.seed,
                    net::Overrides {
                        idle_timeout: args.idle_timeout,
                        bootstrap_interval: args.bootstrap_interval,
                        disk_storage: args.disk_storage,
                    },
                    Duration::from_secs(args.rest_seconds),
                )
                .await?,
            )?
        }
        "processes" => serde_json::to_value(
            procs::measure(&binary, size, args.rounds, limit, args.seed).await?,
        )?,
        "capacity" => serde_json::to_value(
            capacity::measure(&binary, size, args.rounds, limit, false).await?,
        )?,
        "relay" => {
            serde_json::to_value(capacity::measure(&binary, size, args.rounds, limit, true).await?)?
        }
        "holders" => serde_json::to_value(holders::measure(size, args.rounds, limit).await?)?,
        "netns" => {
            serde_json::to_value(tokio::task::spawn_blocking(move || netns::measure(size)).await??)?
        }
        "churn" => {
            serde_json::to_value(churn::measure(size, args.churn_records, limit, args.seed).await?)?
        }
        other => anyhow::bail!("unknown measurement {other:?}"),
    };
    Ok(value)
}

/// Runs measurement `what` in a child process (announcing it with `label`)
/// and reads its result; a failure is printed and added to `failed`.
async fn measured<T: serde::de::DeserializeOwned>(
    args: &Args,
    what: &str,
    label: &str,
    failed: &mut Vec<String>,
) -> Option<T> {
    eprintln!("{what}{label}");
    let result = in_child(args, what)
        .await
        .and_then(|value| Ok(serde_json::from_value(value)?));
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            eprintln!("  failed: {error:#}");
            failed.push(what.to_owned());
            None
        }
    }
}

/// Runs one measurement in a child process and reads its JSON answer.
async fn in_child(args: &Args, what: &str) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args([
            "--run-one",
            what,
            "--rounds",
            &args.rounds.to_string(),
            "--seed",
            &args.seed.to_string(),
        ])
        .args(["--time-limit", &args.time_limit.to_string()])
        .args(["--churn-records", &args.churn_records.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    if let Some(secs) = args.idle_timeout {
        command.args(["--idle-timeout", &secs.to_string()]);
    }
    if let Some(secs) = args.bootstrap_interval {
        command.args(["--bootstrap-interval", &secs.to_string()]);
    }
    command.args(["--rest-seconds", &args.rest_seconds.to_string()]);
    if args.disk_storage {
        command.arg("--disk-storage");
    }
    if let Some(binary) = &args.native_node {
        command.arg("--native-node").arg(binary);
    }
    // The child stops itself at the time limit; this is the backstop.
    let limit = Duration::from_secs(args.time_limit + 120);
    let memory_limit = args
        .memory_limit_mib
        .map_or(stats::mem_total() / 100 * 85, |mib| mib << 20);
    let child = command.spawn()?;
    let pid = child
        .id()
        .map(|id| id.to_string())
        .context("the measurement process exited at once")?;
    let output = tokio::select! {
        output = tokio::time::timeout(limit, child.wait_with_output()) => output
            .map_err(|_| anyhow::anyhow!("{what} did not finish within {limit:?}"))??,
        peak = memory_watch(&pid, memory_limit) => anyhow::bail!(
            "{what} stopped: its resident memory reached {} MiB, over the limit of {} MiB",
            peak >> 20,
            memory_limit >> 20
        ),
    };
    if !output.status.success() {
        anyhow::bail!("{what} failed ({})", output.status);
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Returns once process `pid` holds more than `limit` bytes of resident
/// memory (never, if the limit is 0 or the process is gone).
async fn memory_watch(pid: &str, limit: u64) -> u64 {
    loop {
        let rss = stats::status_bytes(pid, "VmRSS:");
        if limit > 0 && rss > limit {
            return rss;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(what) = &args.run_one {
        let value = run_one(&args, what).await?;
        println!("{value}");
        return Ok(());
    }
    if let Some(file) = &args.replot {
        return replot(file, args.plot.as_deref());
    }
    let mut plan: Vec<String> = args.sizes.iter().map(|n| format!("memory:{n}")).collect();
    for transport in &args.transports {
        plan.extend(args.socket_sizes.iter().map(|n| format!("{transport}:{n}")));
    }
    plan.extend(args.processes.iter().map(|n| format!("processes:{n}")));
    let mut failed = Vec::new();
    let mut runs: Vec<Measurement> = Vec::new();
    for what in &plan {
        runs.extend(measured(&args, what, "", &mut failed).await);
    }
    let capacity: Option<capacity::Capacity> = match args.capacity {
        0 => None,
        n => {
            let what = format!("capacity:{n}");
            measured(
                &args,
                &what,
                " (light clients over TCP and WebSocket)",
                &mut failed,
            )
            .await
        }
    };
    let mut relay_runs: Vec<capacity::Capacity> = Vec::new();
    for &clients in &args.relay_clients {
        let what = format!("relay:{clients}");
        let label = " (relayed clients serving through the bootstrap)";
        relay_runs.extend(measured(&args, &what, label, &mut failed).await);
    }
    let holder_run: Option<holders::Holders> = match args.relayed_holders {
        0 => None,
        n => {
            let what = format!("holders:{n}");
            let label = " (reads from relayed holders and from direct ones)";
            measured(&args, &what, label, &mut failed).await
        }
    };
    let netns_run: Option<netns::Netns> = match args.netns {
        0 => None,
        n => {
            let what = format!("netns:{n}");
            let label = " (a cut, healing and a dead bootstrap in network namespaces)";
            measured(&args, &what, label, &mut failed).await
        }
    };
    let churn_run: Option<churn::Churn> = match args.churn {
        0 => None,
        n => {
            let what = format!("churn:{n}");
            let label = " (records through crashes of a third, then another third)";
            measured(&args, &what, label, &mut failed).await
        }
    };

    print_table(&runs);
    if let Some(c) = &capacity {
        println!(
            "\nbootstrap capacity: {}/{} clients connected in {:.1} s, {} TCP connections held, \
             {:.1} KiB RSS per connection ({} -> {} MiB); put p50 {:.2} / p99 {:.2} ms, get p50 {:.2} / p99 {:.2} ms, get success {:.0} %",
            c.connected,
            c.clients,
            c.connect_seconds,
            c.held_by_bootstrap,
            c.rss_bytes_per_connection / 1024.0,
            c.bootstrap_rss_before >> 20,
            c.bootstrap_rss_after >> 20,
            c.put.p50_ms,
            c.put.p99_ms,
            c.get.p50_ms,
            c.get.p99_ms,
            c.get_success * 100.0
        );
        println!(
            "  bootstrap CPU: {:.2} ms/s at rest, {:.2} s over the put/get rounds",
            c.bootstrap_idle_cpu_ms_per_s, c.bootstrap_rounds_cpu_seconds
        );
    }
    for c in &relay_runs {
        println!(
            "\nrelay: {}/{} relayed clients joined, {} serving through it, {:.1} KiB RSS per relayed client \
             ({} -> {} MiB); CPU {:.2} ms/s at rest, {:.2} s over the rounds; put p50 {:.2} / p99 {:.2} ms, \
             get p50 {:.2} / p99 {:.2} ms (the relay holds a copy too), get success {:.0} %",
            c.connected,
            c.clients,
            c.serving,
            c.rss_bytes_per_connection / 1024.0,
            c.bootstrap_rss_before >> 20,
            c.bootstrap_rss_after >> 20,
            c.bootstrap_idle_cpu_ms_per_s,
            c.bootstrap_rounds_cpu_seconds,
            c.put.p50_ms,
            c.put.p99_ms,
            c.get.p50_ms,
            c.get.p99_ms,
            c.get_success * 100.0
        );
    }

    if let Some(h) = &holder_run {
        println!(
            "\nreads by holder kind ({n} native + {n} relayed nodes and a relay, in process, \
             memory transport, k = 2; ms p50 / p99):",
            n = h.per_kind
        );
        for (kind, r) in [("relayed", &h.relayed), ("direct", &h.direct)] {
            println!(
                "  {kind:>7} holders: put {:.2} / {:.2}, warm get {:.2} / {:.2} ({} reads), \
                 cold get {:.2} / {:.2} ({} reads); {} answered by another peer, {} failed",
                r.put.p50_ms,
                r.put.p99_ms,
                r.warm_get.p50_ms,
                r.warm_get.p99_ms,
                r.warm_get.samples,
                r.cold_get.p50_ms,
                r.cold_get.p99_ms,
                r.cold_get.samples,
                r.answered_elsewhere,
                r.failed
            );
        }
    }

    if let Some(c) = &churn_run {
        churn::print(c);
    }
    if let Some(n) = &netns_run {
        netns::print(n);
    }

    let date = stats::utc_now();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let report = json!({
        "date": date,
        "commit": commit,
        "cores": cores,
        "rounds": args.rounds,
        "seed": args.seed,
        "runs": runs,
        "capacity": capacity,
        "relay": relay_runs,
        "holders": holder_run,
        "churn": churn_run,
        "netns": netns_run,
    });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let file = args
        .out
        .join(format!("bench-{}-{commit}.json", date.replace(':', "")));
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    println!("\nresults: {}", file.display());
    if let Some(path) = &args.plot {
        write_plot(path, &runs)?;
    }
    if !failed.is_empty() {
        anyhow::bail!("these runs failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Draws the in-process memory-transport runs (the sizes that reach
/// furthest) into `path`.
fn write_plot(path: &std::path::Path, runs: &[Measurement]) -> anyhow::Result<()> {
    let memory: Vec<&Measurement> = runs
        .iter()
        .filter(|m| m.mode == "in-process" && m.transport == Transport::Memory)
        .collect();
    std::fs::write(path, plot::svg(&memory))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("plot: {}", path.display());
    Ok(())
}

/// Prints the table of a saved run and, given a path, draws its plot.
fn replot(file: &std::path::Path, plot: Option<&std::path::Path>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let runs: Vec<Measurement> = serde_json::from_value(report["runs"].clone())
        .with_context(|| format!("{} holds no benchmark runs", file.display()))?;
    println!(
        "run of {} at commit {}",
        report["date"].as_str().unwrap_or("?"),
        report["commit"].as_str().unwrap_or("?")
    );
    print_table(&runs);
    if let Some(path) = plot {
        write_plot(path, &runs)?;
    }
    Ok(())
}

fn print_table(runs: &[Measurement]) {
    println!(
        "\n{:<10} {:<6} {:>5} {:>7} {:>7} {:>15} {:>17} {:>17} {:>17} {:>6} {:>6} {:>6} {:>5} {:>8} {:>8} {:>9} {:>13}",
        "mode",
        "tr",
        "N",
        "join s",
        "fill s",
        "rt mean",
        "get p50/p99 ms",
        "mut get p50/p99",
        "put p50/p99 ms",
        "get%",
        "recall",
        "req/get",
        "hops",
        "RSS MiB",
        "KiB/node",
        "cpu/1k s",
        "disc p50 ms %"
    );
    for m in runs {
        println!(
            "{:<10} {:<6} {:>5} {:>7.1} {:>7} {:>15.1} {:>17} {:>17} {:>17} {:>6.1} {:>6.3} {:>6.1} {:>5} {:>8} {:>8.0} {:>9.2} {:>13}",
            m.mode,
            m.transport.to_string(),
            m.nodes,
            m.join_seconds,
            m.routing_tables_filled_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
            m.routing_table_mean,
            format!("{:.2}/{:.2}", m.get.p50_ms, m.get.p99_ms),
            format!("{:.2}/{:.2}", m.get_mutable.p50_ms, m.get_mutable.p99_ms),
            format!("{:.2}/{:.2}", m.put.p50_ms, m.put.p99_ms),
            m.get_success * 100.0,
            m.closest_recall,
            m.requests_per_get,
            m.hops_mean
                .map_or_else(|| "-".to_owned(), |h| format!("{h:.2}")),
            m.rss_bytes >> 20,
            m.rss_bytes_per_node / 1024.0,
            m.cpu_seconds_per_1000_lookups,
            format!("{:.2} {:.0}", m.discover.p50_ms, m.discover_success * 100.0),
        );
    }
}
