//! `find`: which backups hold a path matching a pattern, from the inventory's index copies (no network).

use std::io::{self, Write};

use anyhow::Result;
use clap::Parser;

use super::ls::{any_encrypted, password_for, write_table};
use super::{context, human, Cli, EXIT_OK};
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct FindArgs {
    /// A glob on the path or its basename: `*.jpg`, `mydir/src/*`, `report-202?.pdf` (`*` also matches `/`)
    pattern: String,
    /// Only the backups of this name
    #[arg(short, long)]
    name: Option<String>,
    /// JSON output: [{stored_filename, backup_date, backup_date_utc, path, kind, mode, uid, gid, size, mtime, mtime_utc, link?}]
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cli: &Cli, a: &FindArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let secret = password_for(any_encrypted(&ctx)?)?;
    let (found, skipped) = ops::find_paths(&ctx, &a.pattern, a.name.as_deref(), secret.as_deref())?;
    for (stored, why) in &skipped {
        eprintln!("bakthat: warning: {stored} not searched: {why}");
    }
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &found)?;
        writeln!(out)?;
        return Ok(EXIT_OK);
    }
    let rows = found
        .iter()
        .map(|f| {
            vec![
                f.backup_date_utc.clone(),
                f.stored_filename.clone(),
                human(f.entry.size),
                f.entry.mtime_utc.clone(),
                f.entry.path.clone(),
            ]
        })
        .collect();
    write_table(&mut out, rows, &[2])?;
    Ok(EXIT_OK)
}
