//! Raft between managers over gRPC: the client side ([`Network`]) and the
//! server side ([`RaftService`]). openraft's messages and leader work
//! forwarded between managers travel inside [`RaftPayload`] in postcard
//! (compact and cheap to encode).

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::RaftPayload;
use tokio_util::task::TaskTracker;
use tonic::Status;

use super::log_store::CommitGate;
use super::{Raft, TypeConfig};

/// The largest raft message (an `AppendEntries` and its entries, a
/// snapshot chunk, forwarded leader work) a manager sends or reads. A larger
/// batch of entries is sent in several messages (see
/// [`Network::append_entries`]); one entry is far smaller (see
/// `control::propose`).
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;

/// The largest snapshot a follower takes in: the whole store, encoded.
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

/// Makes one [`Network`] client per raft peer, over mutual TLS.
#[derive(Clone)]
pub struct NetworkFactory {
    tls: crate::ca::NodeTls,
    gate: CommitGate,
    /// Where the connections' tasks are tracked.
    tasks: TaskTracker,
}

impl NetworkFactory {
    pub fn new(tls: crate::ca::NodeTls, gate: CommitGate, tasks: TaskTracker) -> NetworkFactory {
        NetworkFactory { tls, gate, tasks }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Network {
        Network {
            target,
            addr: node.addr.clone(),
            tls: self.tls.clone(),
            client: None,
            gate: self.gate.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

/// A connection to one raft peer, dialled lazily and re-dialled after errors.
pub struct Network {
    target: u64,
    addr: String,
    tls: crate::ca::NodeTls,
    client: Option<crate::ca::tls::RaftSender>,
    gate: CommitGate,
    tasks: TaskTracker,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Network {
    async fn call<Req, Resp, E>(&mut self, method: Method, req: &Req, timeout: Duration) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = postcard::to_stdvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(method, data, timeout).await
    }

    /// Sends an encoded request and reads the reply.
    async fn send<Resp, E>(&mut self, method: Method, data: Vec<u8>, timeout: Duration) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if data.len() > MAX_RAFT_MESSAGE {
            let e = std::io::Error::other(format!(
                "a raft message of {} bytes is over the limit of {MAX_RAFT_MESSAGE}",
                data.len()
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        if self.client.is_none() {
            let sender = crate::ca::tls::raft_connection(&self.addr, &self.tls, Duration::from_secs(2), &self.tasks)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
            self.client = Some(sender);
        }
        let Some(channel) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other("no connection"))));
        };
        let path = match method {
            Method::Append => "/shoal.v1.Raft/AppendEntries",
            Method::Vote => "/shoal.v1.Raft/Vote",
            Method::Snapshot => "/shoal.v1.Raft/InstallSnapshot",
        };
        let reply = match unary(channel, &self.addr, path, data, timeout).await {
            Ok(r) => r,
            Err(status) => {
                self.client = None;
                return Err(RPCError::Network(NetworkError::new(&status)));
            }
        };
        let result: Result<Resp, RaftError<u64, E>> =
            postcard::from_bytes(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum Method {
    Append,
    Vote,
    Snapshot,
}

/// One unary `Raft` call straight on the connection, the request body whole
/// (one DATA frame that ends the stream): two socket writes per call where
/// the generated client, which streams the body, makes three; a write makes
/// two calls (append, then commit) to each follower.
async fn unary(
    sender: &mut crate::ca::tls::RaftSender,
    addr: &str,
    path: &'static str,
    data: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, tonic::Status> {
    use prost::Message;
    let message = RaftPayload { data }.encode_to_vec();
    let len = u32::try_from(message.len()).map_err(|_| tonic::Status::internal("raft message larger than 4 GiB"))?;
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&message);
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("https://{addr}{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header("grpc-timeout", format!("{}m", timeout.as_millis().max(1)))
        .body(http_body_util::Full::new(bytes::Bytes::from(framed)))
        .map_err(|e| tonic::Status::internal(format!("building a raft request: {e}")))?;
    let call = async {
        sender.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        sender.send_request(request).await.map_err(|e| tonic::Status::unavailable(e.to_string()))
    };
    let response = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no raft reply in time"))??;
    let (parts, body) = response.into_parts();
    let failed = |headers: &http::HeaderMap| Status::from_header_map(headers).filter(|s| s.code() != tonic::Code::Ok);
    if let Some(status) = failed(&parts.headers) {
        return Err(status);
    }
    // A reply is read whole, so no larger than a message may be.
    let body = http_body_util::Limited::new(body, MAX_RAFT_MESSAGE + 5);
    let collected =
        http_body_util::BodyExt::collect(body).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    if let Some(status) = collected.trailers().and_then(failed) {
        return Err(status);
    }
    let bytes = collected.to_bytes();
    let malformed = || tonic::Status::internal("malformed raft reply (not one uncompressed gRPC message)");
    let (head, rest) = bytes.split_at_checked(5).ok_or_else(malformed)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if head[0] != 0 || rest.len() != len {
        return Err(malformed());
    }
    RaftPayload::decode(rest).map(|p| p.data).map_err(|e| tonic::Status::internal(format!("malformed raft reply: {e}")))
}

impl RaftNetwork<TypeConfig> for Network {
    /// Sends no commit index beyond what this leader has on disk (see
    /// `log_store`).
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        rpc.leader_commit = self.gate.commit_to_send(rpc.leader_commit);
        let data = postcard::to_stdvec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // Too many entries for one message: openraft sends fewer at a time
        // when told how many might fit.
        if data.len() > MAX_RAFT_MESSAGE && rpc.entries.len() > 1 {
            let fit = (rpc.entries.len() as u64 * MAX_RAFT_MESSAGE as u64 / data.len() as u64).max(1);
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit)));
        }
        self.send(Method::Append, data, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(Method::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }
}

/// The gRPC server side: hands each request to the local raft node.
pub struct RaftService {
    raft: Raft,
    proposer: crate::control::Proposer,
}

impl RaftService {
    pub fn new(raft: Raft, proposer: crate::control::Proposer) -> RaftService {
        RaftService { raft, proposer }
    }
}

/// Only managers of this cluster may speak raft.
fn check_manager<T>(req: &tonic::Request<T>) -> Result<(), tonic::Status> {
    match crate::ca::caller(req) {
        Some(c) if c.role == shoal_proto::NodeRole::Manager => Ok(()),
        Some(c) => Err(tonic::Status::permission_denied(format!("node {} is not a manager", c.node_id))),
        None => Err(tonic::Status::unauthenticated("raft needs a manager certificate")),
    }
}

/// Reads a raft message or forwarded leader work (postcard) from a manager.
fn decode<T: DeserializeOwned>(req: tonic::Request<RaftPayload>) -> Result<T, tonic::Status> {
    check_manager(&req)?;
    postcard::from_bytes(&req.into_inner().data)
        .map_err(|e| tonic::Status::invalid_argument(format!("malformed raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
    postcard::to_stdvec(value)
        .map(|data| tonic::Response::new(RaftPayload { data }))
        .map_err(|e| tonic::Status::internal(format!("encoding a raft reply: {e}")))
}

#[tonic::async_trait]
impl shoal_proto::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let req: AppendEntriesRequest<TypeConfig> = decode(request)?;
        encode(&self.raft.append_entries(req).await)
    }

    async fn vote(&self, request: tonic::Request<RaftPayload>) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let req: VoteRequest<u64> = decode(request)?;
        encode(&self.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let req: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        // The chunk is written at the offset it names, into memory: a far
        // offset would allocate all the space before it.
        let end = req.offset.checked_add(req.data.len() as u64);
        if end.is_none_or(|end| end > MAX_SNAPSHOT_BYTES) {
            return Err(tonic::Status::invalid_argument(format!(
                "a snapshot chunk at offset {} reaches past the largest snapshot this manager takes in \
                 ({MAX_SNAPSHOT_BYTES} bytes)",
                req.offset
            )));
        }
        encode(&self.raft.install_snapshot(req).await)
    }

    /// Leader work from another manager. A joining manager sends its own
    /// `AddManager` to the manager it joined through, which may pass it on to
    /// the leader once; everything else was sent to the leader already.
    async fn forward(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let op: crate::control::LeaderOp = decode(request)?;
        let may_forward = matches!(op, crate::control::LeaderOp::AddManager { .. });
        encode(&self.proposer.run(op, may_forward).await)
    }
}
