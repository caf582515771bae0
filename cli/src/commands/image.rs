//! `shoal image …`.

use std::path::Path;

use anyhow::Context;
use bollard_stubs::models as bollard;
use serde_json::Value;

use super::table::Table;
use super::{answer, print_json, short, Format};
use crate::api::docker::types;
use crate::client::{encode, Client};

/// Reads a rootfs tarball, or tars a directory, into memory.
fn rootfs_tar(src: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(src).with_context(|| format!("{}: no such file or directory", src.display()))?;
    if meta.is_dir() {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", src)
            .with_context(|| format!("packing the directory {} into a tar", src.display()))?;
        return builder.into_inner().context("finishing the tar");
    }
    std::fs::read(src).with_context(|| format!("reading {}", src.display()))
}

/// `--change` values as query parameters, checked here first so a bad one fails before
/// anything is sent.
fn changes_query(changes: &[String]) -> anyhow::Result<String> {
    shoal_runtime::CommitChanges::parse(changes)?;
    Ok(changes.iter().map(|c| format!("&changes={}", encode(c))).collect())
}

pub async fn import(client: &Client, src: &Path, reference: &str, changes: &[String]) -> anyhow::Result<()> {
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (reference, "latest"),
    };
    let changes = changes_query(changes)?;
    let body = rootfs_tar(src)?;
    let v = client
        .post_raw(
            &format!("/images/create?fromSrc=-&repo={}&tag={}{changes}", encode(repo), encode(tag)),
            body,
            "application/x-tar",
        )
        .await?;
    let imported: bollard::CreateImageInfo = answer(v, "POST /images/create")?;
    println!("{}", imported.status.unwrap_or_default());
    Ok(())
}

fn human_size(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string() + units[i]
    }
}

pub async fn ls(client: &Client, quiet: bool, format: Format) -> anyhow::Result<()> {
    let images = client.get("/images/json").await?;
    if format == Format::Json {
        return print_json(&images);
    }
    let list: Vec<bollard::ImageSummary> = answer(images, "GET /images/json")?;
    if quiet {
        for i in &list {
            println!("{}", short(i.id.trim_start_matches("sha256:")));
        }
        return Ok(());
    }
    let mut t = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    for i in &list {
        let id = short(i.id.trim_start_matches("sha256:")).to_string();
        let created = i.created.saturating_mul(1_000_000_000);
        let created = super::human_duration(shoal_proto::now_ns().saturating_sub(created)) + " ago";
        if i.repo_tags.is_empty() {
            t.row(vec!["<none>".into(), "<none>".into(), id.clone(), created.clone(), human_size(i.size)]);
        }
        for r in &i.repo_tags {
            let (repo, tag) = r.rsplit_once(':').unwrap_or((r, "latest"));
            t.row(vec![repo.into(), tag.into(), id.clone(), created.clone(), human_size(i.size)]);
        }
    }
    t.print();
    Ok(())
}

pub async fn tag(client: &Client, source: &str, target: &str) -> anyhow::Result<()> {
    let (repo, tag) = match target.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (target, "latest"),
    };
    client
        .post(&format!("/images/{}/tag?repo={}&tag={}", encode(source), encode(repo), encode(tag)), &Value::Null)
        .await?;
    Ok(())
}

pub async fn rm(client: &Client, images: &[String], force: bool) -> anyhow::Result<()> {
    for image in images {
        let r = client.delete(&format!("/images/{}?force={}", encode(image), u8::from(force))).await?;
        let removed: Vec<bollard::ImageDeleteResponseItem> = answer(r, "DELETE /images/{name}")?;
        for item in removed {
            if let Some(name) = item.untagged {
                println!("Untagged: {name}");
            }
            if let Some(id) = item.deleted {
                println!("Deleted: {id}");
            }
        }
    }
    Ok(())
}

pub async fn inspect(client: &Client, images: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for image in images {
        out.push(client.get(&format!("/images/{}/json", encode(image))).await?);
    }
    print_json(&Value::Array(out))
}

pub async fn prune(client: &Client) -> anyhow::Result<()> {
    let r = client.post("/images/prune", &Value::Null).await?;
    let pruned: bollard::ImagePruneResponse = answer(r, "POST /images/prune")?;
    for id in pruned.images_deleted.unwrap_or_default().into_iter().filter_map(|d| d.deleted) {
        println!("deleted: {id}");
    }
    Ok(())
}

/// Writes the archive to `output` as it arrives (never whole in memory); a failed save
/// leaves no partial file behind.
pub async fn save(client: &Client, images: &[String], output: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let q: Vec<String> = images.iter().map(|i| format!("names={}", encode(i))).collect();
    let mut file = std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut written: std::io::Result<()> = Ok(());
    let received = client
        .get_stream(&format!("/images/get?{}", q.join("&")), |chunk| {
            if written.is_ok() {
                written = file.write_all(chunk);
            }
        })
        .await;
    let result = received
        .and_then(|()| written.with_context(|| format!("writing {}", output.display())))
        .and_then(|()| file.sync_all().with_context(|| format!("writing {}", output.display())));
    if result.is_err() {
        let _ = std::fs::remove_file(output);
    }
    result
}

pub async fn load(client: &Client, input: &Path) -> anyhow::Result<()> {
    let body = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let r = client.post_raw("/images/load", body, "application/x-tar").await?;
    let loaded: types::LoadResponse = answer(r, "POST /images/load")?;
    print!("{}", loaded.stream.unwrap_or_default());
    Ok(())
}

pub async fn commit(
    client: &Client,
    container: &str,
    reference: &str,
    changes: &[String],
    message: Option<&str>,
) -> anyhow::Result<()> {
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (reference, "latest"),
    };
    let mut query = format!("container={}&repo={}&tag={}", encode(container), encode(repo), encode(tag));
    query.push_str(&changes_query(changes)?);
    if let Some(m) = message {
        query.push_str(&format!("&comment={}", encode(m)));
    }
    let r = client.post(&format!("/commit?{query}"), &Value::Null).await?;
    let committed: types::IdResponse = answer(r, "POST /commit")?;
    println!("{}", committed.id);
    Ok(())
}
