//! The `NodeCA` service: issues node certificates to joiners that present a
//! valid join token, and registers them as nodes of the swarm.

use std::time::Duration;

use shoal_proto::node_ca_server::NodeCa;
use shoal_proto::{
    IssueNodeCertificateRequest, IssueNodeCertificateResponse, Node, NodeRole, NodeSpec, NodeState, NodeStatus,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::{parse_token, RootCa};
use crate::control::propose::create;
use crate::control::Proposer;
use crate::identity::new_id;
use crate::store::Store;

/// Node certificates live 90 days unless the cluster says otherwise.
const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// The CA service of a manager.
pub struct NodeCaService {
    pub store: Store,
    pub proposer: Proposer,
    pub ca: RootCa,
    pub leader: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl NodeCa for NodeCaService {
    async fn issue_node_certificate(
        &self,
        request: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        if !*self.leader.borrow() {
            return Err(Status::unavailable("this manager is not the leader; join through another manager"));
        }
        let req = request.into_inner();
        let (digest, _) = parse_token(&req.token).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if digest != self.ca.digest() {
            return Err(Status::permission_denied(
                "the join token's CA digest does not match this swarm's CA: the token belongs to another swarm",
            ));
        }
        let (cluster_id, tokens, lifetime) = {
            let state = self.store.read();
            let c = state.cluster().ok_or_else(|| Status::unavailable("the swarm is still starting; retry"))?;
            let lifetime = c
                .spec
                .as_ref()
                .and_then(|s| s.ca.as_ref())
                .map(|ca| ca.node_cert_expiry)
                .filter(|ns| *ns > 0)
                .map(|ns| Duration::from_nanos(ns as u64))
                .unwrap_or(DEFAULT_CERT_LIFETIME);
            (c.id.clone(), c.join_tokens.clone().unwrap_or_default(), lifetime)
        };
        let role = if req.token == tokens.worker {
            NodeRole::Worker
        } else if req.token == tokens.manager {
            NodeRole::Manager
        } else {
            return Err(Status::permission_denied(
                "invalid join token: it was rotated or mistyped; get the current one with `shoal swarm join-token worker`",
            ));
        };
        if role == NodeRole::Manager {
            return Err(Status::failed_precondition(
                "joining as a manager is not supported yet: this swarm has one manager; join with the worker token",
            ));
        }
        let node_id = new_id();
        let certificate = self
            .ca
            .issue(&req.csr, &node_id, role, &cluster_id, lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut node = Node {
            id: node_id.clone(),
            spec: Some(NodeSpec::default()),
            description: req.description,
            status: Some(NodeStatus { state: NodeState::Unknown as i32, addr: req.addr, ..Default::default() }),
            ..Default::default()
        };
        node.set_role(role);
        if let Some(spec) = node.spec.as_mut() {
            spec.set_desired_role(role);
        }
        self.proposer.propose(vec![create(node)]).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let managers = self
            .store
            .read()
            .nodes
            .values()
            .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone()))
            .collect();
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id,
            role: role as i32,
            cluster_id,
            certificate,
            root_ca: self.ca.cert_pem.clone(),
            managers,
        }))
    }
}
