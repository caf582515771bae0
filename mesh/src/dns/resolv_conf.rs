//! Containers' `/etc/resolv.conf`, Docker's way: on the mesh's networks it names the resolver
//! at the gateway of the container's first network (the container's own `dns:` servers become
//! that resolver's forwarders); on the node-local default bridge it names the node's own
//! resolvers, loopback ones dropped. Search domains and options come from the container's
//! settings (`dns_search`, `dns_opt`, `--dns-search`, `--dns-option`), else from the node's.
//!
//! Every value from a spec is checked before it is written: a line break or a space in one
//! would add lines or options of its own.

use std::{
    io::Read,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
};

use shoal_proto::DnsConfig;

use super::DnsError;

/// The most entries a spec's list may have (glibc reads at most 3 servers and, in older
/// versions, 6 search domains; more is a mistake, not a need).
const MAX_ENTRIES: usize = 32;
/// The longest option (`single-request-reopen` is 21 characters).
const MAX_OPTION: usize = 64;
/// The most of a node's resolv.conf read: it is a handful of lines.
const MAX_HOST_FILE: u64 = 64 * 1024;
/// Docker's servers for a default-bridge container when the node has none it can use.
const FALLBACK: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// The node's own resolver configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl HostResolvConf {
    /// Reads the node's `resolv.conf` (at most 64 KiB).
    pub fn read(path: &Path) -> Result<HostResolvConf, DnsError> {
        let error = |source| DnsError::HostConf { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(error)?;
        let mut text = String::new();
        file.take(MAX_HOST_FILE).read_to_string(&mut text).map_err(error)?;
        Ok(HostResolvConf::parse(&text))
    }

    /// Reads `resolv.conf` text as glibc does: the last `search` line wins, `options` add up,
    /// unknown lines and unreadable addresses are ignored. Values that could not be written
    /// back safely are dropped.
    pub fn parse(text: &str) -> HostResolvConf {
        let mut conf = HostResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A zone index (`fe80::1%eth0`) names a host interface: of no use here.
                    if let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.filter(|w| check_domain(w).is_ok()).map(str::to_owned).collect();
                }
                Some("options") => conf.options.extend(words.filter(|w| check_option(w).is_ok()).map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }
}

/// The `resolv.conf` of a container on the mesh's networks: the resolver at `gateway` (its
/// first network's), the spec's search domains and options or else the node's, and `ndots:0`
/// unless an `ndots` is given (Docker's: the resolver answers single names itself).
pub fn resolv_conf(gateway: Ipv4Addr, dns: &DnsConfig, host: &HostResolvConf) -> Result<String, DnsError> {
    container_forwarders(dns)?;
    let (search, mut options) = search_and_options(dns, host)?;
    if !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    Ok(render(&[IpAddr::V4(gateway)], &search, &options))
}

/// The `resolv.conf` of a container on the node-local default bridge, as Docker writes it: the
/// spec's servers, else the node's without loopback ones (unreachable from the container) and
/// without IPv6 ones (the bridge has no IPv6), else Docker's fallback 8.8.8.8 and 8.8.4.4.
pub fn bridge_resolv_conf(dns: &DnsConfig, host: &HostResolvConf) -> Result<String, DnsError> {
    let mut servers: Vec<IpAddr> = check_servers(&dns.nameservers)?;
    if servers.is_empty() {
        servers = host.nameservers.iter().copied().filter(|ip| ip.is_ipv4() && !ip.is_loopback()).collect();
    }
    if servers.is_empty() {
        servers = FALLBACK.iter().map(|ip| IpAddr::V4(*ip)).collect();
    }
    let (search, options) = search_and_options(dns, host)?;
    Ok(render(&servers, &search, &options))
}

/// The spec's `dns:` servers, as the resolver's forwarders for that container (port 53). A
/// loopback server is refused: the resolver forwards from the node, where loopback is the
/// node's own, not the container's.
pub fn container_forwarders(dns: &DnsConfig) -> Result<Vec<SocketAddr>, DnsError> {
    let servers = check_servers(&dns.nameservers)?;
    if let Some(s) = servers.iter().find(|s| s.is_loopback() || s.is_unspecified() || s.is_multicast()) {
        return Err(DnsError::Setting {
            field: "dns",
            value: s.to_string(),
            why: "a container on the mesh's networks asks its network's resolver, which forwards from the \
                  node: a loopback, unspecified or multicast server cannot be its container's; give a server \
                  it reaches over its networks, or leave \"dns\" unset to use the node's resolvers"
                .into(),
        });
    }
    Ok(servers.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect())
}

fn search_and_options(dns: &DnsConfig, host: &HostResolvConf) -> Result<(Vec<String>, Vec<String>), DnsError> {
    let search = if dns.search.is_empty() { host.search.clone() } else { check_search(&dns.search)? };
    let options = if dns.options.is_empty() { host.options.clone() } else { check_options(&dns.options)? };
    Ok((search, options))
}

fn render(servers: &[IpAddr], search: &[String], options: &[String]) -> String {
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn too_many(field: &'static str, n: usize) -> DnsError {
    DnsError::Setting {
        field,
        value: format!("{n} entries"),
        why: format!("at most {MAX_ENTRIES} are allowed; give fewer"),
    }
}

fn check_servers(servers: &[String]) -> Result<Vec<IpAddr>, DnsError> {
    if servers.len() > MAX_ENTRIES {
        return Err(too_many("dns", servers.len()));
    }
    servers
        .iter()
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| DnsError::Setting {
                field: "dns",
                value: s.clone(),
                why: "not an IP address; give a DNS server's address, such as 10.0.0.2".into(),
            })
        })
        .collect()
}

/// The search domains of a spec, checked; a lone `.` means none (Docker's `--dns-search .`).
pub(crate) fn check_search(domains: &[String]) -> Result<Vec<String>, DnsError> {
    if domains.len() > MAX_ENTRIES {
        return Err(too_many("dns_search", domains.len()));
    }
    if domains.len() == 1 && domains[0] == "." {
        return Ok(Vec::new());
    }
    domains
        .iter()
        .map(|d| {
            check_domain(d).map_err(|why| DnsError::Setting { field: "dns_search", value: d.clone(), why })?;
            Ok(d.strip_suffix('.').unwrap_or(d).to_owned())
        })
        .collect()
}

fn check_options(options: &[String]) -> Result<Vec<String>, DnsError> {
    if options.len() > MAX_ENTRIES {
        return Err(too_many("dns_opt", options.len()));
    }
    options
        .iter()
        .map(|o| {
            check_option(o).map_err(|why| DnsError::Setting { field: "dns_opt", value: o.clone(), why })?;
            Ok(o.clone())
        })
        .collect()
}

fn check_domain(d: &str) -> Result<(), String> {
    if super::index::normalize(d).is_none() {
        return Err("not a domain name: labels of letters, digits, '-' and '_' separated by dots, \
                    at most 63 characters each and 253 in all"
            .into());
    }
    Ok(())
}

fn check_option(o: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.');
    if o.is_empty() || o.len() > MAX_OPTION || !o.bytes().all(allowed) {
        return Err(format!(
            "not a resolver option: a word such as ndots:2 or edns0, of letters, digits, ':', '-', '_' \
             and '.', at most {MAX_OPTION} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(servers: &[&str], search: &[&str], options: &[&str]) -> DnsConfig {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        DnsConfig { nameservers: own(servers), search: own(search), options: own(options) }
    }

    #[test]
    fn the_host_file_is_read_as_glibc_reads_it() {
        let host = HostResolvConf::parse(
            "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # office\nnameserver nonsense\n\
             nameserver fe80::1%eth0\nsearch a.example b.example\nsearch corp.example\noptions edns0\n\
             options trust-ad ndots:2\nsortlist 1.2.3.4\n",
        );
        assert_eq!(host.nameservers, ["127.0.0.53".parse::<IpAddr>().unwrap(), "10.0.0.2".parse().unwrap()]);
        assert_eq!(host.search, ["corp.example"]);
        assert_eq!(host.options, ["edns0", "trust-ad", "ndots:2"]);
    }

    #[test]
    fn a_mesh_container_asks_its_first_networks_gateway() {
        let host = HostResolvConf::parse("nameserver 127.0.0.53\nsearch corp.example\noptions edns0\n");
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        assert_eq!(
            resolv_conf(gw, &DnsConfig::default(), &host).unwrap(),
            "nameserver 10.0.1.1\nsearch corp.example\noptions edns0 ndots:0\n"
        );
        assert_eq!(
            resolv_conf(gw, &dns(&["9.9.9.9"], &["x.example"], &["ndots:3", "rotate"]), &host).unwrap(),
            "nameserver 10.0.1.1\nsearch x.example\noptions ndots:3 rotate\n"
        );
        assert_eq!(
            resolv_conf(gw, &dns(&[], &["."], &[]), &host).unwrap(),
            "nameserver 10.0.1.1\noptions edns0 ndots:0\n"
        );
    }

    #[test]
    fn a_bridge_container_gets_the_nodes_reachable_resolvers() {
        let host = HostResolvConf::parse(
            "nameserver 127.0.0.53\nnameserver ::1\nnameserver 2001:db8::1\nnameserver 10.0.0.2\n",
        );
        assert_eq!(bridge_resolv_conf(&DnsConfig::default(), &host).unwrap(), "nameserver 10.0.0.2\n");
        let local_only = HostResolvConf::parse("nameserver 127.0.0.53\n");
        assert_eq!(
            bridge_resolv_conf(&DnsConfig::default(), &local_only).unwrap(),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            bridge_resolv_conf(&dns(&["1.1.1.1"], &["s.example"], &["ndots:1"]), &local_only).unwrap(),
            "nameserver 1.1.1.1\nsearch s.example\noptions ndots:1\n"
        );
    }

    #[test]
    fn values_that_would_write_lines_of_their_own_are_refused() {
        let host = HostResolvConf::default();
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        for bad in [
            dns(&["10.0.0.2\nnameserver 6.6.6.6"], &[], &[]),
            dns(&["resolver.example"], &[], &[]),
            dns(&["127.0.0.1"], &[], &[]),
            dns(&["::1"], &[], &[]),
            dns(&["0.0.0.0"], &[], &[]),
            dns(&[], &["ok.example", "evil\nnameserver 6.6.6.6"], &[]),
            dns(&[], &["a b"], &[]),
            dns(&[], &[&"x".repeat(64)], &[]),
            dns(&[], &[], &["ndots:1\nnameserver 6.6.6.6"]),
            dns(&[], &[], &["rotate edns0"]),
            dns(&[], &[], &[""]),
        ] {
            let err = resolv_conf(gw, &bad, &host).expect_err("refused").to_string();
            assert!(err.starts_with("DNS setting dns"), "{err}");
            let an_address = bad.nameservers.first().and_then(|s| s.parse::<IpAddr>().ok());
            // The default bridge writes the servers as given (Docker's): loopback is the
            // container's own there.
            if an_address.is_none() {
                assert!(bridge_resolv_conf(&bad, &host).is_err());
            }
        }
        let many: Vec<String> = (0..33).map(|i| format!("d{i}.example")).collect();
        let err = resolv_conf(gw, &DnsConfig { search: many, ..Default::default() }, &host).unwrap_err();
        assert!(err.to_string().contains("at most 32"), "{err}");
        // The node's own file is read, not refused: what cannot be written back is dropped.
        let host = HostResolvConf::parse("search ok.example bad\u{7f}name\noptions edns0 x\u{1}y\n");
        assert_eq!(host.search, ["ok.example"]);
        assert_eq!(host.options, ["edns0"]);
    }
}
