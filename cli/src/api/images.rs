//! `/images`: import and list.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, ApiResult};
use crate::daemon::Daemon;

#[derive(Deserialize)]
pub struct CreateQuery {
    #[serde(rename = "fromSrc")]
    from_src: Option<String>,
    #[serde(rename = "fromImage")]
    from_image: Option<String>,
    repo: Option<String>,
    tag: Option<String>,
}

/// `POST /images/create?fromSrc=-&repo=NAME&tag=TAG` with a rootfs tar as
/// the body: Docker's `import`.
pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<CreateQuery>,
    body: Body,
) -> ApiResult<Json<Value>> {
    if let Some(image) = q.from_image {
        return Err(ApiError::not_found(format!(
            "pulling {image} from a registry is not supported: import a rootfs with \"shoal image import\""
        )));
    }
    if q.from_src.as_deref() != Some("-") {
        return Err(ApiError::bad_request("only fromSrc=- (the tarball in the request body) is supported"));
    }
    let repo = q.repo.unwrap_or_default();
    if repo.is_empty() {
        return Err(ApiError::bad_request("repo is required: name the image (e.g. repo=demo&tag=1)"));
    }
    let reference = match q.tag.filter(|t| !t.is_empty()) {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo,
    };
    let tmp_dir = daemon.data_root().join("tmp");
    std::fs::create_dir_all(&tmp_dir)
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp_dir.display())))?;
    let tmp = tmp_dir.join(format!("import-{}.tar", shoal_manager::identity::new_id()));
    let result = async {
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp.display())))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
            file.write_all(&chunk).map_err(|e| ApiError::internal(format!("writing {}: {e}", tmp.display())))?;
        }
        drop(file);
        let rt = daemon.runtime.clone();
        let path = tmp.clone();
        let summary = tokio::task::spawn_blocking(move || rt.import_image(&path, &reference))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        Ok::<_, ApiError>(summary)
    }
    .await;
    let _ = std::fs::remove_file(&tmp);
    let summary = result?;
    Ok(Json(json!({ "status": summary.id })))
}

pub async fn list(State(daemon): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let rt = daemon.runtime.clone();
    let images = tokio::task::spawn_blocking(move || rt.list_images())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(Value::Array(
        images
            .into_iter()
            .map(|i| {
                json!({
                    "Id": i.id,
                    "ParentId": "",
                    "RepoTags": i.references,
                    "RepoDigests": [],
                    "Created": i.created_at / 1_000_000_000,
                    "Size": i.size,
                    "SharedSize": -1,
                    "Labels": {},
                    "Containers": -1,
                })
            })
            .collect(),
    )))
}
