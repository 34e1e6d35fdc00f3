//! What the binary prints on stdout: text for people or JSON lines for
//! scripts (`--json`). Logs go to stderr through `tracing`.

use std::io::{IsTerminal, Write};

use dht_core::{
    Event, NetworkReport, RoleKind,
    libp2p::{Multiaddr, PeerId},
};
use serde::Serialize;
use serde_json::json;

/// How results and events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Text,
    Json,
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
pub(crate) fn raw(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    if stdout.is_terminal() && !bytes.ends_with(b"\n") {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

impl Output {
    pub(crate) fn json(self, value: &impl Serialize) {
        match serde_json::to_string(value) {
            Ok(text) => line(&text),
            Err(error) => tracing::error!(%error, "cannot serialize output"),
        }
    }

    /// The start-up banner: who this node is and where to reach it.
    pub(crate) fn started(self, role: RoleKind, peer: PeerId, addresses: &[Multiaddr]) {
        match self {
            Output::Json => self.json(&json!({
                "type": "started",
                "role": role,
                "peerId": peer.to_string(),
                "addresses": addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
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
            Output::Json => self.json(&json!({ "type": "http", "url": url, "pageBuilt": built })),
            Output::Text => {
                if built {
                    line(&format!(
                        "open {url} in a browser to run a DHT node in the tab"
                    ));
                } else {
                    line(&format!(
                        "serving {url}, but the wasm package is not built: run scripts/run.sh, which builds it"
                    ));
                }
            }
        }
    }

    /// A node event: every one as JSON; for people, the ones that matter to
    /// someone watching a role at work (the rest are in the logs).
    pub(crate) fn event(self, event: &Event) {
        match self {
            Output::Json => self.json(event),
            Output::Text => match event {
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
                _ => {}
            },
        }
    }

    /// The monitor's summary.
    pub(crate) fn report(self, report: &NetworkReport) {
        match self {
            Output::Json => self.json(&json!({ "type": "report", "report": report })),
            Output::Text => line(report.to_string().trim_end()),
        }
    }
}
