//! Where a native node listens: a typed set of transports and ports on one
//! IP, instead of hand-written multiaddrs.

use std::net::IpAddr;

use dht_core::libp2p::{Multiaddr, multiaddr::Protocol};

/// The transports a node listens on, each on a port of one IP (0: any free
/// port); `None` leaves a transport out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSet {
    /// The IP every listener binds to.
    pub ip: IpAddr,
    /// TCP (noise + yamux).
    pub tcp: Option<u16>,
    /// QUIC v1 (UDP).
    pub quic: Option<u16>,
    /// WebSocket over TCP, which browsers can dial.
    pub websocket: Option<u16>,
    /// WebRTC-direct (UDP), which browsers can dial.
    pub webrtc_direct: Option<u16>,
}

impl ListenSet {
    /// A bootstrap node's: TCP and QUIC on `port`, and for browsers
    /// WebSocket (TCP) and WebRTC-direct (UDP) on the next port; all on free
    /// ports when `port` is 0. Port 65535 has no next port: the browser
    /// transports are left out.
    pub fn bootstrap(ip: IpAddr, port: u16) -> Self {
        let browser = if port == 0 {
            Some(0)
        } else {
            port.checked_add(1)
        };
        Self {
            ip,
            tcp: Some(port),
            quic: Some(port),
            websocket: browser,
            webrtc_direct: browser,
        }
    }

    /// A node that serves the DHT: TCP, QUIC and WebSocket on free ports
    /// (WebSocket so that browser tabs can reach it during lookups).
    pub fn serving(ip: IpAddr) -> Self {
        Self {
            ip,
            tcp: Some(0),
            quic: Some(0),
            websocket: Some(0),
            webrtc_direct: None,
        }
    }

    /// A node that only queries, such as a one-shot client: TCP and QUIC on
    /// free ports.
    pub fn querying(ip: IpAddr) -> Self {
        Self {
            websocket: None,
            ..Self::serving(ip)
        }
    }

    /// The multiaddrs to listen on, in the order TCP, QUIC, WebSocket,
    /// WebRTC-direct.
    pub fn addresses(&self) -> Vec<Multiaddr> {
        let ip = Multiaddr::empty().with(match self.ip {
            IpAddr::V4(ip) => Protocol::Ip4(ip),
            IpAddr::V6(ip) => Protocol::Ip6(ip),
        });
        let mut addresses = Vec::new();
        if let Some(port) = self.tcp {
            addresses.push(ip.clone().with(Protocol::Tcp(port)));
        }
        if let Some(port) = self.quic {
            addresses.push(ip.clone().with(Protocol::Udp(port)).with(Protocol::QuicV1));
        }
        if let Some(port) = self.websocket {
            addresses.push(
                ip.clone()
                    .with(Protocol::Tcp(port))
                    .with(Protocol::Ws("/".into())),
            );
        }
        if let Some(port) = self.webrtc_direct {
            addresses.push(ip.with(Protocol::Udp(port)).with(Protocol::WebRTCDirect));
        }
        addresses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(set: ListenSet) -> Vec<String> {
        set.addresses().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_kind_of_node_listens_where_it_should() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            strings(ListenSet::bootstrap(loopback, 4001)),
            [
                "/ip4/127.0.0.1/tcp/4001",
                "/ip4/127.0.0.1/udp/4001/quic-v1",
                "/ip4/127.0.0.1/tcp/4002/ws",
                "/ip4/127.0.0.1/udp/4002/webrtc-direct",
            ]
        );
        assert_eq!(
            strings(ListenSet::serving("::1".parse().unwrap())),
            [
                "/ip6/::1/tcp/0",
                "/ip6/::1/udp/0/quic-v1",
                "/ip6/::1/tcp/0/ws"
            ]
        );
        assert_eq!(
            strings(ListenSet::querying(loopback)),
            ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
        );
        assert_eq!(ListenSet::bootstrap(loopback, 0).websocket, Some(0));
        assert_eq!(ListenSet::bootstrap(loopback, 65535).websocket, None);
    }
}
