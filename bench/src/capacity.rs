//! Bootstrap capacity: one `native-node` bootstrap process and many light
//! clients holding a connection to it, half over TCP and half over
//! WebSocket, all on 127.0.0.1. Reports the connections it holds, its memory
//! per connection, its CPU, and put/get latency while it carries them.
//!
//! The same with relayed clients (stand-ins for browser tabs: they listen
//! nowhere and serve through the bootstrap's relay) measures what relaying
//! costs the relay: memory per reservation, CPU at rest, and CPU and latency
//! while reads and writes go to relayed holders through circuits.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::procs::process_cpu;

use anyhow::anyhow;
use dht_core::{Config, NodeHandle, Role, ServerMode, Write, libp2p::identity::Keypair};
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::{
    procs::Process,
    stats::{self, Latency},
};

/// What the capacity run measured.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Capacity {
    /// Whether the clients serve through the bootstrap's relay.
    #[serde(default)]
    pub(crate) relayed: bool,
    pub(crate) clients: usize,
    /// Clients serving (holding a reservation on the relay) when measured.
    #[serde(default)]
    pub(crate) serving: usize,
    /// The bootstrap's CPU while the network rests, in ms per second.
    #[serde(default)]
    pub(crate) bootstrap_idle_cpu_ms_per_s: f64,
    /// The bootstrap's CPU during the put/get rounds, in seconds.
    #[serde(default)]
    pub(crate) bootstrap_rounds_cpu_seconds: f64,
    pub(crate) connected: usize,
    pub(crate) held_by_bootstrap: u64,
    pub(crate) bootstrap_rss_before: u64,
    pub(crate) bootstrap_rss_after: u64,
    pub(crate) rss_bytes_per_connection: f64,
    pub(crate) connect_seconds: f64,
    pub(crate) put: Latency,
    pub(crate) get: Latency,
    pub(crate) get_success: f64,
}

/// A light client: a node that listens nowhere and keeps its connection to
/// the bootstrap, in client mode or (`relayed`) serving through the
/// bootstrap's relay. Returns its handle and whether it joined.
async fn light_client(bootstrap: &str, relayed: bool) -> anyhow::Result<(NodeHandle, bool)> {
    let mode = if relayed {
        ServerMode::Relayed
    } else {
        ServerMode::Never
    };
    let config = Config::builder()
        .bootstrap_peer(bootstrap.parse()?)
        .server_mode(mode)
        .build()?;
    let keypair = Keypair::generate_ed25519();
    let mut node =
        native_node::start(keypair, None, &config, &Role::ClientHelper, &[], &[]).await?;
    let joined = node.joined(Duration::from_secs(30)).await.is_ok();
    Ok((node.handle, joined))
}

/// How long the network rests while the bootstrap's idle CPU is measured.
const REST: Duration = Duration::from_secs(10);

/// Connects `clients` light clients (relayed ones if `relayed`) to a fresh
/// bootstrap and measures it.
pub(crate) async fn measure(
    binary: &Path,
    clients: usize,
    rounds: usize,
    time_limit: Duration,
    relayed: bool,
) -> anyhow::Result<Capacity> {
    let deadline = Instant::now() + time_limit;
    let dir = std::env::temp_dir().join(format!("ns-dht-capacity-{}", std::process::id()));
    // Every client is on 127.0.0.1: the relay's per-address rates (60
    // reservations and 1200 circuits a minute) would measure the limits,
    // not the relay.
    let extra: &[&str] = if relayed {
        &[
            "--relay-circuits-per-ip-per-minute",
            "1000000",
            "--relay-reservations-per-ip-per-minute",
            "1000000",
        ]
    } else {
        &[]
    };
    let (mut bootstrap, line) = Process::start_bootstrap(
        binary,
        &dir,
        &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"],
        extra,
    )
    .await?;
    let addresses: Vec<String> = line["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let tcp = addresses
        .iter()
        .find(|a| !a.contains("/ws/"))
        .cloned()
        .ok_or_else(|| anyhow!("no TCP address"))?;
    let ws = addresses
        .iter()
        .find(|a| a.contains("/ws/"))
        .cloned()
        .ok_or_else(|| anyhow!("no WebSocket address"))?;
    let pid = bootstrap.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats::status_bytes(&pid, "VmRSS:");

    let started = Instant::now();
    let mut handles = Vec::new();
    let mut connected = 0;
    while handles.len() < clients && Instant::now() < deadline {
        let batch = 50.min(clients - handles.len());
        let offset = handles.len();
        let results = join_all(
            (0..batch)
                .map(|i| light_client(if (offset + i) % 2 == 0 { &tcp } else { &ws }, relayed)),
        )
        .await;
        for result in results {
            let (handle, ok) = result?;
            connected += usize::from(ok);
            handles.push(handle);
        }
        if handles.len() % 500 == 0 || handles.len() == clients {
            eprintln!(
                "  capacity: {}/{clients} clients connected after {:.1} s",
                connected,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let the clients' bootstrap lookups (and reservations) settle before
    // measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats::status_bytes(&pid, "VmRSS:");
    let mut serving = 0;
    for handle in &handles {
        if handle.network_report().await.is_ok_and(|r| r.serving) {
            serving += 1;
        }
    }
    let cpu_before_rest = process_cpu(&pid);
    tokio::time::sleep(REST).await;
    let idle_cpu = process_cpu(&pid).saturating_sub(cpu_before_rest);

    // Connections the bootstrap holds: its established TCP sockets in the
    // kernel's table (WebSocket runs over TCP).
    let held = count_sockets(&pid);

    let (probe, _) = light_client(&tcp, false).await?;
    let cpu_before_rounds = process_cpu(&pid);
    let (mut puts, mut gets, mut get_ok) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        // At most 256 distinct records: one peer's share of a node's store
        // is 512, and a refused write would cost the probe its 10 s request
        // timeout (see README, Records). Later rounds store copies again.
        let write = Write::immutable(format!("capacity-{}", round % 256));
        let key = write.key()?;
        let started = Instant::now();
        let _ = probe.put(write).await;
        puts.push(started.elapsed());
        let started = Instant::now();
        if probe.get_record(key).await.is_ok() {
            get_ok += 1;
        }
        gets.push(started.elapsed());
    }
    let rounds_cpu = process_cpu(&pid).saturating_sub(cpu_before_rounds);
    probe.shutdown().await;
    join_all(handles.iter().map(NodeHandle::shutdown)).await;
    let _ = bootstrap.child.start_kill();
    let _ = bootstrap.child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);

    Ok(Capacity {
        relayed,
        clients,
        serving,
        bootstrap_idle_cpu_ms_per_s: idle_cpu.as_secs_f64() * 1000.0 / REST.as_secs_f64(),
        bootstrap_rounds_cpu_seconds: rounds_cpu.as_secs_f64(),
        connected,
        held_by_bootstrap: held,
        bootstrap_rss_before: before,
        bootstrap_rss_after: after,
        rss_bytes_per_connection: after.saturating_sub(before) as f64 / connected.max(1) as f64,
        connect_seconds,
        put: Latency::of(&puts),
        get: Latency::of(&gets),
        get_success: f64::from(get_ok) / gets.len().max(1) as f64,
    })
}

/// Established TCP connections held by a process: its socket descriptors
/// that appear in the kernel's table as established.
fn count_sockets(pid: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: std::collections::HashSet<String> = entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    let established = |table: &str| -> u64 {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(3) == Some(&"01")
                    && fields.get(9).is_some_and(|inode| inodes.contains(*inode))
            })
            .count() as u64
    };
    established("/proc/net/tcp") + established("/proc/net/tcp6")
}
