//! `check`: the whole inventory against its stores (restic's `check`); `--read-data` and `--read-data-subset` also
//! read contents. Prints one line per problem and per archive without a row (with the command that adopts it), then
//! a one-line summary; exits 1 when anything is wrong.

use std::io::{self, IsTerminal};

use anyhow::Result;
use clap::Parser;

use super::{context, read_password, Cli, EXIT_FAILURE, EXIT_OK};
use crate::config::DEFAULT_PROFILE;
use crate::model::Destination;
use crate::ops::{self, CheckOptions, ReadData, Subset};

#[derive(Parser, Debug)]
pub(super) struct CheckArgs {
    /// Only this destination (repeatable; default: every destination with backups)
    #[arg(short, long)]
    destination: Vec<Destination>,
    /// Also download every backup and check every checksum and MAC
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read a part of the backups, the same part on every run: n/m (the n-th of m parts) or p% (p percent)
    #[arg(long, value_name = "n/m|p%", value_parser = Subset::parse)]
    read_data_subset: Option<Subset>,
}

pub(super) fn run(cli: &Cli, a: &CheckArgs) -> Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => ReadData::Subset(*s),
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let ctx = context(cli)?;
    let any_enc = ctx.inventory.search(&Default::default())?.iter().any(|r| r.is_enc());
    let mut password = read_password(false)?;
    if password.is_none() && any_enc && io::stdin().is_terminal() {
        password = read_password(true)?;
    }
    let opts = CheckOptions { destinations: a.destination.clone(), read_data, password };
    let report = ops::check(&ctx, &opts)?;
    for p in &report.problems {
        println!("{p}");
    }
    for (stored, why) in &report.not_read {
        println!("{stored}: contents not read ({why})");
    }
    for o in &report.orphans {
        println!("{}: {} has no inventory row; adopt it with: {}", o.destination, o.stored, adopt_command(cli, o));
    }
    if report.is_ok() {
        if !cli.quiet {
            println!("ok: {}", report.summary());
        }
        return Ok(EXIT_OK);
    }
    eprintln!("bakthat: check failed: {}", report.summary());
    Ok(EXIT_FAILURE)
}

/// The command line that adopts an orphan, with this run's --config and --profile.
fn adopt_command(cli: &Cli, o: &ops::Orphan) -> String {
    let mut words = vec!["bakthat".to_string()];
    if let Some(c) = &cli.config {
        words.push(format!("--config {}", shell_word(&c.display().to_string())));
    }
    if cli.profile != DEFAULT_PROFILE {
        words.push(format!("-p {}", shell_word(&cli.profile)));
    }
    words.push(format!("adopt {} -d {}", shell_word(o.stored.as_str()), shell_word(o.destination.as_str())));
    words.join(" ")
}

/// A word as a POSIX shell reads it back: as is when plain, else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:=@+,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
