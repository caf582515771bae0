//! The DNS view of a network map, built once per map so that a query costs a hash look-up or
//! two: who may ask on each network (and which networks' names they see), and per network the
//! names it answers and the addresses it can name back.
//!
//! Pure data, no I/O: the resolver swaps in a new index whenever the map changes.

use std::{
    collections::{BTreeSet, HashMap},
    net::Ipv4Addr,
};

use crate::map::{Cidr, MapEndpoint, NetworkMap};

/// The longest name DNS can carry, in presentation form without the trailing dot.
const MAX_NAME: usize = 253;
/// The longest label.
const MAX_LABEL: usize = 63;

/// Who a query's source address is: an endpoint of the network whose gateway was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asker {
    /// The networks whose names it sees (its task's), the asked one first, then by id.
    pub networks: Vec<usize>,
    /// Whether names we do not know may be forwarded for it: only when its task is on at least
    /// one network with a way out, as Docker does, so that an `internal` network cannot leak
    /// through the resolver what it cannot send itself.
    pub forward: bool,
}

/// What a name is on the networks an asker sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found<'a> {
    /// The name is ours, with these addresses (possibly none: a dnsrr service without a ready
    /// task, whose name still exists).
    Addrs(&'a [Ipv4Addr]),
    /// Not a name of these networks.
    Unknown,
}

#[derive(Debug, Default)]
struct NetIndex {
    /// The network's name, lower case (a query may qualify a name with it: `web.front`).
    name: String,
    subnet: Option<Cidr>,
    /// No way out (`internal: true`).
    internal: bool,
    /// Lower-case names without the trailing dot → their addresses, each list sorted and
    /// without duplicates.
    names: HashMap<Box<str>, Vec<Ipv4Addr>>,
    /// Ready endpoint addresses → the name a PTR query gets.
    ptr: HashMap<Ipv4Addr, Box<str>>,
}

/// Who an endpoint belongs to: its task, or for a standalone container, which has an
/// attachment per network (each its own task), its name on its node.
fn holder(e: &MapEndpoint) -> String {
    if e.service_id.is_empty() {
        format!("{}\0{}", e.node_id, e.name)
    } else {
        e.task_id.clone()
    }
}

/// The resolver's index of one network map.
#[derive(Debug, Default)]
pub(crate) struct Index {
    networks: Vec<NetIndex>,
    by_id: HashMap<String, usize>,
    askers: HashMap<(usize, Ipv4Addr), Asker>,
}

/// `name` in the form the index keeps: lower case, no trailing dot; `None` when it is not a
/// name DNS can carry (empty or long labels, characters other than letters, digits, `-` and
/// `_`), which no query can then ask.
pub(crate) fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > MAX_LABEL
            || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
    }
    Some(name.to_ascii_lowercase())
}

impl Index {
    /// Indexes `map`. Names that DNS cannot carry are left out (no query could ask for them);
    /// the map itself was checked when it was applied.
    pub fn build(map: &NetworkMap) -> Index {
        let mut index = Index::default();
        // Nothing resolves on the ingress network: only the routing mesh uses it.
        for (id, n) in map.networks.iter().filter(|(_, n)| !n.ingress) {
            index.by_id.insert(id.clone(), index.networks.len());
            index.networks.push(NetIndex {
                name: n.name.to_ascii_lowercase(),
                subnet: Some(n.subnet),
                internal: n.internal,
                ..NetIndex::default()
            });
        }

        // The networks of each task (or standalone container), for the askers' views.
        let mut task_networks: HashMap<String, BTreeSet<usize>> = HashMap::new();
        for e in map.endpoints.values() {
            if let Some(&n) = index.by_id.get(&e.network_id) {
                task_networks.entry(holder(e)).or_default().insert(n);
            }
        }
        // Two endpoints claiming one address would make the asker ambiguous (and one of them
        // could see the other's networks): such an address may not ask at all.
        let mut claimed: HashMap<(usize, Ipv4Addr), usize> = HashMap::new();
        for e in map.endpoints.values() {
            if let Some(&n) = index.by_id.get(&e.network_id) {
                *claimed.entry((n, e.addr.addr)).or_default() += 1;
            }
        }
        for e in map.endpoints.values() {
            let Some(&n) = index.by_id.get(&e.network_id) else { continue };
            if claimed[&(n, e.addr.addr)] > 1 {
                tracing::warn!(network = %e.network_id, addr = %e.addr.addr, "DNS: several endpoints claim one address; it gets no answer");
                continue;
            }
            let mut networks = vec![n];
            networks.extend(task_networks[&holder(e)].iter().copied().filter(|&m| m != n));
            let forward = networks.iter().any(|&m| !index.networks[m].internal);
            index.askers.insert((n, e.addr.addr), Asker { networks, forward });
        }

        // Ready endpoints by service, per network: `tasks.<name>` and dnsrr answers.
        let mut ready: HashMap<(usize, &str), Vec<Ipv4Addr>> = HashMap::new();
        for e in map.endpoints.values().filter(|e| e.ready) {
            let Some(&n) = index.by_id.get(&e.network_id) else { continue };
            let net = &mut index.networks[n];
            let qualified = if e.service_id.is_empty() {
                // A standalone container: its name and its own aliases name it.
                for name in std::iter::once(&e.name).chain(&e.aliases) {
                    net.add(name, &[e.addr.addr]);
                }
                e.name.clone()
            } else {
                // A task: `<service>.<slot>` and `<service>.<slot>.<task id>`; its aliases are
                // its service's, which name the service (below).
                ready.entry((n, &e.service_id)).or_default().push(e.addr.addr);
                let full = format!("{}.{}", e.name, e.task_id);
                net.add(&e.name, &[e.addr.addr]);
                net.add(&full, &[e.addr.addr]);
                full
            };
            if let Some(ptr) = normalize(&format!("{qualified}.{}", net.name)) {
                net.ptr.insert(e.addr.addr, ptr.into());
            }
        }
        for s in map.services.values() {
            let Some(&n) = index.by_id.get(&s.network_id) else { continue };
            let tasks = ready.get(&(n, s.service_id.as_str())).map_or(&[][..], Vec::as_slice);
            let net = &mut index.networks[n];
            let vip = s.vip.map(|v| [v.addr]);
            for name in std::iter::once(&s.name).chain(&s.aliases) {
                net.add(name, vip.as_ref().map_or(tasks, |v| &v[..]));
                net.add(&format!("tasks.{name}"), tasks);
            }
        }
        for net in &mut index.networks {
            for addrs in net.names.values_mut() {
                addrs.sort_unstable();
                addrs.dedup();
            }
        }
        index
    }

    /// The index of network `id`, if the map has it.
    pub fn network(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The endpoint at `src` on network `network`, if there is one: only endpoints may ask.
    pub fn asker(&self, network: usize, src: Ipv4Addr) -> Option<&Asker> {
        self.askers.get(&(network, src))
    }

    /// What `name` (lower case, no trailing dot) is for `asker`: the first of its networks that
    /// gives it addresses answers; a name qualified with one of its networks' names
    /// (`web.front`) is looked up on that network only; with `search` domains, a name under one
    /// of them is also tried without it.
    pub fn resolve<'a>(&'a self, asker: &Asker, name: &str, search: &[String]) -> Found<'a> {
        let mut found = self.resolve_one(asker, name);
        for domain in search {
            if let Found::Addrs(a) = found {
                if !a.is_empty() {
                    break;
                }
            }
            if let Some(short) = name.strip_suffix(domain.as_str()).and_then(|s| s.strip_suffix('.')) {
                match (found, self.resolve_one(asker, short)) {
                    (_, Found::Addrs(a)) if !a.is_empty() => found = Found::Addrs(a),
                    (Found::Unknown, other) => found = other,
                    _ => {}
                }
            }
        }
        found
    }

    fn resolve_one<'a>(&'a self, asker: &Asker, name: &str) -> Found<'a> {
        let mut found = Found::Unknown;
        let mut consider = |addrs: Option<&'a Vec<Ipv4Addr>>| match addrs {
            Some(a) if !a.is_empty() => Some(Found::Addrs(a)),
            Some(_) => {
                found = Found::Addrs(&[]);
                None
            }
            None => None,
        };
        for &n in &asker.networks {
            if let Some(f) = consider(self.networks[n].names.get(name)) {
                return f;
            }
        }
        for &n in &asker.networks {
            let net = &self.networks[n];
            if net.name.is_empty() {
                continue;
            }
            let short = name.strip_suffix(net.name.as_str()).and_then(|s| s.strip_suffix('.'));
            if let Some(f) = consider(short.and_then(|s| net.names.get(s))) {
                return f;
            }
        }
        found
    }

    /// The name of the endpoint at `addr` on one of `asker`'s networks, for a PTR query.
    pub fn reverse(&self, asker: &Asker, addr: Ipv4Addr) -> Option<&str> {
        asker.networks.iter().find_map(|&n| self.networks[n].ptr.get(&addr)).map(|s| &**s)
    }

    /// Whether `addr` lies in one of `asker`'s networks: a reverse query for it is ours to
    /// answer (NXDOMAIN when no endpoint has it), not the upstream resolvers'.
    pub fn in_networks(&self, asker: &Asker, addr: Ipv4Addr) -> bool {
        asker.networks.iter().any(|&n| self.networks[n].subnet.is_some_and(|s| s.contains(addr)))
    }
}

impl NetIndex {
    /// Adds `addrs` to `name`'s answer (creating the name, even with no address).
    fn add(&mut self, name: &str, addrs: &[Ipv4Addr]) {
        if let Some(key) = normalize(name) {
            self.names.entry(key.into()).or_default().extend_from_slice(addrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::map::{MapNetwork, MapService};

    /// The reference: what a name is for the endpoint at `src` on `network`, found by scanning
    /// the whole map as the resolver's rules say, with no index. `None`: not an asker.
    fn naive(map: &NetworkMap, network: &str, src: Ipv4Addr, name: &str) -> Option<Option<Vec<Ipv4Addr>>> {
        let mut mine = map.endpoints.values().filter(|e| e.network_id == network && e.addr.addr == src);
        let me = mine.next()?;
        if mine.next().is_some() {
            return None;
        }
        let mut nets: Vec<&str> = vec![network];
        let mut others: Vec<&str> = map
            .endpoints
            .values()
            .filter(|e| holder(e) == holder(me) && e.network_id != network)
            .map(|e| e.network_id.as_str())
            .collect();
        others.sort();
        others.dedup();
        nets.extend(others);

        let on = |net: &str, name: &str| -> Option<Vec<Ipv4Addr>> {
            let eq = |candidate: &str| candidate.eq_ignore_ascii_case(name);
            let ready = |sid: &str| -> Vec<Ipv4Addr> {
                map.endpoints
                    .values()
                    .filter(|e| e.network_id == net && e.service_id == sid && e.ready)
                    .map(|e| e.addr.addr)
                    .collect()
            };
            let mut known = false;
            let mut addrs = Vec::new();
            for s in map.services.values().filter(|s| s.network_id == net) {
                for n in std::iter::once(&s.name).chain(&s.aliases) {
                    if eq(n) {
                        known = true;
                        addrs.extend(s.vip.map(|v| vec![v.addr]).unwrap_or_else(|| ready(&s.service_id)));
                    }
                    if eq(&format!("tasks.{n}")) {
                        known = true;
                        addrs.extend(ready(&s.service_id));
                    }
                }
            }
            for e in map.endpoints.values().filter(|e| e.network_id == net && e.ready) {
                let names: Vec<String> = if e.service_id.is_empty() {
                    std::iter::once(&e.name).chain(&e.aliases).cloned().collect()
                } else {
                    vec![e.name.clone(), format!("{}.{}", e.name, e.task_id)]
                };
                if names.iter().any(|n| eq(n)) {
                    known = true;
                    addrs.push(e.addr.addr);
                }
            }
            addrs.sort();
            addrs.dedup();
            known.then_some(addrs)
        };

        let mut empty = false;
        for net in &nets {
            match on(net, name) {
                Some(a) if !a.is_empty() => return Some(Some(a)),
                Some(_) => empty = true,
                None => {}
            }
        }
        for net in &nets {
            let net_name = map.networks[*net].name.to_ascii_lowercase();
            if net_name.is_empty() {
                continue;
            }
            if let Some(short) = name.strip_suffix(&format!(".{net_name}")) {
                match on(net, short) {
                    Some(a) if !a.is_empty() => return Some(Some(a)),
                    Some(_) => empty = true,
                    None => {}
                }
            }
        }
        Some(empty.then(Vec::new))
    }

    const NAMES: [&str; 6] = ["web", "Web", "db", "api", "tasks.db", "web.1"];

    fn arb_map() -> impl Strategy<Value = NetworkMap> {
        let endpoint = (
            0..3usize,
            0..6usize,
            0..4usize,
            1..40u8,
            0..NAMES.len(),
            proptest::collection::vec(0..NAMES.len(), 0..2),
            any::<bool>(),
        );
        let service = (
            0..3usize,
            0..4usize,
            0..NAMES.len(),
            proptest::collection::vec(0..NAMES.len(), 0..2),
            proptest::option::of(200..210u8),
        );
        (
            proptest::collection::vec(any::<bool>(), 3),
            proptest::collection::vec(endpoint, 0..24),
            proptest::collection::vec(service, 0..8),
        )
            .prop_map(|(internal, endpoints, services)| {
                let mut map = NetworkMap::default();
                let net_names = ["front", "back", "web"];
                for (i, internal) in internal.into_iter().enumerate() {
                    let subnet = Cidr { addr: Ipv4Addr::new(10, 0, i as u8, 0), prefix: 24 };
                    map.networks.insert(
                        format!("n{i}"),
                        MapNetwork {
                            id: format!("n{i}"),
                            name: net_names[i].into(),
                            vni: 4096 + i as u32,
                            subnet,
                            gateway: Ipv4Addr::new(10, 0, i as u8, 1),
                            internal,
                            attachable: true,
                            options: BTreeMap::new(),
                            ingress: false,
                        },
                    );
                }
                for (net, task, service, host, name, aliases, ready) in endpoints {
                    // Service 3 stands for "no service": a standalone container.
                    let service_id = if service == 3 { String::new() } else { format!("s{service}") };
                    let e = MapEndpoint {
                        network_id: format!("n{net}"),
                        task_id: format!("t{task}"),
                        addr: Cidr { addr: Ipv4Addr::new(10, 0, net as u8, host), prefix: 24 },
                        node_id: "node".into(),
                        service_id,
                        name: NAMES[name].into(),
                        aliases: aliases.into_iter().map(|a| NAMES[a].to_owned()).collect(),
                        ready,
                        node: false,
                    };
                    map.endpoints.insert(format!("{}/{}", e.network_id, e.task_id), e);
                }
                for (net, service, name, aliases, vip) in services {
                    let s = MapService {
                        network_id: format!("n{net}"),
                        service_id: format!("s{service}"),
                        name: NAMES[name].into(),
                        aliases: aliases.into_iter().map(|a| NAMES[a].to_owned()).collect(),
                        vip: vip.map(|v| Cidr { addr: Ipv4Addr::new(10, 0, net as u8, v), prefix: 24 }),
                        ports: Vec::new(),
                    };
                    map.services.insert(format!("{}/{}", s.network_id, s.service_id), s);
                }
                map
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn the_index_answers_as_a_scan_of_the_map_does(map in arb_map()) {
            let index = Index::build(&map);
            let mut questions: Vec<String> = NAMES.iter().map(|n| n.to_ascii_lowercase()).collect();
            for n in NAMES {
                questions.push(format!("tasks.{}", n.to_ascii_lowercase()));
                for net in ["front", "back", "web", "other"] {
                    questions.push(format!("{}.{net}", n.to_ascii_lowercase()));
                }
            }
            for t in 0..6 {
                questions.push(format!("web.t{t}"));
                questions.push(format!("web.1.t{t}"));
            }
            for (net_id, net) in &map.networks {
                for host in 0..42u8 {
                    let src = Ipv4Addr::new(10, 0, net.subnet.addr.octets()[2], host);
                    let asker = index.network(net_id).and_then(|n| index.asker(n, src));
                    for q in &questions {
                        let expected = naive(&map, net_id, src, q);
                        let got = asker.map(|a| match index.resolve(a, q, &[]) {
                            Found::Addrs(addrs) => Some(addrs.to_vec()),
                            Found::Unknown => None,
                        });
                        prop_assert_eq!(&got, &expected, "{} from {} on {}", q, src, net_id);
                    }
                    if let Some(a) = asker {
                        let forward = map.endpoints.values()
                            .filter(|e| Some(holder(e)) == map.endpoints.values().find(|e| e.network_id == *net_id && e.addr.addr == src).map(holder))
                            .any(|e| !map.networks[&e.network_id].internal);
                        prop_assert_eq!(a.forward, forward);
                    }
                }
            }
        }
    }

    #[test]
    fn names_read_as_dns_carries_them() {
        assert_eq!(normalize("Web.Front."), Some("web.front".into()));
        assert_eq!(normalize("my_svc-1"), Some("my_svc-1".into()));
        for bad in ["", ".", "a..b", "a b", "é", &"x".repeat(64), &["a"; 128].join(".")] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
