//! Facts about this host the servers need: its own addresses on the network (the LAN address the
//! kernel would route from; used by the firmware server for its public base and by the site CA
//! for the names its server certificate carries, so that `access` does not depend on
//! `transport`), and the process's open-file limit, raised once for every server that needs many
//! sockets (the embedded broker, the firmware server).

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

/// The open-file limit after [`raise_open_file_limit`].
#[derive(Debug)]
pub struct OpenFiles {
    /// The soft limit in force now; `None` when unlimited (or unknown off Unix).
    pub limit: Option<u64>,
    /// Why raising it as far as wanted was refused, if it was.
    pub refused: Option<std::io::Error>,
}

/// Raises the soft open-file limit (often 1024, i.e. about a thousand sockets) towards `wanted`,
/// never above the hard limit and never lowering it. Servers in one process call it each with
/// what they need; the limit only grows.
#[cfg(unix)]
pub fn raise_open_file_limit(wanted: u64) -> OpenFiles {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited".
    let Some(current) = limit.current else {
        return OpenFiles {
            limit: None,
            refused: None,
        };
    };
    let wanted = limit.maximum.unwrap_or(u64::MAX).min(wanted);
    if wanted <= current {
        return OpenFiles {
            limit: Some(current),
            refused: None,
        };
    }
    let raised = Rlimit {
        current: Some(wanted),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = current, to = wanted, "open-file limit raised");
            OpenFiles {
                limit: Some(wanted),
                refused: None,
            }
        }
        Err(e) => OpenFiles {
            limit: Some(current),
            refused: Some(e.into()),
        },
    }
}

/// No limit to raise off Unix.
#[cfg(not(unix))]
pub fn raise_open_file_limit(_wanted: u64) -> OpenFiles {
    OpenFiles {
        limit: None,
        refused: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_open_file_limit_is_raised_towards_the_hard_limit() {
        use rustix::process::{Resource, getrlimit};
        const WANTED: u64 = 16_384;
        let before = getrlimit(Resource::Nofile);
        let raised = raise_open_file_limit(WANTED);
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.maximum, before.maximum);
        // Never lowered; raised to the hard limit, at most to what was asked for.
        let expected = before
            .current
            .map(|current| current.max(before.maximum.unwrap_or(u64::MAX).min(WANTED)));
        assert_eq!(after.current, expected);
        assert_eq!(raised.limit, after.current);
        assert!(raised.refused.is_none(), "{:?}", raised.refused);
        // Asking for less never lowers it.
        assert_eq!(raise_open_file_limit(8).limit, after.current);
    }
}
