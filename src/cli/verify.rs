//! `verify`: download one backup and check every checksum and MAC, writing no files.

use std::io::{self, IsTerminal};

use anyhow::Result;
use clap::Parser;

use crate::model::Destination;
use crate::ops::SidecarState;

use super::{client, needs_password, read_password, Cli, EXIT_FAILURE, EXIT_OK};

#[derive(Parser, Debug)]
pub(super) struct VerifyArgs {
    /// A backup name (its newest backup), or an exact stored name such as site.20261122040805.tgz
    filename: String,
    /// The store to look in: local, s3, glacier or swift (default: the profile's default_destination)
    #[arg(short, long)]
    destination: Option<Destination>,
}

pub(super) fn run(cli: &Cli, a: &VerifyArgs) -> Result<i32> {
    let client = client(cli)?;
    let mut password = read_password(false)?;
    let out = match client.verify(&a.filename, a.destination, password.as_deref()) {
        Err(e) if needs_password(&e) && io::stdin().is_terminal() => {
            password = read_password(true)?;
            client.verify(&a.filename, a.destination, password.as_deref())?
        }
        other => other?,
    };
    let stored = &out.record.stored_filename;
    let sidecar = match &out.sidecar {
        SidecarState::Missing => Some(format!("its index sidecar {stored}.index is missing from the store")),
        SidecarState::Differs(why) => Some(format!("its index sidecar {stored}.index {why}")),
        SidecarState::NotExpected | SidecarState::Matches | SidecarState::Unchecked => None,
    };
    if let Some(why) = sidecar {
        eprintln!("bakthat: {stored} reads back fine, but {why}");
        return Ok(EXIT_FAILURE);
    }
    match out.index_matches {
        Some(false) => {
            eprintln!("bakthat: {stored} reads back fine, but its entry index in the inventory differs");
            Ok(EXIT_FAILURE)
        }
        _ => {
            println!("ok {stored} ({} entries, every checksum verified)", out.entries);
            Ok(EXIT_OK)
        }
    }
}
