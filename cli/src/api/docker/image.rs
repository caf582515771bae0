//! Images as Docker's image API shows them: listed (`GET /images/json`),
//! inspected, and what a removal or prune took away.

use bollard_stubs::models as bollard;
use shoal_runtime::{ImageDetails, ImageSummary};

use super::time;

/// A size in bytes as the specification's signed integer; no store holds more
/// than `i64::MAX` bytes, so a larger one (a corrupt record) shows as the most.
fn bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An image as `GET /images/json` lists it. shoal keeps no digests and does
/// not count sharing or users, which Docker shows as `-1` when not computed.
pub fn image_summary(i: &ImageSummary) -> bollard::ImageSummary {
    bollard::ImageSummary {
        id: i.id.clone(),
        parent_id: String::new(),
        repo_tags: i.references.clone(),
        repo_digests: Vec::new(),
        created: i.created_at / 1_000_000_000,
        size: bytes(i.size),
        shared_size: -1,
        labels: i.labels.clone().into_iter().collect(),
        containers: -1,
        manifests: None,
        descriptor: None,
    }
}

/// An image as `GET /images/{name}/json` shows it.
pub fn image_inspect(d: &ImageDetails) -> bollard::ImageInspect {
    bollard::ImageInspect {
        id: Some(d.id.clone()),
        repo_tags: Some(d.references.clone()),
        repo_digests: Some(Vec::new()),
        created: Some(time(d.created_at)),
        size: Some(bytes(d.size)),
        os: Some("linux".into()),
        architecture: Some(std::env::consts::ARCH.into()),
        config: Some(bollard::ImageConfig {
            env: Some(d.env.clone()),
            cmd: Some(d.cmd.clone()),
            entrypoint: Some(d.entrypoint.clone()),
            working_dir: Some(d.working_dir.clone()),
            user: Some(d.user.clone()),
            labels: Some(d.labels.clone().into_iter().collect()),
            exposed_ports: Some(d.exposed_ports.clone()),
            volumes: Some(d.volumes.clone()),
            stop_signal: Some(d.stop_signal.clone()),
            ..Default::default()
        }),
        root_fs: Some(bollard::ImageInspectRootFs { typ: "layers".into(), layers: Some(d.diff_ids.clone()) }),
        ..Default::default()
    }
}

/// What a removal did, from the runtime's `Untagged: <name>` and
/// `Deleted: <id>` lines, as `DELETE /images/{name}` answers it.
pub fn image_deleted(lines: &[String]) -> Vec<bollard::ImageDeleteResponseItem> {
    lines
        .iter()
        .map(|line| match line.split_once(": ") {
            Some(("Untagged", name)) => {
                bollard::ImageDeleteResponseItem { untagged: Some(name.to_string()), deleted: None }
            }
            Some(("Deleted", id)) => bollard::ImageDeleteResponseItem { untagged: None, deleted: Some(id.to_string()) },
            _ => bollard::ImageDeleteResponseItem { untagged: None, deleted: Some(line.clone()) },
        })
        .collect()
}

/// What `POST /images/prune` took: the names untagged, then the images
/// deleted, and the bytes freed.
pub fn image_prune(untagged: &[String], deleted: &[String], reclaimed: u64) -> bollard::ImagePruneResponse {
    let untagged =
        untagged.iter().map(|n| bollard::ImageDeleteResponseItem { untagged: Some(n.clone()), deleted: None });
    let deleted =
        deleted.iter().map(|id| bollard::ImageDeleteResponseItem { untagged: None, deleted: Some(id.clone()) });
    bollard::ImagePruneResponse {
        images_deleted: Some(untagged.chain(deleted).collect()),
        space_reclaimed: Some(bytes(reclaimed)),
    }
}
