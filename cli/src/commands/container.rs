//! `shoal container ls` (the containers of this node).

use super::table::Table;
use super::{n, print_json, s, short, Format};
use crate::client::Client;

pub async fn ls(client: &Client, all: bool, quiet: bool, format: Format) -> anyhow::Result<()> {
    let list = client.get(if all { "/containers/json?all=1" } else { "/containers/json" }).await?;
    if format == Format::Json {
        return print_json(&list);
    }
    let list = list.as_array().cloned().unwrap_or_default();
    if quiet {
        for c in &list {
            println!("{}", short(s(c, &["Id"])));
        }
        return Ok(());
    }
    let mut t = Table::new(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]);
    for c in &list {
        let mut cmd = s(c, &["Command"]).to_string();
        if cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        t.row(vec![
            short(s(c, &["Id"])).into(),
            s(c, &["Image"]).into(),
            format!("\"{cmd}\""),
            super::human_duration(shoal_proto::now_ns() - n(c, &["Created"]) * 1_000_000_000) + " ago",
            s(c, &["Status"]).into(),
            c["Names"][0].as_str().unwrap_or("").trim_start_matches('/').into(),
        ]);
    }
    t.print();
    Ok(())
}
