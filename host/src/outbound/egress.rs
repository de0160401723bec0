//! Where outgoing requests may go: the guard against server-side request
//! forgery. Callback URLs are tenant input, so unless the operator allows
//! private targets, Hookgate refuses any address that is not public:
//! loopback, private, link-local, unique-local, multicast, unspecified and
//! reserved ranges, for IPv4 and IPv6, including IPv4-mapped forms.
//!
//! Names are resolved first and only the addresses that pass are handed to
//! the HTTP client, so the connection goes to an address that was checked;
//! a name that later resolves elsewhere cannot slip past.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A target the guard refused, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused to send to {host} ({addrs}): it is not a public address. Hookgate blocks \
     loopback, private, link-local and reserved targets to prevent request forgery; \
     set allow_private_targets = true (or serve --allow-private-targets) to allow them"
)]
pub struct Blocked {
    /// The host as written in the URL.
    pub host: String,
    /// The addresses it resolved to, comma separated.
    pub addrs: String,
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || a >= 240 // reserved for future use
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b))) // benchmarking
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link local
        || (segments[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x0064 && segments[1] == 0xff9b) // NAT64: an IPv4 address in disguise
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0]) // discard only
        || ip.to_ipv4().is_some()) // IPv4-compatible (deprecated)
}

/// The DNS resolver of the outgoing HTTP client: resolves, then keeps only
/// the addresses the guard allows.
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    /// A resolver that allows private targets only if told to.
    pub fn new(allow_private: bool) -> Self {
        GuardedResolver { allow_private }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| allow_private || is_public(addr.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(Box::new(blocked(&host, found.iter().map(SocketAddr::ip))) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Checks a URL whose host is an IP literal, which the client connects to
/// without asking the resolver.
pub fn check_literal(url: &url::Url, allow_private: bool) -> Result<(), Blocked> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(blocked(&ip.to_string(), [ip]))
    }
}

fn blocked(host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Blocked {
    Blocked {
        host: host.to_string(),
        addrs: addrs
            .into_iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Finds a [`Blocked`] anywhere in an error's cause chain.
pub fn find_blocked<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return Some(blocked);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn refuses_every_non_public_range() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ];
        for addr in refused {
            assert!(!public(addr), "{addr} must be refused");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(addr), "{addr} is public");
        }
    }

    #[test]
    fn ip_literal_urls_are_checked_and_the_message_says_how_to_allow() {
        let url = url::Url::parse("http://127.0.0.1:9/x").unwrap();
        let err = check_literal(&url, false).unwrap_err();
        assert!(err.to_string().contains("allow_private_targets"), "{err}");
        assert!(check_literal(&url, true).is_ok());
        let named = url::Url::parse("http://example.com/x").unwrap();
        assert!(
            check_literal(&named, false).is_ok(),
            "names are checked by the resolver"
        );
    }
}
