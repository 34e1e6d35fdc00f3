//! What the binary prints on stdout: text for people, or JSON lines for
//! scripts (`--json`) in the shapes of `dht_core::api`. Logs go to stderr
//! through `tracing`.

use std::io::{IsTerminal, Write};

use dht_core::{
    Event, NetworkReport, PeerAddresses, Reachability, RoleKind,
    api::{Answer, ErrorReport},
    libp2p::{Multiaddr, PeerId},
    record::display_key,
};
use serde::Serialize;

/// How results and events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Text,
    Json,
}

/// The first line of a node that started: who it is and where to reach it.
#[derive(Serialize)]
#[serde(tag = "type", rename = "started", rename_all = "camelCase")]
struct Started {
    role: RoleKind,
    peer_id: String,
    addresses: Vec<String>,
}

/// Where the browser page is served.
#[derive(Serialize)]
#[serde(tag = "type", rename = "http", rename_all = "camelCase")]
struct Page<'a> {
    url: &'a str,
    page_built: bool,
}

/// The monitor's report, printed every report interval.
#[derive(Serialize)]
#[serde(tag = "type", rename = "report")]
struct Report<'a> {
    report: &'a NetworkReport,
}

/// Writes one line to stdout. A closed stdout (say, `| head`) must not bring
/// a running node down, so write errors are ignored.
pub(crate) fn line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

/// Writes raw bytes to stdout, with a newline only for a terminal, so that a
/// script gets the value exactly.
fn raw(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    if stdout.is_terminal() && !bytes.ends_with(b"\n") {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

impl Output {
    /// One JSON line.
    pub(crate) fn json(self, value: &impl Serialize) {
        match serde_json::to_string(value) {
            Ok(text) => line(&text),
            Err(error) => tracing::error!(%error, "cannot serialize output"),
        }
    }

    /// The start-up banner: who this node is and where to reach it.
    pub(crate) fn started(self, role: RoleKind, peer: PeerId, addresses: &[Multiaddr]) {
        match self {
            Output::Json => self.json(&Started {
                role,
                peer_id: peer.to_string(),
                addresses: addresses.iter().map(ToString::to_string).collect(),
            }),
            Output::Text => {
                line(&format!("{role} node {peer}"));
                if addresses.is_empty() {
                    line("listening nowhere: other peers cannot dial this node");
                } else {
                    line("dialable addresses (pass one to --bootstrap):");
                    for address in addresses {
                        line(&format!("  {address}"));
                    }
                }
            }
        }
    }

    /// Where the browser page is served.
    pub(crate) fn page(self, url: &str, built: bool) {
        match self {
            Output::Json => self.json(&Page {
                url,
                page_built: built,
            }),
            Output::Text if built => line(&format!(
                "open {url} in a browser to run a DHT node in the tab"
            )),
            Output::Text => line(&format!(
                "serving {url}, but the wasm package is not built: run scripts/run.sh, which builds it"
            )),
        }
    }

    /// A node event: every one as JSON; for people, the ones that matter to
    /// someone watching a role at work (the rest are in the logs).
    pub(crate) fn event(self, event: &Event) {
        if self == Output::Json {
            return self.json(event);
        }
        match event {
            Event::NamespaceLinked {
                namespace,
                peer,
                role,
                outbound,
            } => line(&format!(
                "linked with {role} {peer} in \"{namespace}\" ({})",
                if *outbound {
                    "we dialed"
                } else {
                    "it dialed us"
                }
            )),
            Event::NamespaceLinkLost {
                namespace,
                peer,
                reason,
            } => line(&format!(
                "link with {peer} in \"{namespace}\" lost: {reason}"
            )),
            Event::NamespacePeerDiscovered {
                namespace, peer, ..
            } => line(&format!("discovered {peer} in \"{namespace}\"")),
            Event::Registered { namespace } => line(&format!("registered in \"{namespace}\"")),
            Event::BootstrapPeerLost { peer, retry_in_ms } => line(&format!(
                "lost bootstrap peer {peer}; reconnecting in {:.1}s",
                *retry_in_ms as f64 / 1000.0
            )),
            Event::BootstrapPeerConnected { peer } => {
                line(&format!("connected to bootstrap peer {peer}"))
            }
            Event::RelayReserved { relay } => line(&format!("serving through relay /p2p/{relay}")),
            Event::RelayReservationLost { relay, reason } => {
                line(&format!("reservation on relay {relay} lost: {reason}"))
            }
            Event::ServingChanged { serving: false } => line(
                "client only: not reachable now (no address a peer dialed back, no relay reservation)",
            ),
            Event::AddressTested {
                address,
                reachable,
                tester,
            } => line(&format!(
                "dial-back test by {tester}: {address} is {}",
                if *reachable {
                    "reachable"
                } else {
                    "not reachable"
                }
            )),
            Event::ReachabilityChanged { reachability } => line(&format!(
                "reachability: {reachability} ({})",
                match reachability {
                    Reachability::Public => "peers dial this node at its own addresses",
                    Reachability::Relayed => "peers reach this node only through a relay",
                    Reachability::Private => "no peer can dial this node now",
                    Reachability::Unknown => "not tested yet",
                }
            )),
            Event::HolePunched { peer } => {
                line(&format!("hole punched: connected directly to {peer}"))
            }
            Event::HolePunchFailed { peer, reason } => line(&format!(
                "hole punch to {peer} failed ({reason}); the connection stays relayed"
            )),
            _ => {}
        }
    }

    /// The monitor's summary, printed every report interval.
    pub(crate) fn report(self, report: &NetworkReport) {
        match self {
            Output::Json => self.json(&Report { report }),
            Output::Text => line(report.to_string().trim_end()),
        }
    }

    /// The result of one request: the [`Answer`] as JSON, or for people the
    /// value itself (a record's bytes exactly as stored).
    pub(crate) fn answer(self, answer: &Answer) {
        if self == Output::Json {
            return self.json(answer);
        }
        match answer {
            Answer::Record(found) => raw(&found.value),
            Answer::Stored(stored) => line(&format!(
                "stored {} at {} peer{} ({}{} requests, {} ms)",
                display_key(&stored.key),
                stored.stored,
                if stored.stored == 1 { "" } else { "s" },
                stored
                    .seq
                    .map_or_else(String::new, |seq| format!("version {seq}, ")),
                stored.stats.requests,
                stored.stats.duration.unwrap_or_default().as_millis()
            )),
            Answer::Peers(peers) | Answer::Members(peers) => print_peers(peers),
            Answer::Registered(namespace) => line(&format!("registered in \"{namespace}\"")),
            Answer::Unregistered(namespace) => line(&format!("left \"{namespace}\"")),
            Answer::Report(report) => line(report.to_string().trim_end()),
            Answer::Error(error) => self.error(error),
            _ => {}
        }
    }

    /// A failure, on stdout for scripts (`--json` only; people read it on
    /// stderr).
    pub(crate) fn error(self, error: &ErrorReport) {
        if self == Output::Json {
            self.json(&Answer::Error(error.clone()));
        }
    }
}

fn print_peers(peers: &[PeerAddresses]) {
    for peer in peers {
        let addresses: Vec<String> = peer.addresses.iter().map(ToString::to_string).collect();
        line(&format!("{} {}", peer.peer_id, addresses.join(" ")));
    }
}
