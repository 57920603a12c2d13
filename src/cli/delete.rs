//! `delete` (the newest backup of a name) and `delete_older_than` (by age), and how a deletion plan is printed.

use std::io::{self, IsTerminal};
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;

use super::{client, read_password, Cli, EXIT_OK};
use crate::archive::Secret;
use crate::client::Client;
use crate::model::Destination;
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct DeleteArgs {
    /// A backup name (its newest backup), or an exact stored name such as site.20261122040805.tgz
    filename: String,
    /// The store to look in: local, s3, glacier or swift (default: the profile's default_destination)
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Also delete the incremental backups that need it (without it, deleting a backup that kept incrementals
    /// need is refused)
    #[arg(long)]
    with_dependents: bool,
}

#[derive(Parser, Debug)]
pub(super) struct DeleteOlderArgs {
    /// The backup name whose old backups to delete (matched exactly)
    filename: String,
    /// s m h D W M Y units, e.g. 2W, 3M2D8h
    interval: String,
    /// The store to look in: local, s3, glacier or swift (default: the profile's default_destination)
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Only print what would be deleted
    #[arg(long)]
    dry_run: bool,
}

pub(super) fn run(cli: &Cli, a: &DeleteArgs) -> Result<i32> {
    let c = client(cli)?;
    let password = tombstone_password(&c, &a.filename)?;
    if a.with_dependents {
        for p in c.delete_with_dependents(&a.filename, a.destination, password.as_deref())? {
            println!("deleted {}  ({})", p.record.stored_filename, p.reasons.join("; "));
        }
        return Ok(EXIT_OK);
    }
    let r = c.delete(&a.filename, a.destination, password.as_deref())?;
    println!("deleted {}", r.stored_filename);
    Ok(EXIT_OK)
}

pub(super) fn older_than(cli: &Cli, a: &DeleteOlderArgs) -> Result<i32> {
    let c = client(cli)?;
    let password = if a.dry_run { None } else { tombstone_password(&c, &a.filename)? };
    let done = c.delete_older_than(&a.filename, &a.interval, a.destination, a.dry_run, password.as_deref())?;
    print_plan(&done, a.dry_run);
    Ok(EXIT_OK)
}

/// The password that authenticates a delete's tombstones (so it reaches every host of a profile with a password):
/// --password-file/--password-command or BAKTHAT_PASSWORD, else a prompt on a terminal when a backup of that name is
/// encrypted (blank: none). Without it the delete still happens, with a plain tombstone (see README, sync).
pub(super) fn tombstone_password(c: &Client, name: &str) -> Result<Option<Arc<Secret>>> {
    if let Some(s) = read_password(false)? {
        return Ok(Some(s));
    }
    let query = ops::ShowQuery { text: Some(name.to_string()), ..Default::default() };
    if !io::stdin().is_terminal()
        || !c.show(&query)?.iter().any(|r| (r.filename == name || r.stored_filename.as_str() == name) && r.is_enc())
    {
        return Ok(None);
    }
    Ok(read_password(true)?.filter(|s| !s.bytes().is_empty()))
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
