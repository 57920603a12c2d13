//! `show`: list backups from the inventory (no network): a table on a terminal, tab-separated lines in a pipe,
//! or JSON.

use std::io::{self, IsTerminal, Write};

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
        let rows: Vec<serde_json::Value> = rows.iter().map(json_row).collect::<Result<_, _>>()?;
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        // On stderr, so that a pipe reading rows sees none.
        eprintln!("no backups yet{}", if a.query.is_some() || a.tags.is_some() { " that match" } else { "" });
        return Ok(EXIT_OK);
    }
    if io::stdout().is_terminal() {
        write_table(&mut out, &rows)?;
    } else {
        for r in &rows {
            writeln!(out, "{}", show_line(r))?;
        }
    }
    Ok(EXIT_OK)
}

/// A row of `show --json`: the record's own fields (0.6's columns, `metadata`, `store`: `""` when unknown), with
/// `tags` as a list and, beside each epoch, its ISO 8601 UTC date; `encrypted`, `host` and `source` (the path that
/// was backed up; `null` for backups made before 0.7 recorded it) read from the metadata.
fn json_row(r: &BackupRecord) -> Result<serde_json::Value, serde_json::Error> {
    let mut v = serde_json::to_value(r)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("store".into(), r.store.as_str().into());
        o.insert("tags".into(), r.tag_list().into());
        o.insert("date".into(), iso(r.backup_date).into());
        o.insert("last_updated_date".into(), iso(r.last_updated).into());
        o.insert("encrypted".into(), r.is_enc().into());
        o.insert("host".into(), r.client().into());
        o.insert("source".into(), r.source().into());
        o.insert("kind".into(), if r.parent().is_some() { "incremental" } else { "full" }.into());
        o.insert("parent".into(), r.parent().map(|p| p.to_string()).into());
    }
    Ok(v)
}

/// ` [incremental of PARENT]` for an incremental backup.
fn chain_mark(r: &BackupRecord) -> String {
    r.parent().map(|p| format!(" [incremental of {p}]")).unwrap_or_default()
}

fn iso(epoch: i64) -> String {
    utc(epoch).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One `show` line for pipes and scripts, tab-separated: date (UTC), destination, size, encryption, stored name with
/// its (tags), [incremental of PARENT] and [deleted], and the store holding it. The Python package's
/// `bakthat.show()` prints these too.
pub fn show_line(r: &BackupRecord) -> String {
    let tags = if r.tags.is_empty() { String::new() } else { format!(" ({})", r.tags) };
    let deleted = format!("{}{}", chain_mark(r), if r.is_deleted { " [deleted]" } else { "" });
    let enc = if r.is_enc() { "encrypted" } else { "plain" };
    format!(
        "{}\t{}\t{}\t{enc}\t{}{tags}{deleted}\t{}",
        iso(r.backup_date),
        r.backend,
        human(r.size),
        r.stored_filename,
        r.store
    )
}

/// The terminal's table: a header and aligned columns.
fn write_table(out: &mut impl Write, rows: &[BackupRecord]) -> io::Result<()> {
    let header = ["DATE (UTC)", "DEST", "SIZE", "ENCRYPTED", "BACKUP", "TAGS", "STORE"].map(String::from);
    let mut table = vec![header];
    for r in rows {
        let deleted = format!("{}{}", chain_mark(r), if r.is_deleted { " [deleted]" } else { "" });
        table.push([
            utc(r.backup_date).format("%Y-%m-%d %H:%M:%SZ").to_string(),
            r.backend.to_string(),
            human(r.size),
            if r.is_enc() { "yes" } else { "no" }.to_string(),
            format!("{}{deleted}", r.stored_filename),
            r.tags.clone(),
            r.store.to_string(),
        ]);
    }
    let widths: Vec<usize> =
        (0..7).map(|c| table.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // Sizes right-aligned, the rest left; no trailing blanks.
            if c == 2 {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if c + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
            if c + 1 < row.len() {
                line.push_str("  ");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
