//! The long-running roles: bootstrap, listener and dialer.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use dht_core::{
    Config, Role, RoleKind,
    libp2p::{Multiaddr, identity::Keypair},
};
use futures::StreamExt;

use crate::{
    cli::{BootstrapArgs, DialerArgs, MemberArgs, NodeArgs},
    exit::Failure,
    host::{self, Running},
    http, identity,
    output::Output,
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

/// The node's identity: from `--key-file`, from `fallback` (the bootstrap's
/// default file), or a new one for this run only.
pub(crate) fn load_identity(
    node: &NodeArgs,
    fallback: Option<PathBuf>,
) -> Result<Keypair, Failure> {
    let Some(path) = node.key_file.clone().or(fallback) else {
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

pub(crate) async fn bootstrap(args: BootstrapArgs, output: Output) -> Result<(), Failure> {
    let key_file = match &args.node.key_file {
        Some(path) => path.clone(),
        None => default_bootstrap_key().ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "neither XDG_DATA_HOME nor HOME is set; pass --key-file to say where the bootstrap keeps its identity"
            ))
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
    let config = args.node.config().build().map_err(Failure::usage)?;
    let next = if args.port == 0 {
        Some(0)
    } else {
        args.port.checked_add(1)
    };
    let listen = args.node.listen_addresses(args.port, args.port, next, next);

    let kind = RoleKind::Bootstrap;
    let running = host::start(
        keypair,
        Some(certificate),
        config,
        Role::Bootstrap,
        &listen,
        &args.node.external,
    )
    .await?;
    let addresses = running.dialable_addresses(&args.node.external).await;
    output.started(kind, running.handle.local_peer_id(), &addresses);

    if !args.no_http {
        let site = http::Site {
            root: args.www.clone(),
            node: running.handle.clone(),
            addresses: addresses.clone(),
        };
        let bind = SocketAddr::new(args.node.ip, args.http_port);
        match http::bind(bind, site).await {
            Ok((bound, serve)) => {
                tokio::spawn(serve);
                output.page(&format!("http://{bound}/"), args.www.join("pkg").is_dir());
            }
            Err(error) => {
                running.stop().await;
                return Err(Failure::runtime(anyhow::anyhow!(
                    "cannot serve the browser page on {bind}: {error} (choose another --http-port, or --no-http)"
                )));
            }
        }
    }
    run_until_stopped(running, Some(args.report_interval), output).await
}

pub(crate) async fn listener(args: MemberArgs, output: Output) -> Result<(), Failure> {
    let keypair = load_identity(&args.node, None)?;
    let config = args.node.config().build().map_err(Failure::usage)?;
    // WebSocket too, so that browser tabs can reach this node in lookups.
    let listen = args.node.listen_addresses(0, 0, Some(0), None);
    let role = Role::Listener {
        namespace: args.namespace,
    };
    serve(&args.node, keypair, config, role, &listen, output).await
}

pub(crate) async fn dialer(args: DialerArgs, output: Output) -> Result<(), Failure> {
    let member = args.member;
    let keypair = load_identity(&member.node, None)?;
    let config = member
        .node
        .config()
        .discover_interval(args.discover_interval)
        .build()
        .map_err(Failure::usage)?;
    // WebSocket too, so that browser tabs can reach this node in lookups.
    let listen = member.node.listen_addresses(0, 0, Some(0), None);
    let role = Role::Dialer {
        namespace: member.namespace,
    };
    serve(&member.node, keypair, config, role, &listen, output).await
}

/// Starts a role and runs it until Ctrl-C or SIGTERM.
pub(crate) async fn serve(
    node: &NodeArgs,
    keypair: Keypair,
    config: Config,
    role: Role,
    listen: &[Multiaddr],
    output: Output,
) -> Result<(), Failure> {
    let kind = role.kind();
    let running = host::start(keypair, None, config, role, listen, &node.external).await?;
    let addresses = running.dialable_addresses(&node.external).await;
    output.started(kind, running.handle.local_peer_id(), &addresses);
    run_until_stopped(running, None, output).await
}

/// Prints events and, if asked, the monitor summary every `report_interval`,
/// until Ctrl-C or SIGTERM; then stops the node.
async fn run_until_stopped(
    mut running: Running,
    report_interval: Option<Duration>,
    output: Output,
) -> Result<(), Failure> {
    print_until_signal(&mut running, report_interval, output).await;
    running.stop().await;
    Ok(())
}

/// Prints events and, if asked, the monitor summary every `report_interval`,
/// until Ctrl-C, SIGTERM or the node's end.
pub(crate) async fn print_until_signal(
    running: &mut Running,
    report_interval: Option<Duration>,
    output: Output,
) {
    let mut report = report_interval
        .filter(|d| !d.is_zero())
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let shutdown = host::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            event = running.events.next() => match event {
                Some(event) => output.event(&event),
                None => break,
            },
            _ = tick(&mut report) => {
                if let Ok(report) = running.handle.network_report().await {
                    output.report(&report);
                }
            }
            () = &mut shutdown => break,
        }
    }
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
