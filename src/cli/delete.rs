//! `delete` (the newest backup of a name) and `delete_older_than` (by age), and how a deletion plan is printed.

use anyhow::Result;
use clap::Parser;

use super::{client, Cli, EXIT_OK};
use crate::model::Destination;
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct DeleteArgs {
    filename: String,
    #[arg(short, long)]
    destination: Option<Destination>,
}

#[derive(Parser, Debug)]
pub(super) struct DeleteOlderArgs {
    filename: String,
    /// s m h D W M Y units, e.g. 2W, 3M2D8h
    interval: String,
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Only print what would be deleted
    #[arg(long)]
    dry_run: bool,
}

pub(super) fn run(cli: &Cli, a: &DeleteArgs) -> Result<i32> {
    let r = client(cli)?.delete(&a.filename, a.destination)?;
    println!("deleted {}", r.stored_filename);
    Ok(EXIT_OK)
}

pub(super) fn older_than(cli: &Cli, a: &DeleteOlderArgs) -> Result<i32> {
    let c = client(cli)?;
    let done = c.delete_older_than(&a.filename, &a.interval, a.destination, a.dry_run)?;
    print_plan(&done, a.dry_run);
    Ok(EXIT_OK)
}

/// One line per backup: keep, would delete or deleted, with the reasons.
pub(super) fn print_plan(plan: &[ops::Planned], dry_run: bool) {
    for p in plan {
        let verb = match (p.keep, dry_run) {
            (true, _) => "keep",
            (false, true) => "would delete",
            (false, false) => "deleted",
        };
        println!("{verb:12} {}  {}", p.record.stored_filename, p.reasons.join("; "));
    }
    if plan.is_empty() {
        println!("nothing to delete");
    }
}
