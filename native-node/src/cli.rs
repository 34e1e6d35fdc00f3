//! The command line: one subcommand per role, options shared by all.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use dht_core::{
    Namespace, RelayLimits,
    libp2p::{Multiaddr, PeerId},
};

const AFTER_HELP: &str = "\
EXIT STATUS:
  0  success, or a clean stop on Ctrl-C / SIGTERM
  1  the node or the operation failed (cannot listen, cannot join, lookup failed)
  2  invalid command line or input (bad multiaddr, namespace, record, option)
  3  the identity key file is unreadable or corrupt
  4  (client get) the record was not found

ENVIRONMENT:
  RUST_LOG       log filter for stderr, e.g. `info` or `dht_core=debug` (default: info)
  DHT_BOOTSTRAP  comma-separated bootstrap multiaddrs, used when --bootstrap is not given";

/// A node of the ns-dht Kademlia DHT.
///
/// Every node stores records, answers queries and routes for others; the
/// role only adds duties. Peers of one app find each other through a
/// namespace registered in the DHT itself, with no rendezvous server.
///
/// Start a bootstrap node, copy one of the addresses it prints, and pass it
/// with --bootstrap to the other roles.
#[derive(Debug, Parser)]
#[command(name = "native-node", version, after_long_help = AFTER_HELP, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// Print JSON lines on stdout (start-up addresses, events, reports,
    /// results, and a failure's `{"ok": false, "error": {"code",
    /// "message"}}`) instead of text, for scripts and tests.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a bootstrap (monitor/server) node at a known address.
    ///
    /// It listens on TCP, QUIC and WebSocket, always serves the DHT, keeps its
    /// identity in a key file so its address stays valid across restarts, and
    /// prints a summary of the network it sees: routing table by bucket,
    /// registrations per namespace, records held.
    Bootstrap(BootstrapArgs),
    /// Register in a namespace and accept the dialers of that namespace.
    Listener(MemberArgs),
    /// Register in a namespace, discover its other members through the DHT
    /// and link to each (connect and confirm the namespace).
    Dialer(DialerArgs),
    /// Join the DHT as an ordinary node and do lookups for an app: run one
    /// operation and exit, or keep serving requests from stdin.
    ///
    /// One-shot operations (get, put, closest, discover, report) query the
    /// DHT without offering to serve it, so that a process that exits a
    /// moment later leaves no dead entry in other nodes' routing tables;
    /// `run` and `serve` make a full DHT node.
    Client(ClientArgs),
    /// Run a whole local network in this process: a bootstrap and N-1 nodes
    /// on loopback, some of them namespace listeners and dialers if asked.
    Localnet(LocalnetArgs),
}

/// Options every node has.
#[derive(Debug, Clone, Args)]
pub(crate) struct NodeArgs {
    /// A bootstrap node to join through, with its /p2p/ peer id; repeat for
    /// more. Example: /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...
    #[arg(
        long = "bootstrap",
        value_name = "MULTIADDR",
        env = "DHT_BOOTSTRAP",
        value_delimiter = ','
    )]
    pub(crate) bootstrap: Vec<Multiaddr>,

    /// An address to listen on; repeat for more. Replaces the role's default
    /// listeners (see --ip): TCP, QUIC and WebSocket on free ports (the
    /// bootstrap: fixed ports, and WebRTC-direct too).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub(crate) listen: Vec<Multiaddr>,

    /// The IP the default listeners bind to. Loopback by default, so that a
    /// first run exposes nothing; use 0.0.0.0 (or ::) to serve a network.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub(crate) ip: IpAddr,

    /// An address others can reach this node at (behind NAT or a proxy);
    /// repeat for more. Announced along with the listen addresses.
    #[arg(long = "external", value_name = "MULTIADDR")]
    pub(crate) external: Vec<Multiaddr>,

    /// Keep the node's identity in this file (created, owner-only, if
    /// missing), so it keeps its peer id across restarts. Without it a new
    /// identity is made for each run, except for the bootstrap role and
    /// nodes with a --data-dir.
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,

    /// Keep the node's records, the registrations it holds for others and
    /// its routing table in this directory (created if missing; the store
    /// is `store.redb`, the identity `node.key` unless --key-file says
    /// otherwise), and start from them: a record or registration is
    /// acknowledged only once it is on disk, so a node killed at any moment
    /// loses none it acknowledged, and a node whose bootstrap is gone
    /// rejoins through the peers it knew. One node per directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// The Kademlia protocol name; nodes only form a DHT with peers that use
    /// the same one.
    #[arg(long, value_name = "NAME", default_value_t = dht_core::DEFAULT_KAD_PROTOCOL.to_string())]
    pub(crate) kad_protocol: String,

    /// k: how many peers store each record and answer each lookup.
    #[arg(long, value_name = "K", default_value_t = 20)]
    pub(crate) replication_factor: usize,

    /// How long one lookup may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub(crate) query_timeout: Duration,

    /// How long after the k peers closest to a record it holds change (a
    /// closer peer joined; one left, or a dial to it failed) this node
    /// sends the record to the peers now among the k closest. Changes are
    /// gathered this long, so a burst costs one pass over the store. 0
    /// turns it off: the hourly replication alone repairs records.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub(crate) rereplicate_after: Duration,

    /// Largest record value stored or accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub(crate) max_record_size: usize,

    /// How long a namespace registration lives without a refresh.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub(crate) namespace_ttl: Duration,

    /// How often registrations are refreshed; shorter than --namespace-ttl.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "4m")]
    pub(crate) namespace_refresh: Duration,

    /// How long an idle connection stays open.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub(crate) idle_timeout: Duration,

    /// How long a peer reachable only through relays (a browser tab) stays
    /// in the routing table unheard from before it is dialed to check that
    /// it is still there; a closed tab leaves within this plus about 15 s
    /// (at once for peers whose connection to it broke). Each check of a
    /// live tab opens a circuit through its relay.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub(crate) check_relayed_peers_every: Duration,

    /// Inbound connections one IPv4 address (or IPv6 /64) may hold, pending
    /// or open, however many peer ids it uses.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections_per_ip: u32,

    /// Apply --max-connections-per-ip to connections from this host
    /// (loopback) too; they are exempt by default, so that local networks
    /// of many nodes work.
    #[arg(long)]
    pub(crate) limit_loopback: bool,

    /// Connections kept open while idle for peers that pinned this node
    /// (they use it as their bootstrap); more close when idle and their
    /// peers reconnect. Raise it on a bootstrap with many clients.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub(crate) max_pinned_by_others: usize,

    /// Routing-table entries one subnet (IPv4 /24, IPv6 /48) may hold, at
    /// most 2 of them per bucket, so that one operator's many peer ids
    /// cannot fill the table. Peers reached through a relay (tabs) count
    /// against the relay's subnet apart from its direct peers, 2 per bucket
    /// with no table-wide bound. Loopback peers are exempt unless
    /// --limit-loopback.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_routing_peers_per_subnet: u32,

    /// How others reach this node. `public`: at its listen addresses; it
    /// serves the DHT at once. `auto`, for a node that may be behind a NAT:
    /// it finds out by asking peers to dial it back at the address they
    /// see it at (AutoNAT v2), only queries until one answered, serves at
    /// that address once a dial-back worked, and through relays (as
    /// `relayed`) once one failed; peers it reaches through a relay it
    /// tries to connect to directly (hole punching, DCUtR). `relayed`: it
    /// serves through circuit relays only, as a browser tab does (for a node
    /// known to be unreachable, or a native stand-in for a tab): it listens
    /// on nothing unless --listen is given, takes reservations on up to two
    /// relays among the peers it dialed (bootstrap nodes relay by default),
    /// announces their /p2p-circuit addresses and answers DHT requests only
    /// while one holds.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = ReachabilityChoice::Public)]
    pub(crate) reachability: ReachabilityChoice,

    #[command(flatten)]
    pub(crate) relay: RelayArgs,
}

/// How others reach a node (`--reachability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReachabilityChoice {
    /// At its listen addresses.
    Public,
    /// Find out (AutoNAT v2); relays and hole punching if unreachable.
    Auto,
    /// Through circuit relays only.
    Relayed,
}

impl ReachabilityChoice {
    /// The value as typed on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Auto => "auto",
            Self::Relayed => "relayed",
        }
    }
}

/// Relaying for others (circuit relay v2): on for bootstrap nodes, `--relay`
/// for the others. Each bound is enforced by libp2p's relay.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Relay (circuit relay v2)")]
pub(crate) struct RelayArgs {
    /// Relay for nodes nobody can dial (browser tabs, nodes behind NAT), so
    /// that they can serve the DHT. Bootstrap nodes relay unless --no-relay.
    #[arg(long)]
    pub(crate) relay: bool,

    /// Reservations held for others at once.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_reservations)]
    pub(crate) relay_max_reservations: usize,

    /// Reservations one peer may hold at once (one per connection).
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_reservations_per_peer)]
    pub(crate) relay_max_reservations_per_peer: usize,

    /// How long a reservation lasts before its holder renews it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub(crate) relay_reservation_duration: Duration,

    /// Circuits open at once.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_circuits)]
    pub(crate) relay_max_circuits: usize,

    /// Circuits one peer may be an end of at once: every DHT peer that talks
    /// to a relayed node opens its own.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_circuits_per_peer)]
    pub(crate) relay_max_circuits_per_peer: usize,

    /// How long one circuit may stay open; the next request opens another.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub(crate) relay_circuit_duration: Duration,

    /// Bytes one circuit may carry each way before it is cut.
    #[arg(long, value_name = "BYTES", default_value_t = RelayLimits::default().max_circuit_bytes)]
    pub(crate) relay_circuit_bytes: u64,

    /// Circuits one peer may open per minute (each DHT lookup that meets a
    /// relayed node opens one).
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().circuits_per_peer_per_minute)]
    pub(crate) relay_circuits_per_peer_per_minute: u32,

    /// Circuits one IP address may open per minute.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().circuits_per_ip_per_minute)]
    pub(crate) relay_circuits_per_ip_per_minute: u32,

    /// Reservations one IP address may take per minute, renewals included
    /// (many tabs behind one NAT share it).
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().reservations_per_ip_per_minute)]
    pub(crate) relay_reservations_per_ip_per_minute: u32,
}

#[derive(Debug, Args)]
pub(crate) struct BootstrapArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,

    /// The TCP and QUIC (UDP) port of the default listeners; WebSocket (TCP)
    /// and WebRTC-direct (UDP) use the next port. 0 picks free ports.
    #[arg(long, value_name = "PORT", default_value_t = 4001)]
    pub(crate) port: u16,

    /// Serve the browser page, its wasm package and /config.json (this
    /// node's addresses) over HTTP on this port of --ip; 0 picks a free one.
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub(crate) http_port: u16,

    /// Do not serve the browser page.
    #[arg(long, conflicts_with = "http_port")]
    pub(crate) no_http: bool,

    /// Let clients on other hosts use the HTTP API (/api/record runs DHT
    /// lookups, /status.json shows this node's view). By default only
    /// clients on this host may.
    #[arg(long, conflicts_with = "no_http")]
    pub(crate) open_api: bool,

    /// The directory served over HTTP (the page, with the wasm package
    /// built into its pkg/ by scripts/run.sh).
    #[arg(long, value_name = "DIR", default_value = "www")]
    pub(crate) www: PathBuf,

    /// The WebRTC certificate, whose hash is part of the WebRTC-direct
    /// address; created if missing. Default: beside the key file, with
    /// `.webrtc.pem` appended to its name.
    #[arg(long, value_name = "PATH")]
    pub(crate) webrtc_cert: Option<PathBuf>,

    /// Do not relay for others. Browser tabs can then not serve the DHT
    /// through this node.
    #[arg(long, conflicts_with = "relay")]
    pub(crate) no_relay: bool,

    /// Print the monitor summary this often; 0 turns it off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub(crate) report_interval: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct MemberArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,

    /// The namespace to register in.
    #[arg(long, value_name = "NAME", value_parser = parse_namespace)]
    pub(crate) namespace: Namespace,

    /// Send TEXT to every peer this node links with, once linked. Messages
    /// linked peers send are printed either way (`message-received`).
    #[arg(long, value_name = "TEXT")]
    pub(crate) message: Option<String>,

    /// Print the monitor summary (reachability, relays, hole-punched
    /// peers, routing table, records) this often; 0 turns it off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0")]
    pub(crate) report_interval: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct DialerArgs {
    #[command(flatten)]
    pub(crate) member: MemberArgs,

    /// How often to look for new members of the namespace.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub(crate) discover_interval: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,

    /// How long to wait for the first bootstrap to finish before giving up.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "15s")]
    pub(crate) join_timeout: Duration,

    #[command(subcommand)]
    pub(crate) operation: ClientOperation,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ClientOperation {
    /// Print the value of the record under KEY (raw bytes on stdout), once
    /// its signature or hash checked out.
    ///
    /// KEY is what `put` and `put-immutable` print:
    /// /ns-dht/m/<owner peer id>/<name> or /ns-dht/i/<sha256 hex>. Copies
    /// that fail verification are discarded (counted in --json output) and
    /// the lookup goes on to honest holders.
    Get {
        /// The record key.
        key: String,
        /// Copies of one version that must be found (the local store
        /// counts as one); the newest version found that often is printed.
        #[arg(long, default_value_t = 1)]
        quorum: usize,
    },
    /// Store VALUE (or the contents of --value-file) as the record NAME of
    /// this node's identity, which only that identity can change.
    ///
    /// The record lives under /ns-dht/m/<peer id>/NAME (printed), signed
    /// with the identity's key. Pass --key-file to write the same record
    /// again from a later run: a new identity owns a different record.
    /// Every write is a new version, numbered by the clock in milliseconds
    /// unless --seq says otherwise; nodes keep the highest version.
    Put {
        /// The record's name (UTF-8, 1 to 256 bytes).
        name: String,
        /// The value (UTF-8); omit it to use --value-file.
        #[arg(required_unless_present = "value_file")]
        value: Option<String>,
        /// Read the value from this file instead.
        #[arg(long, value_name = "PATH", conflicts_with = "value")]
        value_file: Option<PathBuf>,
        /// Write this version number instead of the clock's; it must be
        /// higher than the version the network holds.
        #[arg(long, value_name = "N")]
        seq: Option<u64>,
        /// Peers besides this node that must have stored it for success.
        /// The put always writes to the k closest peers it finds and waits
        /// for each of them, then prints how many stored it.
        #[arg(long, default_value_t = 1)]
        quorum: usize,
    },
    /// Store VALUE (or the contents of --value-file) under the hash of its
    /// content, /ns-dht/i/<sha256 hex> (printed); nobody can change it.
    PutImmutable {
        /// The value (UTF-8); omit it to use --value-file.
        #[arg(required_unless_present = "value_file")]
        value: Option<String>,
        /// Read the value from this file instead.
        #[arg(long, value_name = "PATH", conflicts_with = "value")]
        value_file: Option<PathBuf>,
        /// Peers besides this node that must have stored it for success.
        /// The put always writes to the k closest peers it finds and waits
        /// for each of them, then prints how many stored it.
        #[arg(long, default_value_t = 1)]
        quorum: usize,
    },
    /// Print the k peers closest to KEY (or to --peer) in the network.
    Closest {
        /// The key (UTF-8).
        #[arg(required_unless_present = "peer")]
        key: Option<String>,
        /// A peer id instead of a key.
        #[arg(long, conflicts_with = "key")]
        peer: Option<PeerId>,
    },
    /// Print the members of NAMESPACE with their addresses.
    Discover {
        /// The namespace.
        #[arg(value_parser = parse_namespace)]
        namespace: Namespace,
    },
    /// Print this node's view of the network once it has joined.
    Report,
    /// Keep running as an ordinary DHT node until stopped.
    Run,
    /// Keep running and answer requests from stdin, one per line, with one
    /// JSON answer each on stdout (`{"ok": true, "record": …}` or `{"ok":
    /// false, "error": {"code", "message"}}`): `get KEY`, `put NAME VALUE`
    /// (signed with this node's identity), `put-immutable VALUE`, `closest KEY`, `discover NAMESPACE`, `register NAMESPACE`,
    /// `unregister NAMESPACE`, `report`, `quit`.
    Serve,
}

#[derive(Debug, Args)]
pub(crate) struct LocalnetArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,

    /// Nodes in the network, the bootstrap included.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) nodes: u32,

    /// The bootstrap's TCP and QUIC port (0 picks a free one).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub(crate) port: u16,

    /// Namespace for --listeners and --dialers.
    #[arg(long, value_name = "NAME", value_parser = parse_namespace, default_value = "localnet")]
    pub(crate) namespace: Namespace,

    /// How many of the nodes are namespace listeners.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) listeners: u32,

    /// How many of the nodes are namespace dialers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) dialers: u32,

    /// Print a summary of the network this often; 0 turns it off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub(crate) report_interval: Duration,
}

/// Parses `500ms`, `30s`, `10m`, `2h` or a plain number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration; use a number with ms, s, m or h, e.g. 30s")
    })?;
    let unit_ms = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?}; use ms, s, m or h"
            ));
        }
    };
    value
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn parse_namespace(text: &str) -> Result<Namespace, String> {
    Namespace::new(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use native_node::ListenSet;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn default_listeners_follow_the_ip_option() {
        let cli = Cli::try_parse_from(["native-node", "client", "--ip", "::1", "run"]).unwrap();
        let Command::Client(client) = cli.command else {
            panic!("client")
        };
        let listen: Vec<String> = client
            .node
            .listen_addresses(ListenSet::querying)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(listen, ["/ip6/::1/tcp/0", "/ip6/::1/udp/0/quic-v1"]);
        let cli = Cli::try_parse_from([
            "native-node",
            "client",
            "--listen",
            "/ip4/127.0.0.1/tcp/7",
            "run",
        ])
        .unwrap();
        let Command::Client(client) = cli.command else {
            panic!("client")
        };
        assert_eq!(
            client.node.listen_addresses(ListenSet::serving),
            vec!["/ip4/127.0.0.1/tcp/7".parse::<Multiaddr>().unwrap()],
            "--listen replaces the default listeners"
        );
    }

    #[test]
    fn bad_input_is_refused_at_parse_time() {
        for args in [
            &[
                "native-node",
                "client",
                "--bootstrap",
                "not-a-multiaddr",
                "run",
            ][..],
            &["native-node", "listener", "--namespace", ""],
            &["native-node", "bootstrap", "--report-interval", "soon"],
            &["native-node", "localnet", "--nodes", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
