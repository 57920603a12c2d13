//! `adopt`: record an archive that is in a store but not in the inventory (what `bakthat check` lists; a `kill -9`
//! between storing a backup and recording it leaves one).

use anyhow::Result;
use clap::Parser;

use super::{context, human, read_password, Cli, EXIT_OK};
use crate::model::{Destination, StoredName};
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct AdoptArgs {
    /// The archive's stored name, as `bakthat check` prints it
    stored: String,
    /// The store to look in: local, s3, glacier or swift (default: the profile's default_destination)
    #[arg(short, long)]
    destination: Option<Destination>,
}

pub(super) fn run(cli: &Cli, a: &AdoptArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let stored = StoredName::from_key(a.stored.as_str());
    let dest = ctx.destination(a.destination);
    let password = read_password(stored.is_enc())?;
    let record = ops::adopt(&ctx, dest, &stored, password.as_deref())?;
    println!("adopted {} ({}) in {}, every checksum verified", record.stored_filename, human(record.size), dest);
    Ok(EXIT_OK)
}
