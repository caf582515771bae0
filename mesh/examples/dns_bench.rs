//! The DNS benchmark's shoal side: the mesh's resolver alone, serving a map of N services on
//! one network whose gateway is a loopback address, with one endpoint that the load generator
//! binds as its source. Runs until its standard input closes.
//!
//! `dns_bench GATEWAY CLIENT [SERVICES]`, e.g. `dns_bench 127.53.0.1 127.53.0.2 100`: services
//! `svc-000` … with virtual IPs 10.53.0.x (answers only: nothing routes to them).

use std::{collections::BTreeMap, io::Read, net::Ipv4Addr, time::Duration};

use shoal_mesh::{
    dns::{Resolver, ResolverConfig},
    Cidr, MapEndpoint, MapNetwork, MapService, NetworkMap,
};
use tokio_util::sync::CancellationToken;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: dns_bench GATEWAY CLIENT [SERVICES]";
    let gateway: Ipv4Addr = args.get(1).ok_or(usage)?.parse()?;
    let client: Ipv4Addr = args.get(2).ok_or(usage)?.parse()?;
    let services: u8 = args.get(3).map_or(Ok(100), |s| s.parse())?;

    let mut map = NetworkMap::default();
    let net = "bench".to_owned();
    map.networks.insert(
        net.clone(),
        MapNetwork {
            id: net.clone(),
            name: "bench".into(),
            vni: 4096,
            subnet: Cidr { addr: Ipv4Addr::new(gateway.octets()[0], gateway.octets()[1], 0, 0), prefix: 16 },
            gateway,
            internal: false,
            attachable: false,
            options: BTreeMap::new(),
            ingress: false,
        },
    );
    map.endpoints.insert(
        format!("{net}/client"),
        MapEndpoint {
            network_id: net.clone(),
            task_id: "client".into(),
            addr: Cidr { addr: client, prefix: 16 },
            node_id: "node".into(),
            service_id: "s-client".into(),
            name: "client.1".into(),
            aliases: Vec::new(),
            ready: true,
            node: false,
        },
    );
    for i in 0..services {
        map.services.insert(
            format!("{net}/s{i}"),
            MapService {
                network_id: net.clone(),
                service_id: format!("s{i}"),
                name: format!("svc-{i:03}"),
                aliases: Vec::new(),
                vip: Some(Cidr { addr: Ipv4Addr::new(10, 53, 0, i), prefix: 16 }),
                ports: Vec::new(),
            },
        );
    }

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let config = ResolverConfig { upstream: Vec::new(), timeout: Duration::from_secs(2), port: 53 };
        let resolver = Resolver::start(config, shutdown.clone());
        resolver.set_map(&map);
        resolver.listen(&net, gateway).await?;
        println!("ready");
        // Until the benchmark closes our standard input.
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
        shutdown.cancel();
        resolver.unlisten(&net).await;
        Ok(())
    })
}
