//! Delivers task status reports to the dispatcher: the latest status per
//! task, in batches, retried until a manager accepts them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::{TaskStatus, TaskStatusUpdate, UpdateTaskStatusRequest};
use tokio::sync::Notify;
use tonic::transport::Channel;

/// Pending reports, shared by the workers (which add) and the session
/// (which sends).
#[derive(Clone, Default)]
pub struct Reporter {
    pending: Arc<Mutex<BTreeMap<String, TaskStatus>>>,
    notify: Arc<Notify>,
}

impl Reporter {
    /// Queues `status` for `task_id`, replacing an unsent older one.
    pub fn report(&self, task_id: &str, status: TaskStatus) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(task_id.to_string(), status);
        self.notify.notify_one();
    }

    /// Sends queued reports over `client` until an RPC fails.
    pub async fn deliver(
        &self,
        mut client: DispatcherClient<Channel>,
        node_id: String,
        session_id: String,
    ) -> Result<(), tonic::Status> {
        loop {
            let batch: Vec<(String, TaskStatus)> = {
                let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            if batch.is_empty() {
                self.notify.notified().await;
                continue;
            }
            let updates =
                batch.iter().map(|(id, s)| TaskStatusUpdate { task_id: id.clone(), status: Some(s.clone()) }).collect();
            let mut req = tonic::Request::new(UpdateTaskStatusRequest {
                node_id: node_id.clone(),
                session_id: session_id.clone(),
                updates,
            });
            req.set_timeout(Duration::from_secs(10));
            client.update_task_status(req).await?;
            // Drop what was sent, unless a newer report replaced it meanwhile.
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (id, sent) in batch {
                if pending.get(&id) == Some(&sent) {
                    pending.remove(&id);
                }
            }
        }
    }
}
