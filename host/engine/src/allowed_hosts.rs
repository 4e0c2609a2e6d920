//! `allowed_outbound_hosts`: which origins a deployment's guests may send HTTP requests to.
//! Spin's syntax where it fits, so that a Spin manifest's list means the same here:
//!
//! - `scheme://host[:port]`; the scheme is required: `http`, `https` or `*` (either);
//! - host: a name (`api.example.com`), `*.example.com` (its subdomains, not the name itself),
//!   `*` (any), an IPv4 address, a bracketed IPv6 address, or an IPv4 network
//!   (`10.0.0.0/8`);
//! - port: a number, `*` (any), or a range `4000..5000` (the end excluded); absent, the
//!   scheme's default (80 for `http`, 443 for `https`);
//! - `*://*:*` or `insecure:allow-all` allows everything.
//!
//! Anything else is refused with a message naming the entry: port lists, paths, a `*` inside
//! a label, other schemes.

use std::net::{IpAddr, Ipv4Addr};

/// One origin a request goes to: scheme, host (lowercase, an IPv6 address without brackets)
/// and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host as in the URL, lowercase; an IPv6 address without its brackets.
    pub host: String,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.scheme.as_str();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The schemes outbound requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// Its default port.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed `allowed_outbound_hosts` list. Empty (the default) allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `None`: any scheme.
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.suffix`: stored as `.suffix`.
    Subdomains(String),
    Exact(String),
    Network {
        base: Ipv4Addr,
        prefix: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// The scheme's default port (the entry named none).
    Default,
    /// `start..end`, the end excluded (a single port is `p..p+1`).
    Range(u16, u32),
}

/// An entry of `allowed_outbound_hosts` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed_outbound_hosts entry `{entry}`: {reason}")]
pub struct AllowedHostsError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

impl AllowedHosts {
    /// Parse a list; the first entry that cannot be read is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AllowedHostsError> {
        let entries = entries
            .iter()
            .map(|e| parse_entry(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a request to `origin` is allowed.
    pub fn allows(&self, origin: &Origin) -> bool {
        self.entries.iter().any(|e| e.allows(origin))
    }
}

impl Entry {
    fn allows(&self, origin: &Origin) -> bool {
        if self.scheme.is_some_and(|s| s != origin.scheme) {
            return false;
        }
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Default => origin.port == origin.scheme.default_port(),
            PortPattern::Range(start, end) => origin.port >= start && u32::from(origin.port) < end,
        };
        port_ok
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Exact(host) => *host == origin.host,
                HostPattern::Subdomains(suffix) => {
                    origin.host.len() > suffix.len() && origin.host.ends_with(suffix.as_str())
                }
                HostPattern::Network { base, prefix } => match origin.host.parse::<IpAddr>() {
                    Ok(IpAddr::V4(ip)) => {
                        let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                        u32::from(ip) & mask == u32::from(*base) & mask
                    }
                    _ => false,
                },
            }
    }
}

fn parse_entry(text: &str) -> Result<Entry, AllowedHostsError> {
    let fail = |reason: &str| AllowedHostsError {
        entry: text.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed == "insecure:allow-all" {
        return Ok(Entry {
            scheme: None,
            host: HostPattern::Any,
            port: PortPattern::Any,
        });
    }
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| fail("a scheme is required, as in `https://api.example.com`"))?;
    let scheme = match scheme {
        "*" => None,
        "http" => Some(Scheme::Http),
        "https" => Some(Scheme::Https),
        _ => return Err(fail("the scheme must be `http`, `https` or `*`")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    // An IPv6 literal: `[...]` then an optional `:port`.
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (address, after) = inner
            .split_once(']')
            .ok_or_else(|| fail("an IPv6 address needs its closing `]`"))?;
        let address: std::net::Ipv6Addr = address
            .parse()
            .map_err(|_| fail("not an IPv6 address between the brackets"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| fail("only `:port` may follow the address"))?,
            ),
        };
        (HostPattern::Exact(address.to_string()), port)
    } else {
        if rest.contains('/') && !looks_like_network(rest) {
            return Err(fail("paths are not allowed, only `scheme://host[:port]`"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        (parse_host(host).map_err(|r| fail(&r))?, port)
    };
    let port = match port {
        None => PortPattern::Default,
        Some("*") => PortPattern::Any,
        Some(p) if p.contains(',') => return Err(fail("port lists are not supported")),
        Some(p) => match p.split_once("..") {
            Some((start, end)) => {
                let start: u16 = start.parse().map_err(|_| fail("not a port range"))?;
                let end: u32 = end.parse().map_err(|_| fail("not a port range"))?;
                if end <= u32::from(start) || end > 65536 {
                    return Err(fail("a port range must end after it starts (end excluded)"));
                }
                PortPattern::Range(start, end)
            }
            None => {
                let port: u16 = p.parse().map_err(|_| fail("not a port number"))?;
                PortPattern::Range(port, u32::from(port) + 1)
            }
        },
    };
    // `*://host` with no port: the default port of whichever scheme the request uses.
    Ok(Entry { scheme, host, port })
}

fn looks_like_network(rest: &str) -> bool {
    let host = rest.split(':').next().unwrap_or(rest);
    host.split_once('/')
        .is_some_and(|(ip, prefix)| ip.parse::<Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok())
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some((ip, prefix)) = host.split_once('/') {
        let base: Ipv4Addr = ip.parse().map_err(|_| "not an IPv4 network".to_owned())?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| "a network prefix is 0 to 32".to_owned())?;
        return Ok(HostPattern::Network { base, prefix });
    }
    let host = host.to_ascii_lowercase();
    let (pattern, name) = match host.strip_prefix("*.") {
        Some(rest) => (HostPattern::Subdomains(format!(".{rest}")), rest),
        None => (HostPattern::Exact(host.clone()), host.as_str()),
    };
    if name.is_empty()
        || !name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    {
        return Err("a host is a name, `*.name`, `*`, an IP address or an IPv4 network".into());
    }
    Ok(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(scheme: Scheme, host: &str, port: u16) -> Origin {
        Origin {
            scheme,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn entries_allow_what_spin_allows() {
        let allowed = AllowedHosts::parse(&[
            "https://api.example.com",
            "http://*.internal:8080",
            "*://127.0.0.0/24:4000..4100",
            "http://[::1]:*",
        ])
        .unwrap();
        assert!(allowed.allows(&origin(Scheme::Https, "api.example.com", 443)));
        assert!(!allowed.allows(&origin(Scheme::Http, "api.example.com", 80)));
        assert!(!allowed.allows(&origin(Scheme::Https, "api.example.com", 8443)));
        assert!(allowed.allows(&origin(Scheme::Http, "a.b.internal", 8080)));
        assert!(!allowed.allows(&origin(Scheme::Http, "internal", 8080)));
        assert!(allowed.allows(&origin(Scheme::Http, "127.0.0.9", 4099)));
        assert!(!allowed.allows(&origin(Scheme::Http, "127.0.0.9", 4100)));
        assert!(!allowed.allows(&origin(Scheme::Http, "127.0.1.9", 4000)));
        assert!(allowed.allows(&origin(Scheme::Http, "::1", 9)));
        let all = AllowedHosts::parse(&["*://*:*"]).unwrap();
        assert!(all.allows(&origin(Scheme::Https, "anything", 1)));
        assert!(AllowedHosts::default().is_empty());
        assert!(!AllowedHosts::default().allows(&origin(Scheme::Http, "localhost", 80)));
    }

    #[test]
    fn unreadable_entries_are_named() {
        for (entry, reason) in [
            ("example.com", "a scheme is required"),
            ("ftp://example.com", "the scheme must be"),
            ("https://example.com/api", "paths are not allowed"),
            ("https://example.com:80,443", "port lists"),
            ("https://ex*ample.com", "a host is"),
            ("https://example.com:5..5", "must end after it starts"),
            ("https://10.0.0.0/33", "prefix is 0 to 32"),
        ] {
            let err = AllowedHosts::parse(&[entry]).unwrap_err();
            assert!(err.to_string().contains(reason), "{entry}: {err}");
            assert!(err.to_string().contains(entry), "{err}");
        }
    }
}
