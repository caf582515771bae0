//! The allocator: gives networks their VXLAN network identifiers, services
//! their virtual IPs and tasks their addresses, before anything runs.
//!
//! - every network a VNI, the lowest free from 4096 on, kept for its life;
//! - every service in endpoint mode `vip` (the default) one virtual IP per
//!   network it is on, none in `dnsrr`; when its networks change, so do
//!   its virtual IPs;
//! - every task in `new` an address on each network its spec attaches it to,
//!   in the spec's order, with the spec's aliases (and a stack service's
//!   compose name); then it moves the task to `pending`, where the scheduler
//!   takes it (a standalone container's attachment goes straight to
//!   `running`: nothing more is done for it). A task whose network has no
//!   address left stays in `new` with an error saying so.
//!
//! The routing mesh's part (the ingress network, the nodes' endpoints on it,
//! published ports) is in `ingress.rs`.
//!
//! Addresses are the lowest free ones of the network's range. A task holds
//! them until it stops for good or is deleted, a service until it is removed
//! or leaves the network (`store::addresses` says when, and refuses any
//! write that would hand an address out twice). A pass is a pure function of
//! the store, like every loop's.

pub mod ingress;
mod pool;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use shoal_proto::{
    Endpoint, EndpointMode, EndpointVirtualIp, NetworkAttachment, NetworkAttachmentConfig, Service, StoreAction, Task,
    TaskState, STACK_NAMESPACE_LABEL,
};
use tokio_util::sync::CancellationToken;

use crate::control::propose::update;
use crate::control::Proposer;
use crate::ipam::{cidr, parse_cidr};
use crate::reconcile::run_writer;
use crate::store::{Holder, State, Store, VNI_RANGE};
use pool::Pools;

/// The status message of a task that has its addresses and waits for a node.
pub const ALLOCATED: &str = "pending task scheduling";
/// The status message of a task that waits for an address.
pub const WAITING: &str = "waiting for a network address";
/// The status message of an attached standalone container's task.
pub const ATTACHED: &str = "attached";

/// Runs the allocator until `stop` is cancelled.
pub async fn run(store: Store, proposer: Proposer, stop: CancellationToken) {
    run_writer("allocator", store, proposer, stop, |state, now| (allocate(state, now), None::<Duration>)).await
}

/// One pass: the writes that give out what is missing, in order (VNIs,
/// then virtual IPs, then tasks' addresses).
pub fn allocate(state: &State, now: i64) -> Vec<StoreAction> {
    let mut actions = Vec::new();
    ingress::ingress(state, now, &mut actions);
    vnis(state, &mut actions);
    let mut pools = Pools::new(state);
    let vip_errors = endpoints(state, &mut pools, &mut actions);
    tasks(state, &mut pools, &vip_errors, now, &mut actions);
    actions
}

fn created(meta: &Option<shoal_proto::Meta>) -> i64 {
    meta.as_ref().map_or(0, |m| m.created_at)
}

/// VNIs for the networks without one, oldest network first.
fn vnis(state: &State, actions: &mut Vec<StoreAction>) {
    let used: BTreeSet<u32> = state.networks.values().map(|n| n.vni).filter(|v| *v != 0).collect();
    let mut waiting: Vec<_> = state.networks.values().filter(|n| n.vni == 0).collect();
    waiting.sort_by_key(|n| (created(&n.meta), n.id.as_str()));
    let mut free = VNI_RANGE.filter(|v| !used.contains(v));
    for network in waiting {
        let Some(vni) = free.next() else {
            tracing::warn!(network = network.name(), "no VXLAN network identifier left");
            return;
        };
        let mut n = network.clone();
        n.vni = vni;
        actions.push(update(n));
    }
}

/// The networks a service's tasks attach to, each once, in the spec's order.
fn attached_networks(service: &Service) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    let configs = service.spec.as_ref().and_then(|s| s.task.as_ref()).map(|t| t.networks.as_slice()).unwrap_or(&[]);
    configs.iter().map(|c| c.target.as_str()).filter(|id| seen.insert(*id)).collect()
}

fn vip_mode(service: &Service) -> bool {
    let mode = service.spec.as_ref().and_then(|s| s.endpoint.as_ref()).map(|e| e.mode()).unwrap_or_default();
    mode == EndpointMode::Vip
}

/// Services' endpoints: virtual IPs (each vip-mode service gets one on every
/// network it is on and keeps none elsewhere) and published ports (see
/// `ingress.rs`). Returns, per service, why its endpoint could not be given
/// (its tasks wait for it).
fn endpoints<'a>(state: &'a State, pools: &mut Pools<'a>, actions: &mut Vec<StoreAction>) -> HashMap<&'a str, String> {
    let mut errors = HashMap::new();
    let mut ports_taken = BTreeSet::new();
    for service in state.services.values() {
        let current = service.endpoint.as_ref().map(|e| e.virtual_ips.as_slice()).unwrap_or(&[]);
        let mut wanted = Vec::new();
        if vip_mode(service) {
            for network_id in attached_networks(service) {
                let kept = current.iter().find(|v| {
                    v.network_id == network_id
                        && parse_cidr(&v.addr).is_some_and(|(ip, _)| {
                            state.address_holder(network_id, ip) == Some(&Holder::Service(service.id.clone()))
                        })
                });
                if let Some(v) = kept {
                    wanted.push(v.clone());
                    continue;
                }
                // A network without a pool: its tasks say why.
                if let Ok(pool) = pools.get(network_id) {
                    match pool.take() {
                        Some(ip) => wanted.push(EndpointVirtualIp {
                            network_id: network_id.to_string(),
                            addr: cidr(ip, &pool.subnet()),
                        }),
                        None => {
                            errors.insert(
                                service.id.as_str(),
                                format!("{} (for the virtual IP of service {})", pool.exhausted(), service.name()),
                            );
                        }
                    }
                }
            }
        }
        let current_ports = service.endpoint.as_ref().map(|e| e.ports.as_slice()).unwrap_or(&[]);
        let ports = match ingress::allocated_ports(state, service, &mut ports_taken) {
            Some(ports) => ports,
            None => {
                errors.insert(
                    service.id.as_str(),
                    format!(
                        "no port left in {}-{} to publish service {}'s ports on: publish some on ports of your choice",
                        ingress::DYNAMIC_PORTS.start(),
                        ingress::DYNAMIC_PORTS.end(),
                        service.name()
                    ),
                );
                current_ports.to_vec()
            }
        };
        if wanted.as_slice() != current || ports.as_slice() != current_ports {
            let mut s = service.clone();
            s.endpoint = Some(Endpoint { virtual_ips: wanted, ports });
            actions.push(update(s));
        }
    }
    errors
}

/// The compose file's name of a stack's service: `web` for `app_web` of
/// stack `app`.
pub fn compose_name(service: &Service) -> Option<&str> {
    let stack = service.spec.as_ref()?.annotations.as_ref()?.labels.get(STACK_NAMESPACE_LABEL)?;
    service.name().strip_prefix(stack.as_str())?.strip_prefix('_').filter(|n| !n.is_empty())
}

/// The names a task answers to on one network: the spec's aliases, and a
/// stack service's compose name (`web` for `app_web`), as Docker's stack
/// deploy adds it.
fn aliases(config: &NetworkAttachmentConfig, service: Option<&Service>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in &config.aliases {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    if let Some(short) = service.and_then(compose_name).filter(|s| !out.iter().any(|a| a == s)) {
        out.push(short.to_string());
    }
    out
}

/// Addresses for the tasks in `new`, oldest first.
fn tasks<'a>(
    state: &'a State,
    pools: &mut Pools<'a>,
    vip_errors: &HashMap<&str, String>,
    now: i64,
    actions: &mut Vec<StoreAction>,
) {
    let mut waiting: Vec<&Task> = state
        .tasks
        .values()
        .filter(|t| t.state() == TaskState::New && t.desired_state() <= TaskState::Running)
        .collect();
    waiting.sort_by_key(|t| (created(&t.meta), t.id.as_str()));
    for task in waiting {
        let service = state.services.get(&task.service_id);
        if task.attachment.is_none() && service.is_none() {
            // Its service is gone: the orchestrator retires it.
            continue;
        }
        let outcome = match vip_errors.get(task.service_id.as_str()) {
            Some(err) if task.attachment.is_none() => Err(err.clone()),
            _ => addresses(task, service, pools),
        };
        let mut t = task.clone();
        let status = t.status.get_or_insert_default();
        match outcome {
            Ok(networks) => {
                t.networks = networks;
                let status = t.status.get_or_insert_default();
                if task.attachment.is_some() {
                    status.set_state(TaskState::Running);
                    status.message = ATTACHED.into();
                } else {
                    status.set_state(TaskState::Pending);
                    status.message = ALLOCATED.into();
                }
                status.err.clear();
                status.timestamp = now;
                actions.push(update(t));
            }
            Err(err) if status.err != err => {
                status.message = WAITING.into();
                status.err = err;
                status.timestamp = now;
                actions.push(update(t));
            }
            Err(_) => {}
        }
    }
}

/// An address on each of the task's networks, or (none taken) why not.
fn addresses<'a>(
    task: &Task,
    service: Option<&Service>,
    pools: &mut Pools<'a>,
) -> Result<Vec<NetworkAttachment>, String> {
    let mut configs: Vec<NetworkAttachmentConfig> = task.spec.as_ref().map(|s| s.networks.clone()).unwrap_or_default();
    // A service publishing ports in ingress mode: its tasks are on the ingress network too,
    // after their own (their first network's resolver is the one they ask).
    if service.is_some_and(ingress::publishes) {
        match ingress::ingress_network(pools.state()) {
            Some(n) => configs.push(NetworkAttachmentConfig { target: n.id.clone(), aliases: Vec::new() }),
            None => return Err("waiting for the ingress network, which the routing mesh needs".into()),
        }
    }
    let mut out: Vec<NetworkAttachment> = Vec::with_capacity(configs.len());
    let mut taken: Vec<(String, u32)> = Vec::new();
    let mut failure = None;
    for config in &configs {
        if out.iter().any(|a| a.network_id == config.target) {
            continue;
        }
        let pool = match pools.get(&config.target) {
            Ok(pool) => pool,
            Err(why) => {
                failure = Some(why);
                break;
            }
        };
        let Some(ip) = pool.take() else {
            failure = Some(pool.exhausted());
            break;
        };
        taken.push((config.target.clone(), ip));
        let own = task.spec.as_ref().is_some_and(|s| s.networks.iter().any(|n| n.target == config.target));
        out.push(NetworkAttachment {
            network_id: config.target.clone(),
            addresses: vec![cidr(ip, &pool.subnet())],
            // No names on the ingress network: nothing resolves there.
            aliases: if own { aliases(config, service) } else { Vec::new() },
        });
    }
    match failure {
        None => Ok(out),
        Some(why) => {
            for (network_id, ip) in taken {
                if let Ok(pool) = pools.get(&network_id) {
                    pool.give_back(ip);
                }
            }
            Err(why)
        }
    }
}
