//! `verify`: download one backup and check every checksum and MAC, writing no files.

use std::io::{self, IsTerminal};

use anyhow::Result;
use clap::Parser;

use super::{client, needs_password, read_password, Cli, EXIT_FAILURE, EXIT_OK};

#[derive(Parser, Debug)]
pub(super) struct VerifyArgs {
    filename: String,
    #[arg(short, long)]
    destination: Option<String>,
}

pub(super) fn run(cli: &Cli, a: &VerifyArgs) -> Result<i32> {
    let client = client(cli)?;
    let mut password = read_password(false)?;
    let out = match client.verify(&a.filename, a.destination.as_deref(), password.as_deref()) {
        Err(e) if needs_password(&e) && io::stdin().is_terminal() => {
            password = read_password(true)?;
            client.verify(&a.filename, a.destination.as_deref(), password.as_deref())?
        }
        other => other?,
    };
    match out.index_matches {
        Some(false) => {
            eprintln!(
                "bakthat: {} reads back fine, but its entry index in the inventory differs",
                out.record.stored_filename
            );
            Ok(EXIT_FAILURE)
        }
        _ => {
            println!("ok {} ({} entries, every checksum verified)", out.record.stored_filename, out.entries);
            Ok(EXIT_OK)
        }
    }
}
