//! The long-running roles: bootstrap, listener and dialer. What each role
//! changes is decided here: its identity, where it listens, what it
//! prints.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::anyhow;
use dht_core::{
    Config, ErrorCode, Event, NodeHandle, Role, RoleKind,
    error::chain,
    libp2p::{Multiaddr, PeerId, identity::Keypair},
};
use futures::StreamExt;
use native_node::{ListenSet, NativeNode, node::dialable_addresses};

use crate::{
    cli::{BootstrapArgs, DialerArgs, MemberArgs, NodeArgs, ReachabilityChoice},
    exit::Failure,
    http, identity,
    output::Output,
    signal,
};

/// Where the bootstrap keeps its key unless told otherwise:
/// `$XDG_DATA_HOME/ns-dht/bootstrap.key`, else `~/.local/share/ns-dht/bootstrap.key`.
pub(crate) fn default_bootstrap_key() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
        })?;
    Some(data.join("ns-dht").join("bootstrap.key"))
}

/// The node's identity: from `--key-file` or the `--data-dir`, from
/// `fallback` (the bootstrap's default file), or a new one for this run
/// only.
pub(crate) fn load_identity(
    node: &NodeArgs,
    fallback: Option<PathBuf>,
) -> Result<Keypair, Failure> {
    let Some(path) = node.key_file().or(fallback) else {
        return Ok(Keypair::generate_ed25519());
    };
    let (keypair, created) = identity::load_or_create(&path).map_err(Failure::identity)?;
    let peer = keypair.public().to_peer_id();
    if created {
        tracing::info!(path = %path.display(), %peer, "created a new identity");
    } else {
        tracing::info!(path = %path.display(), %peer, "loaded the identity");
    }
    Ok(keypair)
}

/// Starts a node, failing with the exit status its error means.
pub(crate) async fn start(
    node: &NodeArgs,
    keypair: Keypair,
    certificate: Option<libp2p_webrtc::tokio::Certificate>,
    config: &Config,
    role: &Role,
    listen: &[Multiaddr],
) -> Result<NativeNode, Failure> {
    native_node::start(keypair, certificate, config, role, listen, &node.external)
        .await
        .map_err(Failure::of)
}

/// Stops a node, failing if its task had crashed.
pub(crate) async fn stop(node: NativeNode) -> Result<(), Failure> {
    native_node::stop(node).await.map_err(Failure::of)
}

pub(crate) async fn bootstrap(args: BootstrapArgs, output: Output) -> Result<(), Failure> {
    if args.node.reachability != ReachabilityChoice::Public {
        return Err(Failure::usage(
            "bootstrap-must-be-reachable",
            anyhow!(
                "--reachability {} is not for a bootstrap node: others join through its own address",
                args.node.reachability.name()
            ),
        ));
    }
    let key_file = match args.node.key_file() {
        Some(path) => path,
        None => default_bootstrap_key().ok_or_else(|| {
            Failure::usage(
                "no-key-file",
                anyhow!(
                    "neither XDG_DATA_HOME nor HOME is set; pass --key-file to say where the bootstrap keeps its identity"
                ),
            )
        })?,
    };
    let keypair = load_identity(&args.node, Some(key_file.clone()))?;
    let certificate_file = args.webrtc_cert.clone().unwrap_or_else(|| {
        let mut name = key_file.clone().into_os_string();
        name.push(".webrtc.pem");
        PathBuf::from(name)
    });
    let (certificate, created) =
        identity::load_or_create_certificate(&certificate_file).map_err(Failure::identity)?;
    tracing::info!(
        path = %certificate_file.display(),
        "{} the WebRTC certificate",
        if created { "created" } else { "loaded" }
    );
    let config = args
        .node
        .config(!args.no_relay)?
        .build()
        .map_err(Failure::input)?;
    let listen = args
        .node
        .listen_addresses(|ip| ListenSet::bootstrap(ip, args.port));
    let node = start(
        &args.node,
        keypair,
        Some(certificate),
        &config,
        &Role::Bootstrap,
        &listen,
    )
    .await?;
    let addresses = dialable_addresses(&node, &args.node.external).await;
    output.started(RoleKind::Bootstrap, node.peer_id(), &addresses);

    if !args.no_http {
        let site = http::Site {
            root: args.www.clone(),
            node: node.handle.clone(),
            addresses: addresses.clone(),
            open_api: args.open_api,
        };
        let bind = SocketAddr::new(args.node.ip, args.http_port);
        match http::bind(bind, site).await {
            Ok((bound, serve)) => {
                tokio::spawn(serve);
                output.page(&format!("http://{bound}/"), args.www.join("pkg").is_dir());
            }
            Err(error) => {
                stop(node).await?;
                return Err(Failure::of(http::BindError {
                    address: bind,
                    source: error,
                }));
            }
        }
    }
    run_until_stopped(node, Some(args.report_interval), output).await
}

pub(crate) async fn listener(args: MemberArgs, output: Output) -> Result<(), Failure> {
    let role = Role::Listener {
        namespace: args.namespace.clone(),
    };
    let config = args.node.config(false)?.build().map_err(Failure::input)?;
    member(&args, &config, &role, output).await
}

pub(crate) async fn dialer(args: DialerArgs, output: Output) -> Result<(), Failure> {
    let node = &args.member.node;
    let role = Role::Dialer {
        namespace: args.member.namespace.clone(),
    };
    let config = node
        .config(false)?
        .discover_interval(args.discover_interval)
        .build()
        .map_err(Failure::input)?;
    member(&args.member, &config, &role, output).await
}

/// Runs a namespace member (listener or dialer) until Ctrl-C or SIGTERM.
async fn member(
    args: &MemberArgs,
    config: &Config,
    role: &Role,
    output: Output,
) -> Result<(), Failure> {
    let node = &args.node;
    let keypair = load_identity(node, None)?;
    let listen = node.listen_addresses(ListenSet::serving);
    let running = start(node, keypair, None, config, role, &listen).await?;
    let addresses = dialable_addresses(&running, &node.external).await;
    output.started(role.kind(), running.peer_id(), &addresses);
    let mut running = running;
    let report = Some(args.report_interval);
    print_until_signal(&mut running, report, args.message.clone(), output).await;
    stop(running).await
}

/// Prints events and, if asked, the monitor summary every `report_interval`,
/// until Ctrl-C or SIGTERM; then stops the node.
async fn run_until_stopped(
    mut node: NativeNode,
    report_interval: Option<Duration>,
    output: Output,
) -> Result<(), Failure> {
    print_until_signal(&mut node, report_interval, None, output).await;
    stop(node).await
}

/// Prints events and, if asked, the monitor summary every `report_interval`,
/// until Ctrl-C, SIGTERM or the node's end; sends `greeting` to every peer
/// the node links with.
pub(crate) async fn print_until_signal(
    node: &mut NativeNode,
    report_interval: Option<Duration>,
    greeting: Option<String>,
    output: Output,
) {
    let mut report = report_interval.and_then(every);
    let shutdown = signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            event = node.events.next() => match event {
                Some(event) => {
                    output.event(&event);
                    if let (Some(text), Event::NamespaceLinked { peer, .. }) = (&greeting, &event) {
                        send_greeting(&node.handle, *peer, text.clone());
                    }
                }
                None => break,
            },
            _ = tick(&mut report) => {
                if let Ok(report) = node.handle.network_report().await {
                    output.report(&report);
                }
            }
            () = &mut shutdown => break,
        }
    }
}

/// Sends `text` to the newly linked `peer` without holding up the event loop;
/// a failure is logged with its code.
fn send_greeting(handle: &NodeHandle, peer: PeerId, text: String) {
    let handle = handle.clone();
    tokio::spawn(async move {
        if let Err(error) = handle.send_message(peer, text).await {
            tracing::warn!(%peer, code = error.code(), error = %chain(&error), "could not send the message");
        }
    });
}

/// A timer that ticks every `interval` from one interval on; none for 0.
pub(crate) fn every(interval: Duration) -> Option<tokio::time::Interval> {
    (!interval.is_zero())
        .then(|| tokio::time::interval_at(tokio::time::Instant::now() + interval, interval))
}

/// Waits for the next tick, or forever without an interval.
pub(crate) async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
