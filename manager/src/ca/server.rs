//! The `NodeCA` service: issues node certificates to joiners that present a
//! valid join token, registering them as nodes of the swarm, and renews the
//! certificates of members (before expiry, or for a new role after promote or
//! demote). Any manager serves it; its writes go through the leader.

use std::time::Duration;

use rand::Rng;
use shoal_proto::node_ca_server::NodeCa;
use shoal_proto::{
    IssueNodeCertificateRequest, IssueNodeCertificateResponse, ManagerStatus, Node, NodeRole, NodeSpec, NodeState,
    NodeStatus, Reachability, RenewNodeCertificateRequest,
};
use tonic::{Request, Response, Status};

use super::{parse_token, RootCa, DEFAULT_CERT_LIFETIME};
use crate::control::propose::{create, update};
use crate::control::{Proposer, WriteError};
use crate::identity::new_id;
use crate::store::{Store, StoreError};

/// The CA service of a manager.
pub struct NodeCaService {
    pub store: Store,
    pub proposer: Proposer,
    pub ca: RootCa,
}

/// A manager's raft membership for a node that is to be one.
fn new_manager_status(addr: &str) -> Result<ManagerStatus, Status> {
    if addr.is_empty() {
        return Err(Status::invalid_argument(
            "a manager needs an address other managers can reach (host:port); this client sent none",
        ));
    }
    Ok(ManagerStatus {
        raft_id: rand::rng().random_range(1..u64::MAX),
        addr: addr.to_string(),
        leader: false,
        reachability: Reachability::Unknown as i32,
    })
}

impl NodeCaService {
    fn cluster(&self) -> Result<(String, shoal_proto::JoinTokens, Duration), Status> {
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
        Ok((c.id.clone(), c.join_tokens.clone().unwrap_or_default(), lifetime))
    }

    fn managers(&self) -> Vec<String> {
        self.store.read().nodes.values().filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone())).collect()
    }

    fn response(
        &self,
        node_id: String,
        cluster_id: String,
        role: NodeRole,
        certificate: String,
        raft_id: u64,
    ) -> IssueNodeCertificateResponse {
        IssueNodeCertificateResponse {
            node_id,
            role: role as i32,
            cluster_id,
            certificate,
            root_ca: self.ca.cert_pem.clone(),
            managers: self.managers(),
            root_ca_key: if role == NodeRole::Manager { self.ca.key_pem.clone() } else { String::new() },
            raft_id,
        }
    }
}

#[tonic::async_trait]
impl NodeCa for NodeCaService {
    async fn issue_node_certificate(
        &self,
        request: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let req = request.into_inner();
        let (digest, _) = parse_token(&req.token).map_err(|e| Status::invalid_argument(e.to_string()))?;
        crate::dispatcher::check_node_report(req.description.as_ref(), &[&req.addr, &req.manager_addr])?;
        if digest != self.ca.digest() {
            return Err(Status::permission_denied(
                "the join token's CA digest does not match this swarm's CA: the token belongs to another swarm",
            ));
        }
        let (cluster_id, tokens, lifetime) = self.cluster()?;
        let role = if req.token == tokens.worker {
            NodeRole::Worker
        } else if req.token == tokens.manager {
            NodeRole::Manager
        } else {
            return Err(Status::permission_denied(
                "invalid join token: it was rotated or mistyped; get the current one with `shoal swarm join-token worker` (or manager)",
            ));
        };
        let node_id = new_id();
        let certificate = self
            .ca
            .issue(&req.csr, &node_id, role, &cluster_id, lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let manager_status =
            if role == NodeRole::Manager { Some(new_manager_status(&req.manager_addr)?) } else { None };
        let raft_id = manager_status.as_ref().map(|m| m.raft_id).unwrap_or(0);
        let mut node = Node {
            id: node_id.clone(),
            spec: Some(NodeSpec::default()),
            description: req.description,
            status: Some(NodeStatus { state: NodeState::Unknown as i32, addr: req.addr, ..Default::default() }),
            manager_status,
            ..Default::default()
        };
        node.set_role(role);
        if let Some(spec) = node.spec.as_mut() {
            spec.set_desired_role(role);
        }
        self.proposer.propose(vec![create(node)]).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(self.response(node_id, cluster_id, role, certificate, raft_id)))
    }

    async fn renew_node_certificate(
        &self,
        request: Request<RenewNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let Some(caller) = super::caller(&request) else {
            return Err(Status::unauthenticated("renewing needs the node's current certificate"));
        };
        let req = request.into_inner();
        crate::dispatcher::check_node_report(None, &[&req.manager_addr])?;
        let (cluster_id, _, lifetime) = self.cluster()?;
        if caller.cluster_id != cluster_id {
            return Err(Status::permission_denied("the certificate belongs to another swarm"));
        }
        for _ in 0..5 {
            let Some(mut node) = self.store.read().nodes.get(&caller.node_id).cloned() else {
                return Err(Status::permission_denied(format!(
                    "node {} was removed from the swarm: its certificate is no longer valid",
                    caller.node_id
                )));
            };
            let role = node.spec.as_ref().map(|s| s.desired_role()).unwrap_or(node.role());
            let certificate = self
                .ca
                .issue(&req.csr, &node.id, role, &cluster_id, lifetime)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let changed = match role {
                NodeRole::Manager if node.manager_status.is_none() => {
                    node.manager_status = Some(new_manager_status(&req.manager_addr)?);
                    true
                }
                NodeRole::Worker if node.manager_status.is_some() => {
                    node.manager_status = None;
                    true
                }
                _ => false,
            } || node.role() != role;
            node.set_role(role);
            let raft_id = node.manager_status.as_ref().map(|m| m.raft_id).unwrap_or(0);
            let response = self.response(node.id.clone(), cluster_id.clone(), role, certificate, raft_id);
            if !changed {
                return Ok(Response::new(response));
            }
            match self.proposer.propose(vec![update(node)]).await {
                Ok(_) => return Ok(Response::new(response)),
                Err(WriteError::Rejected(StoreError::VersionConflict { .. })) => continue,
                Err(e) => return Err(Status::unavailable(e.to_string())),
            }
        }
        Err(Status::aborted("renewing kept conflicting with other writes to the node; retry"))
    }
}
