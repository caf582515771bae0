//! nftables, through `nft -f -`: every change is one batch, which the kernel applies whole or
//! not at all. A table is replaced by `add table; delete table; table { … }` in one batch, so
//! no packet ever sees it half-built (connections tracked before keep their NAT).
//!
//! What the mesh writes:
//! - `inet shoal` in the node's namespace (see [`node_table`]): isolation between networks and
//!   masquerading for the local bridges.
//! - `ip shoal-lb` in every sandbox (see [`lb_table`]): the virtual IPs of the services on
//!   the sandbox's networks, each DNATed to a random ready backend, or refused when none is
//!   ready, in the sandbox's own namespace, as Docker does with IPVS, so the client's address
//!   is kept and replies need no SNAT.
//! - a chain `SHOAL-FORWARD` in iptables' `ip filter` table with a jump to it from `FORWARD`,
//!   only where that chain exists: Docker sets `FORWARD`'s policy to DROP, and an accept in
//!   another table does not outvote a drop here, so the mesh's own traffic is accepted there
//!   too (see [`forward_batch`]), in rules iptables can read back.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::Ipv4Addr,
    os::fd::{AsRawFd, BorrowedFd},
    process::Stdio,
    time::Duration,
};

use tokio::io::AsyncWriteExt;

use crate::{
    error::MeshError,
    gateway::{LocalBridge, LocalSubnets},
    map::NetworkMap,
    names,
};

/// The node's isolation and NAT table.
pub const NODE_TABLE: &str = "shoal";
/// A sandbox's virtual IP table.
pub const LB_TABLE: &str = "shoal-lb";
/// The mesh's chain in iptables' `ip filter` table.
pub const FORWARD_CHAIN: &str = "SHOAL-FORWARD";
/// The comment on the jump from `FORWARD`, by which the mesh finds it again.
const FORWARD_JUMP_COMMENT: &str = "shoal";

/// How long one `nft` may take: it is local work, so this only bounds a wedged one.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `nft` with `args` in the network namespace `ns`, the batch `script` on its stdin;
/// returns its stdout.
pub(crate) async fn run(ns: BorrowedFd<'_>, args: &[&str], script: &str, what: &str) -> Result<String, MeshError> {
    let nft_error = |message: String| MeshError::Nft { what: what.to_string(), message };
    let ns = ns.try_clone_to_owned().map_err(|e| nft_error(format!("duplicating the namespace's descriptor: {e}")))?;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // Spawning returns once the child has exec'd, and its setns(2) can wait on the kernel
    // for as long as namespaces are being torn down: on the blocking pool, so that the
    // runtime's workers (the resolver, the heartbeats) never wait with it.
    let spawned = tokio::task::spawn_blocking(move || {
        let fd = ns.as_raw_fd();
        let mut command = tokio::process::Command::new("nft");
        command.args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // SAFETY: only setns(2), a system call safe between fork and exec; `ns` stays open
        // until the child has exec'd (spawn returns after the exec).
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn();
        drop(ns);
        child
    })
    .await
    .map_err(|e| nft_error(format!("starting nft: {e}")))?;
    let mut child = spawned
        .map_err(|e| nft_error(format!("cannot run nft ({e}): install nftables (the nft command) on this node")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| nft_error("no stdin".into()))?;
    let script = script.to_string();
    let feed = async move {
        let result = stdin.write_all(script.as_bytes()).await;
        drop(stdin);
        result
    };
    let (fed, output) = tokio::time::timeout(NFT_TIMEOUT, async { tokio::join!(feed, child.wait_with_output()) })
        .await
        .map_err(|_| nft_error(format!("no answer within {}s", NFT_TIMEOUT.as_secs())))?;
    let output = output.map_err(|e| nft_error(format!("waiting for nft: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(nft_error(stderr.trim().to_string()));
    }
    fed.map_err(|e| nft_error(format!("writing the batch: {e}")))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Applies `script` (a batch) in `ns`.
pub(crate) async fn apply(ns: BorrowedFd<'_>, script: &str, what: &str) -> Result<(), MeshError> {
    run(ns, &["-f", "-"], script, what).await.map(drop)
}

/// A batch that replaces table `family name` with `body` (a table's contents).
fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!("add table {family} {name}\ndelete table {family} {name}\ntable {family} {name} {{\n{body}}}\n")
}

/// A batch that removes table `family name` if it exists.
pub(crate) fn remove_table(family: &str, name: &str) -> String {
    format!("add table {family} {name}\ndelete table {family} {name}\n")
}

/// What the node's table is made from.
pub(crate) struct NodeRules<'a> {
    pub map: &'a NetworkMap,
    pub local: LocalSubnets,
}

/// The node's `inet shoal` table as a replacing batch:
/// - traffic never crosses from one network's bridge to anything else, nor into it from
///   anything else (containers leave through the gateway bridge, never through an overlay),
///   so networks are isolated from each other and internal networks have no way out (the
///   mesh owns the `sb-` names, so a network's bridge that is not in the map yet or any
///   more is isolated as well);
/// - a network's gateway address (where the DNS answers) is reachable only from that network;
/// - containers on the gateway bridge do not reach each other through it, and nothing
///   reaches the local bridges from outside but replies;
/// - the local bridges' subnets are masqueraded on their way out.
pub(crate) fn node_table(rules: &NodeRules) -> String {
    let gw = LocalBridge::Gateway.name();
    let default = LocalBridge::Default.name();
    let mut forward = String::new();
    let mut input = String::new();
    // One lookup per packet whatever the number of networks: the pairs (bridge, itself) and
    // (gateway, its bridge) are sets.
    let bridges: Vec<String> = rules.map.networks.values().map(|n| format!("\"{}\"", names::bridge(n.vni))).collect();
    if !bridges.is_empty() {
        let own: Vec<String> = bridges.iter().map(|b| format!("{b} . {b}")).collect();
        let own = own.join(", ");
        let any = format!("\"{}*\"", names::BRIDGE_PREFIX);
        let _ = writeln!(forward, "\t\tiifname {any} iifname . oifname != {{ {own} }} drop");
        let _ = writeln!(forward, "\t\toifname {any} iifname . oifname != {{ {own} }} drop");
        let gateways: Vec<String> = rules.map.networks.values().map(|n| n.gateway.to_string()).collect();
        let gateway_of: Vec<String> =
            rules.map.networks.values().map(|n| format!("{} . \"{}\"", n.gateway, names::bridge(n.vni))).collect();
        let _ = writeln!(
            input,
            "\t\tip daddr {{ {} }} iifname != \"lo\" ip daddr . iifname != {{ {} }} drop",
            gateways.join(", "),
            gateway_of.join(", ")
        );
    }
    let _ = writeln!(forward, "\t\tiifname \"{gw}\" oifname \"{gw}\" drop");
    let _ = writeln!(forward, "\t\toifname \"{gw}\" ct state != {{ established, related }} drop");
    let _ = writeln!(
        forward,
        "\t\toifname \"{default}\" iifname != \"{default}\" ct state != {{ established, related }} drop"
    );
    let mut body = String::new();
    let _ = write!(
        body,
        "\tchain forward {{\n\t\ttype filter hook forward priority filter - 1; policy accept;\n{forward}\t}}\n"
    );
    let _ =
        write!(body, "\tchain input {{\n\t\ttype filter hook input priority filter - 1; policy accept;\n{input}\t}}\n");
    let _ = write!(
        body,
        "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr {} oifname != \"{gw}\" masquerade\n\t\tip saddr {} oifname != \"{default}\" masquerade\n\t}}\n",
        rules.local.gateway, rules.local.default
    );
    replace_table("inet", NODE_TABLE, &body)
}

/// One virtual IP in a sandbox and the addresses of its ready backends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct VirtualIp {
    pub vip: Ipv4Addr,
    pub backends: BTreeSet<Ipv4Addr>,
}

/// The virtual IPs a sandbox on `networks` sees: every service with a VIP on them, with
/// its ready endpoints on the same network.
pub(crate) fn virtual_ips<'a>(map: &NetworkMap, networks: impl Iterator<Item = &'a str>) -> Vec<VirtualIp> {
    let mut vips = Vec::new();
    for network in networks {
        for service in map.services_on(network) {
            let Some(vip) = service.vip else { continue };
            let backends = map.backends(network, &service.service_id).map(|e| e.addr.addr).collect();
            vips.push(VirtualIp { vip: vip.addr, backends });
        }
    }
    vips.sort();
    vips.dedup_by(|a, b| a.vip == b.vip);
    vips
}

/// A sandbox's `ip shoal-lb` table as a replacing batch: a connection (TCP, UDP, any port) to
/// a virtual IP is DNATed in the output hook to one of the service's ready backends, chosen
/// at random per connection; a virtual IP without a ready backend is refused at once (a TCP
/// reset, an ICMP port unreachable) rather than left to time out.
pub(crate) fn lb_table(vips: &[VirtualIp]) -> String {
    let mut nat = String::new();
    let mut refused = Vec::new();
    for VirtualIp { vip, backends } in vips {
        match backends.len() {
            0 => refused.push(vip.to_string()),
            1 => {
                let only = backends.iter().next().expect("one backend");
                let _ = writeln!(nat, "\t\tip daddr {vip} dnat to {only}");
            }
            n => {
                let map: Vec<String> = backends.iter().enumerate().map(|(i, b)| format!("{i} : {b}")).collect();
                let _ = writeln!(nat, "\t\tip daddr {vip} dnat to numgen random mod {n} map {{ {} }}", map.join(", "));
            }
        }
    }
    let mut reject = String::new();
    if !refused.is_empty() {
        let set = refused.join(", ");
        let _ = writeln!(reject, "\t\tip daddr {{ {set} }} meta l4proto tcp reject with tcp reset");
        let _ = writeln!(reject, "\t\tip daddr {{ {set} }} reject with icmp type port-unreachable");
    }
    let body = format!(
        "\tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{nat}\t}}\n\tchain refuse {{\n\t\ttype filter hook output priority -300; policy accept;\n{reject}\t}}\n"
    );
    replace_table("ip", LB_TABLE, &body)
}

/// What the mesh found of iptables' `ip filter` table.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FilterTable {
    /// `FORWARD` exists (iptables or Docker made it).
    pub forward: bool,
    /// The mesh's chain exists.
    pub chain: bool,
    /// Handles of the mesh's jumps in `FORWARD`.
    pub jumps: Vec<u64>,
}

/// Reads the `ip filter` table of `ns` (none: all false).
pub(crate) async fn filter_table(ns: BorrowedFd<'_>) -> Result<FilterTable, MeshError> {
    let listing = match run(ns, &["-j", "list", "table", "ip", "filter"], "", "listing table ip filter").await {
        Ok(listing) => listing,
        Err(MeshError::Nft { message, .. }) if message.contains("No such file or directory") => {
            return Ok(FilterTable::default())
        }
        Err(e) => return Err(e),
    };
    let json: serde_json::Value = serde_json::from_str(&listing)
        .map_err(|e| MeshError::Nft { what: "reading table ip filter".into(), message: e.to_string() })?;
    let mut table = FilterTable::default();
    for item in json.get("nftables").and_then(|v| v.as_array()).into_iter().flatten() {
        if let Some(chain) = item.get("chain") {
            match chain.get("name").and_then(|n| n.as_str()) {
                Some("FORWARD") => table.forward = true,
                Some(FORWARD_CHAIN) => table.chain = true,
                _ => {}
            }
        }
        if let Some(rule) = item.get("rule") {
            let ours = rule.get("chain").and_then(|c| c.as_str()) == Some("FORWARD")
                && rule.get("comment").and_then(|c| c.as_str()) == Some(FORWARD_JUMP_COMMENT);
            if let (true, Some(handle)) = (ours, rule.get("handle").and_then(|h| h.as_u64())) {
                table.jumps.push(handle);
            }
        }
    }
    Ok(table)
}

/// The batch that makes the mesh's accepts in `ip filter` what `bridges` need (the overlay
/// bridges, then the local ones), with exactly one jump from `FORWARD`; with `bridges`
/// `None`, the batch that removes them. Empty when there is nothing to do.
pub(crate) fn forward_batch(found: &FilterTable, bridges: Option<&[String]>) -> String {
    let mut batch = String::new();
    match bridges {
        Some(overlays) if found.forward => {
            let _ = writeln!(batch, "add chain ip filter {FORWARD_CHAIN}");
            let _ = writeln!(batch, "flush chain ip filter {FORWARD_CHAIN}");
            for bridge in overlays {
                let _ = writeln!(
                    batch,
                    "add rule ip filter {FORWARD_CHAIN} iifname \"{bridge}\" oifname \"{bridge}\" counter accept"
                );
            }
            // Into the local bridges all is accepted here: `inet shoal` drops what is not a
            // reply, and a drop there wins. A `ct state` match written by nft would make the
            // table unreadable to iptables, Docker's tool, so this chain holds only what
            // iptables itself writes.
            for local in [LocalBridge::Gateway, LocalBridge::Default] {
                let name = local.name();
                let _ = writeln!(batch, "add rule ip filter {FORWARD_CHAIN} iifname \"{name}\" counter accept");
                let _ = writeln!(batch, "add rule ip filter {FORWARD_CHAIN} oifname \"{name}\" counter accept");
            }
            match found.jumps.split_first() {
                None => {
                    let _ = writeln!(
                        batch,
                        "insert rule ip filter FORWARD counter jump {FORWARD_CHAIN} comment \"{FORWARD_JUMP_COMMENT}\""
                    );
                }
                Some((_, extra)) => {
                    for handle in extra {
                        let _ = writeln!(batch, "delete rule ip filter FORWARD handle {handle}");
                    }
                }
            }
        }
        _ => {
            for handle in &found.jumps {
                let _ = writeln!(batch, "delete rule ip filter FORWARD handle {handle}");
            }
            if found.chain {
                let _ = writeln!(batch, "flush chain ip filter {FORWARD_CHAIN}");
                let _ = writeln!(batch, "delete chain ip filter {FORWARD_CHAIN}");
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn lb_tables_spread_over_ready_backends_and_refuse_without() {
        let vips = [
            VirtualIp { vip: ip("10.0.1.2"), backends: [ip("10.0.1.5"), ip("10.0.1.6")].into() },
            VirtualIp { vip: ip("10.0.1.3"), backends: [ip("10.0.1.7")].into() },
            VirtualIp { vip: ip("10.0.1.4"), backends: BTreeSet::new() },
        ];
        let table = lb_table(&vips);
        assert!(table.starts_with("add table ip shoal-lb\ndelete table ip shoal-lb\n"), "{table}");
        assert!(table.contains("ip daddr 10.0.1.2 dnat to numgen random mod 2 map { 0 : 10.0.1.5, 1 : 10.0.1.6 }"));
        assert!(table.contains("ip daddr 10.0.1.3 dnat to 10.0.1.7\n"));
        assert!(table.contains("ip daddr { 10.0.1.4 } meta l4proto tcp reject with tcp reset"));
        assert!(!table.contains("10.0.1.4 dnat"));
    }

    #[test]
    fn the_forward_jump_is_kept_single() {
        let bridges = vec!["sb-4096".to_string()];
        let none = FilterTable::default();
        assert_eq!(forward_batch(&none, Some(&bridges)), "", "no FORWARD chain: nothing to accept against");
        let fresh = FilterTable { forward: true, chain: false, jumps: vec![] };
        let batch = forward_batch(&fresh, Some(&bridges));
        assert!(batch.contains("insert rule ip filter FORWARD counter jump SHOAL-FORWARD comment \"shoal\""));
        assert!(batch.contains("iifname \"sb-4096\" oifname \"sb-4096\" counter accept"));
        let doubled = FilterTable { forward: true, chain: true, jumps: vec![7, 9] };
        let batch = forward_batch(&doubled, Some(&bridges));
        assert!(!batch.contains("insert rule") && batch.contains("delete rule ip filter FORWARD handle 9"));
        assert!(!batch.contains("handle 7"));
        let batch = forward_batch(&doubled, None);
        assert!(batch.contains("handle 7") && batch.contains("handle 9") && batch.contains("delete chain"));
    }
}
