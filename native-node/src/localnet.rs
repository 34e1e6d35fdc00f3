//! A whole local network in one process, on loopback sockets: the spec's
//! intensive-test network, for demos and manual tests.
//!
//! Node 0 is the bootstrap; the others join through it over TCP. Each node
//! has its own swarm, listeners and identity, exactly as separate processes
//! would; they only share the runtime.

use std::time::Duration;

use anyhow::anyhow;
use dht_core::{
    Event, NodeHandle, Role,
    libp2p::{identity::Keypair, multiaddr::Protocol},
};
use futures::{StreamExt, future::join_all, stream::SelectAll};
use serde_json::json;

use crate::{
    cli::LocalnetArgs,
    exit::Failure,
    host::{self, Running},
    output::{self, Output},
    roles::{load_identity, tick},
};

pub(crate) async fn run(args: LocalnetArgs, output: Output) -> Result<(), Failure> {
    let size = args.nodes as usize;
    let members = args.listeners as usize + args.dialers as usize;
    if members >= size {
        return Err(Failure::usage(anyhow!(
            "{} listeners and {} dialers need at least {} nodes besides the bootstrap",
            args.listeners,
            args.dialers,
            members
        )));
    }
    if !args.node.listen.is_empty() || !args.node.bootstrap_addresses().is_empty() {
        return Err(Failure::usage(anyhow!(
            "localnet chooses its own listeners and bootstrap; use --ip and --port instead of --listen and --bootstrap"
        )));
    }

    let bootstrap_key = load_identity(&args.node, None)?;
    let config = args.node.config().build().map_err(Failure::usage)?;
    let listen = args.node.listen_addresses(args.port, args.port, None, None);
    let bootstrap = host::start(
        bootstrap_key,
        None,
        config,
        Role::Bootstrap,
        &listen,
        &args.node.external,
    )
    .await?;
    let bootstrap_addresses = bootstrap.dialable_addresses(&args.node.external).await;
    let join_address = bootstrap_addresses
        .iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .cloned()
        .ok_or_else(|| anyhow!("the bootstrap node has no TCP address to join through"))?;
    output.started(
        dht_core::RoleKind::Bootstrap,
        bootstrap.handle.local_peer_id(),
        &bootstrap_addresses,
    );

    let mut nodes = vec![bootstrap];
    for index in 1..size {
        let role = if index <= args.listeners as usize {
            Role::Listener {
                namespace: args.namespace.clone(),
            }
        } else if index <= members {
            Role::Dialer {
                namespace: args.namespace.clone(),
            }
        } else {
            Role::ClientHelper
        };
        let config = args
            .node
            .config()
            .bootstrap_peer(join_address.clone())
            .discover_interval(Duration::from_secs(2))
            .build()
            .map_err(Failure::usage)?;
        let listen = args.node.listen_addresses(0, 0, Some(0), None);
        match host::start(
            Keypair::generate_ed25519(),
            None,
            config,
            role,
            &listen,
            &[],
        )
        .await
        {
            Ok(node) => nodes.push(node),
            Err(failure) => {
                stop_all(nodes).await;
                return Err(failure);
            }
        }
    }
    let joined = wait_until_joined(&mut nodes, Duration::from_secs(60)).await;
    let handles: Vec<NodeHandle> = nodes.iter().map(|n| n.handle.clone()).collect();
    summary(&handles, output, Some(joined)).await;

    let mut events: SelectAll<_> = nodes.iter_mut().map(|node| &mut node.events).collect();
    let mut report = Some(args.report_interval)
        .filter(|d| !d.is_zero())
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let shutdown = host::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(event) = events.next(), if output == Output::Json => output.event(&event),
            _ = tick(&mut report) => summary(&handles, output, None).await,
            () = &mut shutdown => break,
        }
    }
    drop(events);
    stop_all(nodes).await;
    Ok(())
}

/// Waits until every node but the bootstrap reported a finished bootstrap;
/// returns how many did within `limit`.
async fn wait_until_joined(nodes: &mut [Running], limit: Duration) -> usize {
    let waits = nodes.iter_mut().skip(1).map(|node| async move {
        tokio::time::timeout(limit, async {
            while let Some(event) = node.events.next().await {
                if matches!(event, Event::Bootstrapped { .. }) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    });
    join_all(waits)
        .await
        .into_iter()
        .filter(|joined| *joined)
        .count()
}

async fn summary(handles: &[NodeHandle], output: Output, joined: Option<usize>) {
    let reports: Vec<_> = join_all(handles.iter().map(|h| h.network_report()))
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let sizes: Vec<usize> = reports.iter().map(|r| r.routing_table_size()).collect();
    let min = sizes.iter().copied().min().unwrap_or(0);
    let max = sizes.iter().copied().max().unwrap_or(0);
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
    let records: usize = reports.iter().map(|r| r.records).sum();
    let links: usize = reports.iter().map(|r| r.links).sum();
    match output {
        Output::Json => output.json(&json!({
            "type": "localnet",
            "nodes": handles.len(),
            "joined": joined,
            "routingTable": { "min": min, "mean": mean, "max": max },
            "records": records,
            "links": links,
        })),
        Output::Text => {
            if let Some(joined) = joined {
                output::line(&format!("{} of {} nodes joined", joined + 1, handles.len()));
            }
            output::line(&format!(
                "{} nodes: routing table min {min} / mean {mean:.1} / max {max}, {records} records held, {links} namespace links",
                handles.len()
            ));
        }
    }
}

async fn stop_all(nodes: Vec<Running>) {
    join_all(nodes.into_iter().map(Running::stop)).await;
}
