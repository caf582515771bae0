//! Forwarding of the names the mesh does not own to upstream resolvers (the node's own, or a
//! container's `dns:` servers), through hickory-resolver's name-server pool: UDP first, TCP
//! when the answer is truncated, every exchange bounded by a deadline.
//!
//! The upstream's answer is relayed as it came (its code, answers, authorities and additional
//! records); no answer in time is SERVFAIL, never a hang.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use hickory_resolver::{
    config::{NameServerConfig, ResolverOpts},
    net::{runtime::TokioRuntimeProvider, xfer::DnsHandle, DnsError as NetDnsError, NetError},
    proto::{
        op::{DnsRequest, DnsRequestOptions, Query, ResponseCode},
        rr::Record,
    },
    NameServerPool, PoolContext, TlsConfig,
};

/// What upstream said, ready to relay.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Relayed {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Relayed {
    pub fn failure(code: ResponseCode) -> Relayed {
        Relayed { code, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new() }
    }
}

/// A set of upstream servers, asked in turn.
pub(crate) struct Upstream {
    servers: Vec<SocketAddr>,
    pool: Option<NameServerPool<TokioRuntimeProvider>>,
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("servers", &self.servers).finish()
    }
}

impl Upstream {
    /// The servers it forwards to.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Upstream `servers` (none: every forwarded query fails), each exchange within `timeout`.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Upstream {
        let pool = (!servers.is_empty()).then(|| {
            let mut opts = ResolverOpts::default();
            opts.timeout = timeout;
            opts.attempts = 1;
            let configs = servers.iter().map(|s| {
                let mut config = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut config.connections {
                    c.port = s.port();
                }
                config
            });
            // Without TLS features the configuration is empty and cannot fail.
            let tls = TlsConfig::new().expect("an empty TLS configuration");
            NameServerPool::from_config(configs, Arc::new(PoolContext::new(opts, tls)), TokioRuntimeProvider::new())
        });
        Upstream { servers: servers.to_vec(), pool, timeout }
    }

    /// Asks upstream `query`, with recursion if the client asked for it.
    pub async fn forward(&self, query: &Query, recursion_desired: bool) -> Relayed {
        let Some(pool) = &self.pool else { return Relayed::failure(ResponseCode::ServFail) };
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = recursion_desired;
        let request = DnsRequest::from_query(query.clone(), options);
        // The pool bounds each exchange; this bounds the whole, retries and TCP included.
        let answer = tokio::time::timeout(self.timeout, pool.send(request).next()).await;
        match answer {
            Ok(Some(Ok(response))) => {
                let message = response.into_message();
                Relayed {
                    code: message.metadata.response_code,
                    answers: message.answers,
                    authorities: message.authorities,
                    additionals: message.additionals,
                }
            }
            // The pool turns empty answers into errors; they are answers all the same.
            Ok(Some(Err(NetError::Dns(NetDnsError::NoRecordsFound(none))))) => Relayed {
                code: none.response_code,
                answers: Vec::new(),
                authorities: none.authorities.map(|a| a.to_vec()).unwrap_or_default(),
                additionals: Vec::new(),
            },
            Ok(Some(Err(NetError::Dns(NetDnsError::ResponseCode(code))))) => Relayed::failure(code),
            Ok(Some(Err(error))) => {
                tracing::debug!(%error, servers = ?self.servers, "forwarding a DNS query failed");
                Relayed::failure(ResponseCode::ServFail)
            }
            Ok(None) | Err(_) => Relayed::failure(ResponseCode::ServFail),
        }
    }
}
