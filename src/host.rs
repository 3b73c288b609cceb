//! This host's own addresses on the network: the LAN address the kernel would route from. A leaf
//! module, used by the firmware server (its public base) and the site CA (the names its server
//! certificate carries), so that `access` does not depend on `transport`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The source address the kernel would use towards the internet. `connect` on a UDP socket
/// only selects a route; no packet is sent. Documentation addresses are used as the target.
pub(crate) fn primary_lan_ip(v6: bool) -> Option<IpAddr> {
    let (bind, target): (SocketAddr, SocketAddr) = if v6 {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    } else {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        )
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}
