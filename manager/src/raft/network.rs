//! Raft between managers over gRPC: the client side ([`Network`]) and the
//! server side ([`RaftService`]). openraft's messages travel inside
//! [`RaftPayload`] in postcard (compact and cheap to encode: openraft owns
//! their shape); leader work forwarded between managers travels as JSON.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::raft_client::RaftClient;
use shoal_proto::RaftPayload;
use tonic::transport::Channel;

use super::{Raft, TypeConfig};

/// Makes one [`Network`] client per raft peer, over mutual TLS.
#[derive(Clone)]
pub struct NetworkFactory {
    tls: crate::ca::NodeTls,
}

impl NetworkFactory {
    pub fn new(tls: crate::ca::NodeTls) -> NetworkFactory {
        NetworkFactory { tls }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Network {
        Network { target, addr: node.addr.clone(), tls: self.tls.clone(), client: None }
    }
}

/// A connection to one raft peer, dialled lazily and re-dialled after errors.
pub struct Network {
    target: u64,
    addr: String,
    tls: crate::ca::NodeTls,
    client: Option<RaftClient<Channel>>,
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
        if self.client.is_none() {
            let channel = crate::ca::tls::connect(&self.addr, &self.tls, Duration::from_secs(2))
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
            self.client = Some(
                RaftClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX),
            );
        }
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other("no connection"))));
        };
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(timeout);
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.client = None;
                return Err(RPCError::Network(NetworkError::new(&status)));
            }
        };
        let result: Result<Resp, RaftError<u64, E>> =
            postcard::from_bytes(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.call(Method::Append, &rpc, option.hard_ttl()).await
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

/// Reads a raft message (postcard) from a manager.
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

/// Reads forwarded leader work (JSON) from a manager.
fn decode_json<T: DeserializeOwned>(req: tonic::Request<RaftPayload>) -> Result<T, tonic::Status> {
    check_manager(&req)?;
    serde_json::from_slice(&req.into_inner().data)
        .map_err(|e| tonic::Status::invalid_argument(format!("malformed forwarded request: {e}")))
}

fn encode_json<T: Serialize>(value: &T) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
    serde_json::to_vec(value)
        .map(|data| tonic::Response::new(RaftPayload { data }))
        .map_err(|e| tonic::Status::internal(format!("encoding a forwarded reply: {e}")))
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
        encode(&self.raft.install_snapshot(req).await)
    }

    /// Leader work from another manager. A joining manager sends its own
    /// `AddManager` to the manager it joined through, which may pass it on to
    /// the leader once; everything else was sent to the leader already.
    async fn forward(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let op: crate::control::LeaderOp = decode_json(request)?;
        let may_forward = matches!(op, crate::control::LeaderOp::AddManager { .. });
        encode_json(&self.proposer.run(op, may_forward).await)
    }
}
