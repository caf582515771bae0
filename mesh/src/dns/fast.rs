//! The resolver's UDP side. The common query — one question of class IN for a name of the
//! map, from an endpoint, with at most an EDNS OPT record — is answered straight from the
//! datagram: the question is copied back as asked and the answer records point at it, so no
//! message is parsed into objects or encoded from them. Everything else (forwarded names,
//! PTR, refusals, malformed or unusual queries, answers that need truncating) goes through
//! hickory-server's request handling, the same [`Handler`] that serves TCP.
//!
//! Both paths answer from the same index, so they cannot disagree: the fast one only skips
//! work, and the tests ask the same questions over UDP and TCP.

use std::{io, net::SocketAddr, sync::Arc};

use hickory_server::{
    net::{runtime::TokioTime, xfer::Protocol, NetError},
    proto::{
        op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
        rr::Record,
        serialize::binary::{BinEncodable, BinEncoder},
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use tokio::{net::UdpSocket, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{index::Found, Handler, EDNS_PAYLOAD, TTL};

/// The largest query read: a question is at most 4 + 255 bytes, an OPT record with options
/// a few hundred more.
const MAX_QUERY: usize = 4096;
const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// Binds the UDP socket of a listener.
pub(super) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Serves `socket` until `stop`: one task per core reading it, so that queries are answered
/// in parallel.
pub(super) fn serve_udp(socket: UdpSocket, handler: Handler, stop: CancellationToken) -> Vec<JoinHandle<()>> {
    let socket = Arc::new(socket);
    let readers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    (0..readers).map(|_| tokio::spawn(read_loop(socket.clone(), handler.clone(), stop.clone()))).collect()
}

async fn read_loop(socket: Arc<UdpSocket>, handler: Handler, stop: CancellationToken) {
    let mut buf = vec![0u8; MAX_QUERY];
    let mut out = Vec::with_capacity(usize::from(EDNS_PAYLOAD));
    loop {
        let (len, src) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // A datagram too big for the buffer, an ICMP error from an earlier send:
                // nothing to answer, go on.
                Err(error) => {
                    tracing::trace!(%error, "DNS: receiving a query failed");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let query = &buf[..len];
        if src.port() == 0 {
            continue;
        }
        if answer(&handler, query, src, &mut out) {
            if let Err(error) = socket.send_to(&out, src).await {
                tracing::trace!(%error, %src, "DNS: sending an answer failed");
            }
            continue;
        }
        // The general path, on a task of its own: it may wait for an upstream resolver.
        let Ok(request) = Request::from_bytes(query.to_vec(), src, Protocol::Udp) else {
            formerr(query, &mut out);
            if !out.is_empty() {
                let _ = socket.send_to(&out, src).await;
            }
            continue;
        };
        if request.metadata.message_type == MessageType::Response {
            // Never answer an answer: that is how reflection loops start.
            continue;
        }
        let limit = udp_limit(request.edns.as_ref().map(|e| e.max_payload()));
        let (handler, responder) = (handler.clone(), Responder { socket: socket.clone(), dst: src, limit });
        tokio::spawn(async move {
            handler.handle_request::<_, TokioTime>(&request, responder).await;
        });
    }
}

/// FORMERR for a query that does not parse, when at least its header does.
fn formerr(query: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return;
    }
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD; RA; FORMERR.
    out.push(0x80 | (query[2] & 0x79));
    out.push(0x80 | 1);
    out.extend_from_slice(&[0; 8]);
}

/// Writes the answer to `query` from `src` into `out`, if it is a query the fast path answers.
fn answer(handler: &Handler, query: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
    let Some(q) = parse(query) else { return false };
    let std::net::IpAddr::V4(src_ip) = src.ip() else { return false };
    let index = handler.shared.index();
    let Some(network) = index.network(&handler.network_id) else { return false };
    let Some(asker) = index.asker(network, src_ip) else { return false };
    if handler.shared.client(src_ip).is_some() {
        // Search domains or forwarders of its own: the general path knows them.
        return false;
    }
    // `parse` let only ASCII letters, digits, '-', '_' and '.' in.
    let Ok(name) = std::str::from_utf8(&q.name[..q.name_len]) else { return false };
    let Found::Addrs(addrs) = index.resolve(asker, name, &[]) else { return false };
    let records = if matches!(q.qtype, TYPE_A | TYPE_ANY) { addrs } else { &[][..] };

    let limit = usize::from(udp_limit(q.edns_payload));
    let size = 12 + q.question.len() + records.len() * 16 + if q.edns_payload.is_some() { 11 } else { 0 };
    if size > limit {
        // Truncation is the general path's.
        return false;
    }
    out.clear();
    out.extend_from_slice(&query[..2]);
    // QR, opcode 0, RD as asked; RA, CD as asked, NOERROR.
    out.push(0x80 | (query[2] & 0x01));
    out.push(0x80 | (query[3] & 0x10));
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(q.edns_payload.is_some()).to_be_bytes());
    out.extend_from_slice(q.question);
    let start = match records.len() {
        0 | 1 => 0,
        n => handler.shared.rotation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n,
    };
    for ip in records[start..].iter().chain(&records[..start]) {
        // The owner name is a pointer to the question's, at offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    if q.edns_payload.is_some() {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    true
}

/// The largest answer a UDP client takes: 512 bytes without EDNS (RFC 1035), what it offers
/// with EDNS, no more than this server's offer.
fn udp_limit(offered: Option<u16>) -> u16 {
    offered.map_or(512, |p| p.clamp(512, EDNS_PAYLOAD))
}

/// The parts of a simple query.
struct Simple<'a> {
    /// The question section as it came (name as asked, type, class).
    question: &'a [u8],
    /// The name in lower case, dot-separated, without the trailing dot.
    name: [u8; 256],
    name_len: usize,
    qtype: u16,
    /// The EDNS payload size, if the query has an OPT record.
    edns_payload: Option<u16>,
}

/// Reads `query` if it is a simple one: a query (opcode 0) with one question of class IN for
/// a name of letters, digits, '-' and '_', no answer or authority records, and at most an OPT
/// record of EDNS version 0; `None` for anything else.
fn parse(query: &[u8]) -> Option<Simple<'_>> {
    let u16_at = |i: usize| query.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if query.len() < 12 || query[2] & 0xf8 != 0 {
        // A response, or an opcode other than QUERY.
        return None;
    }
    let (qd, an, ns, ar) = (u16_at(4)?, u16_at(6)?, u16_at(8)?, u16_at(10)?);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut name = [0u8; 256];
    let mut name_len = 0;
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (never in a question) and long labels are not simple.
        if len > 63 || name_len + len + 1 > 254 {
            return None;
        }
        let label = query.get(i..i + len)?;
        if name_len > 0 {
            name[name_len] = b'.';
            name_len += 1;
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            name[name_len] = b.to_ascii_lowercase();
            name_len += 1;
        }
        i += len;
    }
    if name_len == 0 {
        return None;
    }
    let (qtype, qclass) = (u16_at(i)?, u16_at(i + 2)?);
    i += 4;
    if qclass != CLASS_IN {
        return None;
    }
    let question = &query[12..i];
    let mut edns_payload = None;
    if ar == 1 {
        // OPT: root name, type 41, payload size, extended rcode, version, flags, options.
        if *query.get(i)? != 0 || u16_at(i + 1)? != TYPE_OPT || *query.get(i + 6)? != 0 {
            return None;
        }
        edns_payload = Some(u16_at(i + 3)?);
        let rdlen = usize::from(u16_at(i + 9)?);
        i += 11 + rdlen;
    }
    (i == query.len()).then_some(Simple { question, name, name_len, qtype, edns_payload })
}

/// Sends the general path's answer on the listener's socket.
#[derive(Clone)]
struct Responder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
    /// The client's limit ([`udp_limit`]); a longer answer is truncated.
    limit: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Responder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(self.limit);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "DNS: encoding an answer failed");
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header { metadata, counts: HeaderCounts::default() };
                let mut encoder = BinEncoder::new(&mut bytes);
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        self.socket.send_to(&bytes, self.dst).await?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::Ipv4Addr,
        sync::{Arc, Mutex},
    };

    use hickory_server::proto::{
        op::{Edns, Message, Query},
        rr::{Name, RecordType},
        serialize::binary::{BinDecodable, BinEncodable},
    };
    use proptest::prelude::*;

    use super::*;
    use crate::{
        dns::{Resolver, ResolverConfig},
        map::{Cidr, MapEndpoint, MapNetwork, MapService, NetworkMap},
    };

    /// Keeps what the general path sends.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>, u16);

    #[async_trait::async_trait]
    impl ResponseHandler for Capture {
        async fn send_response<'a>(
            &mut self,
            response: MessageResponse<
                '_,
                'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
            >,
        ) -> Result<ResponseInfo, NetError> {
            let mut bytes = Vec::new();
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(self.1);
            let info = response.destructive_emit(&mut encoder)?;
            *self.0.lock().expect("lock") = bytes;
            Ok(info)
        }
    }

    fn map() -> NetworkMap {
        let c = |d| Cidr { addr: Ipv4Addr::new(10, 9, 0, d), prefix: 24 };
        let mut map = NetworkMap::default();
        map.networks.insert(
            "n".into(),
            MapNetwork {
                id: "n".into(),
                name: "front".into(),
                vni: 4096,
                subnet: c(0),
                gateway: c(1).addr,
                internal: false,
                attachable: false,
                options: Default::default(),
                ingress: false,
            },
        );
        for (id, name, vip) in [("s1", "web", Some(c(100))), ("s2", "db", None), ("s3", "empty", None)] {
            map.services.insert(
                format!("n/{id}"),
                MapService {
                    network_id: "n".into(),
                    service_id: id.into(),
                    name: name.into(),
                    aliases: vec![format!("{name}-alias")],
                    vip,
                    ports: Vec::new(),
                },
            );
        }
        for (task, service, host, ready) in [("t1", "s1", 5, true), ("t2", "s2", 6, true), ("t3", "s2", 7, true)] {
            map.endpoints.insert(
                format!("n/{task}"),
                MapEndpoint {
                    network_id: "n".into(),
                    task_id: task.into(),
                    addr: c(host),
                    node_id: "node".into(),
                    service_id: service.into(),
                    name: format!("{service}.1"),
                    aliases: Vec::new(),
                    ready,
                    node: false,
                },
            );
        }
        map
    }

    fn sorted(mut m: Message) -> Message {
        m.answers.sort_by_key(|r| r.data.to_string());
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn the_fast_path_answers_as_the_general_path_does(
            name in prop::sample::select(vec!["web", "WeB.", "tasks.web", "db", "Tasks.DB", "db-alias", "empty",
                "s1.1", "s2.1.t2", "web.front", "nothing", "x.y.z", "web-alias.front."]),
            qtype in prop::sample::select(vec![RecordType::A, RecordType::AAAA, RecordType::ANY, RecordType::MX,
                RecordType::PTR, RecordType::TXT]),
            edns in prop::option::of(0u16..4096),
            rd in any::<bool>(),
            id in any::<u16>(),
            from in prop::sample::select(vec![5u8, 6, 99]),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let config = ResolverConfig { upstream: Vec::new(), timeout: std::time::Duration::from_millis(50), port: 53 };
                let resolver = Resolver::start(config, CancellationToken::new());
                resolver.set_map(&map());
                let handler = Handler { network_id: "n".into(), shared: resolver.shared.clone() };
                let mut q = Message::query();
                q.metadata.id = id;
                q.metadata.recursion_desired = rd;
                q.queries.push(Query::query(Name::from_ascii(name).expect("name"), qtype));
                if let Some(payload) = edns {
                    let mut e = Edns::new();
                    e.set_max_payload(payload);
                    q.edns = Some(e);
                }
                let bytes = q.to_bytes().expect("encode");
                let src: SocketAddr = (Ipv4Addr::new(10, 9, 0, from), 5353).into();

                let mut fast = Vec::new();
                let answered = answer(&handler, &bytes, src, &mut fast);
                let capture = Capture(Arc::default(), udp_limit(edns));
                let request = Request::from_bytes(bytes.clone(), src, Protocol::Udp).expect("request");
                handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
                let general = Message::from_bytes(&capture.0.lock().expect("lock")).expect("general answer");
                if answered {
                    let fast = Message::from_bytes(&fast).expect("fast answer");
                    prop_assert_eq!(sorted(fast), sorted(general));
                } else {
                    // Only names it does not know, and askers it does not know, are left to
                    // the general path here (nothing in this map needs truncating).
                    let local = ["web", "tasks.web", "db", "tasks.db", "db-alias", "empty", "s1.1", "s2.1.t2",
                        "web.front", "web-alias.front"];
                    let known = local.contains(&name.trim_end_matches('.').to_ascii_lowercase().as_str());
                    prop_assert!(from == 99 || !known, "{} {} left to the general path", name, qtype);
                }
                Ok(())
            })?;
        }
    }

    #[test]
    fn only_simple_queries_are_read() {
        let mut q = Message::query();
        q.queries.push(Query::query(Name::from_ascii("web.").expect("name"), RecordType::A));
        let good = q.to_bytes().expect("encode");
        assert!(parse(&good).is_some());
        // Cut short, with a byte more, as a response, with another opcode, with two questions.
        assert!(parse(&good[..good.len() - 1]).is_none());
        assert!(parse(&[&good[..], &[0]].concat()).is_none());
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(parse(&response).is_none());
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        assert!(parse(&notify).is_none());
        q.queries.push(Query::query(Name::from_ascii("db.").expect("name"), RecordType::A));
        assert!(parse(&q.to_bytes().expect("encode")).is_none());
        // A name with a byte DNS allows but the map never has.
        let odd = Message::query();
        let mut odd = odd;
        odd.queries.push(Query::query(Name::from_labels(vec![&b"we b"[..]]).expect("name"), RecordType::A));
        assert!(parse(&odd.to_bytes().expect("encode")).is_none());
    }
}
