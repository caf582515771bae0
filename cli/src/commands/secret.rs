//! `shoal secret …` and `shoal config …`: the same commands over
//! `/secrets` and `/configs`.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::table::Table;
use super::{ago, print_json, s, short, Format};
use crate::api::docker;
use crate::client::{encode, filters, Client};

/// Which of the two kinds a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Secret => "/secrets",
            Kind::Config => "/configs",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

/// The most a secret or config may hold.
const MAX_SIZE: u64 = shoal_proto::MAX_SECRET_SIZE as u64;

/// `create NAME FILE|-`: the data from a file or standard input.
pub async fn create(client: &Client, kind: Kind, name: &str, file: &Path, labels: &[String]) -> anyhow::Result<()> {
    let noun = kind.noun();
    let data = if file == Path::new("-") {
        let mut data = Vec::new();
        std::io::stdin()
            .take(MAX_SIZE + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("reading the {noun} from standard input"))?;
        data
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("reading the {noun} file {}", file.display()))?;
        let mut data = Vec::new();
        f.take(MAX_SIZE + 1).read_to_end(&mut data).with_context(|| format!("reading {}", file.display()))?;
        data
    };
    if data.len() as u64 > MAX_SIZE {
        anyhow::bail!("the {noun} data is larger than {MAX_SIZE} bytes (500 KiB), the most a {noun} may hold");
    }
    let labels = labels
        .iter()
        .map(|l| l.split_once('=').unwrap_or((l.as_str(), "")))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spec = docker::file_object_spec(&Some(shoal_proto::Annotations { name: name.to_string(), labels }), &data);
    let r = client.post(&format!("{}/create", kind.path()), &docker::json(&spec)).await?;
    println!("{}", s(&r, &["ID"]));
    Ok(())
}

pub async fn ls(client: &Client, kind: Kind, quiet: bool, format: Format, filter: &[String]) -> anyhow::Result<()> {
    let mut pairs = Vec::new();
    for f in filter {
        let (k, v) =
            f.split_once('=').with_context(|| format!("bad filter \"{f}\": write KEY=VALUE (id, name, label)"))?;
        pairs.push((k.to_string(), v.to_string()));
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let path =
        if pairs.is_empty() { kind.path().to_string() } else { format!("{}?filters={}", kind.path(), filters(&pairs)) };
    let list = client.get(&path).await?;
    if format == Format::Json {
        return print_json(&list);
    }
    let mut items = list.as_array().cloned().unwrap_or_default();
    items.sort_by(|a, b| s(a, &["Spec", "Name"]).cmp(s(b, &["Spec", "Name"])));
    if quiet {
        for o in &items {
            println!("{}", s(o, &["ID"]));
        }
        return Ok(());
    }
    let mut t = Table::new(&["ID", "NAME", "CREATED", "UPDATED"]);
    for o in &items {
        t.row(vec![
            short(s(o, &["ID"])).into(),
            s(o, &["Spec", "Name"]).into(),
            ago(s(o, &["CreatedAt"])),
            ago(s(o, &["UpdatedAt"])),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn inspect(client: &Client, kind: Kind, keys: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for k in keys {
        out.push(client.get(&format!("{}/{}", kind.path(), encode(k))).await?);
    }
    print_json(&Value::Array(out))
}

pub async fn rm(client: &Client, kind: Kind, keys: &[String]) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for k in keys {
        match client.delete(&format!("{}/{}", kind.path(), encode(k))).await {
            Ok(_) => println!("{k}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed.push(k.clone());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("could not remove {} {}", kind.noun(), failed.join(", "));
    }
    Ok(())
}
