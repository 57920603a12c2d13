//! `show`: list backups from the inventory (no network), as 0.6 printed them or as JSON.

use std::io::{self, Write};

use anyhow::Result;
use clap::Parser;

use super::{context, human, Cli, EXIT_OK};
use crate::model::{utc, BackupRecord, Destination};
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct ShowArgs {
    /// Only backups whose name or stored name contains this text
    query: Option<String>,
    /// Only these destinations (repeatable; default: all)
    #[arg(short, long)]
    destination: Vec<Destination>,
    /// Only backups with all these tags (space separated)
    #[arg(short, long)]
    tags: Option<String>,
    /// JSON output
    #[arg(long)]
    json: bool,
    /// Include deleted backups
    #[arg(long)]
    deleted: bool,
}

pub(super) fn run(cli: &Cli, a: &ShowArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let q = ops::ShowQuery {
        text: a.query.clone(),
        destinations: a.destination.clone(),
        tags: a.tags.iter().cloned().collect(),
        include_deleted: a.deleted,
    };
    let rows = ops::show(&ctx, &q)?;
    let mut out = io::stdout().lock();
    if a.json {
        // Every row says its store, "" when unknown (the record leaves an unknown one out of journal entries).
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("store".into(), r.store.as_str().into());
                }
                Ok(v)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        for r in &rows {
            writeln!(out, "{}", show_line(r))?;
        }
    }
    Ok(EXIT_OK)
}

/// One `show` line, as 0.6 printed it: date, backend, size, stored name, (tags); then the store holding it.
fn show_line(r: &BackupRecord) -> String {
    let tags = if r.tags.is_empty() { String::new() } else { format!(" ({})", r.tags) };
    let deleted = if r.is_deleted { " [deleted]" } else { "" };
    format!(
        "{}\t{:8}\t{:8}\t{}{tags}{deleted}\t{}",
        utc(r.backup_date).format("%Y-%m-%dT%H:%M:%S"),
        r.backend,
        human(r.size),
        r.stored_filename,
        r.store
    )
}
