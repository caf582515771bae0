//! The lab's network: a bridge with the gateway address, and per machine a
//! network namespace joined to it by a veth pair. Made with iproute2; the
//! bridge gets its own FORWARD ACCEPT rules, because a Docker installed on
//! the same host sets the FORWARD policy to DROP with bridge netfilter on.

use std::process::Command;

use anyhow::{bail, Context};

use super::{Lab, Machine};

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2 is required)")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn iptables_accept(bridge: &str, add: bool) {
    for dir in ["-i", "-o"] {
        let rule = ["FORWARD", dir, bridge, "-j", "ACCEPT"];
        let present =
            Command::new("iptables").arg("-C").args(rule).output().map(|o| o.status.success()).unwrap_or(false);
        let action = match (add, present) {
            (true, false) => "-I",
            (false, true) => "-D",
            _ => continue,
        };
        if let Err(e) = Command::new("iptables").arg(action).args(rule).output() {
            eprintln!("warning: iptables is not usable ({e}): traffic between machines may be filtered");
        }
    }
}

pub fn ensure_bridge(lab: &Lab) -> anyhow::Result<()> {
    if !link_exists(&lab.bridge) {
        ip(&["link", "add", &lab.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", lab.gateway), "dev", &lab.bridge])?;
        ip(&["link", "set", &lab.bridge, "up"])?;
    }
    iptables_accept(&lab.bridge, true);
    Ok(())
}

pub fn remove_bridge(lab: &Lab) {
    iptables_accept(&lab.bridge, false);
    if link_exists(&lab.bridge) {
        let _ = ip(&["link", "del", &lab.bridge]);
    }
}

fn host_veth(lab: &Lab, m: &Machine) -> String {
    format!("shl{}v{}", lab.tag, m.index)
}

pub fn add_machine(lab: &Lab, m: &Machine) -> anyhow::Result<()> {
    let ns = m.netns.as_str();
    let host = host_veth(lab, m);
    let peer = format!("{host}p");
    ip(&["netns", "add", ns])?;
    ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
    ip(&["link", "set", &peer, "netns", ns])?;
    ip(&["-n", ns, "link", "set", &peer, "name", "eth0"])?;
    ip(&["-n", ns, "addr", "add", &format!("{}/24", m.addr), "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "route", "add", "default", "via", &lab.gateway.to_string()])?;
    ip(&["link", "set", &host, "master", &lab.bridge])?;
    ip(&["link", "set", &host, "up"])?;
    Ok(())
}

pub fn remove_machine(m: &Machine) {
    // Deleting the namespace deletes the veth pair with it.
    let _ = ip(&["netns", "del", &m.netns]);
}
