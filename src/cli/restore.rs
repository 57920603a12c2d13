//! `restore`: restore the newest backup of a name (or an exact stored name), asking for its password if needed;
//! exit 1 when the backup marks files as incomplete (read part way at backup time), though they are restored.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use super::{client, human, needs_password, read_password, Cli, EXIT_FAILURE, EXIT_OK};
use crate::model::Destination;
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct RestoreArgs {
    /// A backup name (its newest backup), or an exact stored name such as site.20261122040805.tgz
    filename: String,
    /// The store to look in: local, s3, glacier or swift (default: the profile's default_destination)
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Directory to restore into (default: the current directory)
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Overwrite existing files
    #[arg(long)]
    force: bool,
    /// Restore only this file or directory subtree (repeatable; a path as `bakthat ls` prints it), fetching only
    /// the parts of the archive that hold it
    #[arg(long = "path", value_name = "P")]
    paths: Vec<String>,
}

pub(super) fn run(cli: &Cli, a: &RestoreArgs) -> Result<i32> {
    let client = client(cli)?;
    let mut opts = ops::RestoreOptions {
        name: a.filename.clone(),
        destination: a.destination,
        to: a.to.clone(),
        force: a.force,
        password: read_password(false)?,
        paths: a.paths.clone(),
    };
    // Ask before restoring rather than after a failed try, so that restore hooks run once.
    let encrypted = client.inventory().newest(&a.filename, a.destination)?.is_some_and(|r| r.is_enc());
    if encrypted && opts.password.is_none() && io::stdin().is_terminal() {
        opts.password = read_password(true)?;
    }
    let out = match client.restore(&opts) {
        Err(e) if needs_password(&e) && io::stdin().is_terminal() => {
            opts.password = read_password(true)?;
            client.restore(&opts)?
        }
        other => other?,
    };
    println!("restored {} ({} entries, {})", out.record.stored_filename, out.entries, human(out.bytes));
    for p in &out.written {
        println!("  {}", p.display());
    }
    // Restored, but not as they were: their read failed part way at backup time (each named in a warning above).
    if !out.incomplete.is_empty() {
        eprintln!(
            "bakthat: {} file(s) were incomplete at backup time and end in zeros that were not in the original (see the \
             warnings above)",
            out.incomplete.len()
        );
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_OK)
}
