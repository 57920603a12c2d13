//! `diff`: the paths added, removed and changed between two backups, from the inventory's index copies.

use std::io::{self, Write};

use anyhow::Result;
use clap::Parser;

use super::ls::password_for;
use super::{context, Cli, EXIT_OK};
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct DiffArgs {
    /// The older backup: a name (its newest backup) or an exact stored name
    a: String,
    /// The newer backup: a name (its newest backup) or an exact stored name
    b: String,
    /// JSON output: {from, to, changes: [{change: "+"|"-"|"M", path, fields?: ["size","mtime","mode","type","link"]}]}
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cli: &Cli, a: &DiffArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let mut encrypted = false;
    for n in [&a.a, &a.b] {
        encrypted |= ctx.inventory.newest(n, None)?.is_some_and(|r| r.is_enc());
    }
    let secret = password_for(encrypted)?;
    let d = ops::diff(&ctx, &a.a, &a.b, secret.as_deref())?;
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
        return Ok(EXIT_OK);
    }
    for c in &d.changes {
        if c.fields.is_empty() {
            writeln!(out, "{}  {}", c.change, c.path)?;
        } else {
            writeln!(out, "{}  {}  ({})", c.change, c.path, c.fields.join(", "))?;
        }
    }
    Ok(EXIT_OK)
}
