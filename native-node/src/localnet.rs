//! A whole local network in one process, on loopback sockets: the spec's
//! intensive-test network, for demos and manual tests.
//!
//! Node 0 is the bootstrap; the others join through it over TCP. Each node
//! has its own swarm, listeners and identity, exactly as separate processes
//! would; they only share the runtime.

use std::time::Duration;

use anyhow::anyhow;
use dht_core::{
    NodeHandle, Role, RoleKind,
    libp2p::{identity::Keypair, multiaddr::Protocol},
};
use futures::{StreamExt, future::join_all, stream::SelectAll};
use native_node::{ListenSet, NativeNode, node::dialable_addresses};
use serde_json::json;

use crate::{
    cli::{LocalnetArgs, ReachabilityChoice},
    exit::Failure,
    output::{self, Output},
    roles::{every, load_identity, start, stop, tick},
    signal,
};

/// How long each node may take to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: LocalnetArgs, output: Output) -> Result<(), Failure> {
    let size = args.nodes as usize;
    let members = args.listeners as usize + args.dialers as usize;
    if members >= size {
        return Err(Failure::usage(
            "bad-request",
            anyhow!(
                "{} listeners and {} dialers need at least {} nodes besides the bootstrap",
                args.listeners,
                args.dialers,
                members
            ),
        ));
    }
    if !args.node.listen.is_empty() || !args.node.bootstrap_addresses().is_empty() {
        return Err(Failure::usage(
            "bad-request",
            anyhow!(
                "localnet chooses its own listeners and bootstrap; use --ip and --port instead of --listen and --bootstrap"
            ),
        ));
    }
    if args.node.data_dir.is_some() {
        return Err(Failure::usage(
            "bad-request",
            anyhow!("--data-dir keeps one node's state; localnet runs many nodes in one process"),
        ));
    }
    if args.node.reachability != ReachabilityChoice::Public {
        return Err(Failure::usage(
            "bad-request",
            anyhow!(
                "--reachability {}: localnet's nodes share one host and reach each other at their own addresses",
                args.node.reachability.name()
            ),
        ));
    }

    let bootstrap_key = load_identity(&args.node, None)?;
    let config = args.node.config(true)?.build().map_err(Failure::input)?;
    let listen = ListenSet::bootstrap(args.node.ip, args.port).addresses();
    let bootstrap = start(
        &args.node,
        bootstrap_key,
        None,
        &config,
        &Role::Bootstrap,
        &listen,
    )
    .await?;
    let bootstrap_addresses = dialable_addresses(&bootstrap, &args.node.external).await;
    let join_address = bootstrap_addresses
        .iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .cloned()
        .ok_or_else(|| {
            Failure::failed(
                "no-tcp-address",
                anyhow!("the bootstrap node has no TCP address to join through"),
            )
        })?;
    output.started(
        RoleKind::Bootstrap,
        bootstrap.peer_id(),
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
            .config(false)?
            .bootstrap_peer(join_address.clone())
            .discover_interval(Duration::from_secs(2))
            .build()
            .map_err(Failure::input)?;
        let listen = ListenSet::serving(args.node.ip).addresses();
        match start(
            &args.node,
            Keypair::generate_ed25519(),
            None,
            &config,
            &role,
            &listen,
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
    let joined = join_all(
        nodes
            .iter_mut()
            .skip(1)
            .map(|node| node.joined(JOIN_TIMEOUT)),
    )
    .await
    .into_iter()
    .filter(Result::is_ok)
    .count();
    let handles: Vec<NodeHandle> = nodes.iter().map(|n| n.handle.clone()).collect();
    summary(&handles, output, Some(joined)).await;

    let mut events: SelectAll<_> = nodes.iter_mut().map(|node| &mut node.events).collect();
    let mut report = every(args.report_interval);
    let shutdown = signal::shutdown();
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

async fn stop_all(nodes: Vec<NativeNode>) {
    for result in join_all(nodes.into_iter().map(stop)).await {
        if let Err(failure) = result {
            tracing::error!(error = %format!("{:#}", failure.error), "a node did not stop cleanly");
        }
    }
}
