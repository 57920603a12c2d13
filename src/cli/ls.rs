//! `ls`: the entries of one backup, from the inventory's copy of its entry index (no network).

use std::io::{self, IsTerminal, Write};

use anyhow::Result;
use clap::Parser;

use super::{context, read_password, Cli, EXIT_OK};
use crate::model::Destination;
use crate::ops::{self, Ctx, Listed};

#[derive(Parser, Debug)]
pub(super) struct LsArgs {
    /// A backup name (its newest backup) or an exact stored name
    name: String,
    /// Only this file or directory subtree (a path as `ls` prints it, starting with the backup's basename)
    path: Option<String>,
    /// Only look in this destination
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Mode, owner, size, modification time (UTC), path and symlink target
    #[arg(short, long)]
    long: bool,
    /// JSON output: {stored_filename, backup_date, entries: [{path, kind, mode, uid, gid, size, mtime, mtime_utc, link?}]}
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cli: &Cli, a: &LsArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let encrypted = ctx.inventory.newest(&a.name, a.destination)?.is_some_and(|r| r.is_enc());
    let secret = password_for(encrypted)?;
    let listing = ops::ls(&ctx, &a.name, a.destination, a.path.as_deref(), secret.as_deref())?;
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &listing)?;
        writeln!(out)?;
    } else if a.long {
        let rows = listing.entries.iter().map(long_row).collect();
        write_table(&mut out, rows, &[2])?;
    } else {
        for e in &listing.entries {
            writeln!(out, "{}", e.path)?;
        }
    }
    Ok(EXIT_OK)
}

/// The password for reading encrypted index copies: the flags or BAKTHAT_PASSWORD, and a prompt on a terminal
/// when `needed`.
pub(super) fn password_for(needed: bool) -> Result<Option<std::sync::Arc<crate::archive::Secret>>> {
    let secret = read_password(false)?;
    if secret.is_none() && needed && io::stdin().is_terminal() {
        return read_password(true);
    }
    Ok(secret)
}

/// Whether any non-deleted backup is encrypted (so that searching them all needs a password).
pub(super) fn any_encrypted(ctx: &Ctx) -> Result<bool> {
    Ok(ops::show(ctx, &ops::ShowQuery::default())?.iter().any(|r| r.is_enc()))
}

/// `drwxr-xr-x`-style mode of an entry.
pub(super) fn mode_string(e: &Listed) -> String {
    let t = match e.kind {
        "dir" => 'd',
        "symlink" => 'l',
        "hardlink" => 'h',
        "other" => '?',
        _ => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// One `ls --long` row: mode, uid/gid, size, mtime, path [-> target].
fn long_row(e: &Listed) -> Vec<String> {
    let path = match &e.link {
        Some(l) if e.kind == "symlink" => format!("{} -> {l}", e.path),
        Some(l) => format!("{} link to {l}", e.path),
        None => e.path.clone(),
    };
    vec![mode_string(e), format!("{}/{}", e.uid, e.gid), e.size.to_string(), e.mtime_utc.clone(), path]
}

/// Writes rows as columns separated by two spaces, padded to the widest cell (the last column is not padded;
/// columns in `right` are right-aligned).
pub(super) fn write_table(out: &mut impl Write, rows: Vec<Vec<String>>, right: &[usize]) -> io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            if c + 1 == row.len() {
                line.push_str(cell);
            } else if right.contains(&c) {
                line.push_str(&format!("{cell:>w$}", w = widths[c]));
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
