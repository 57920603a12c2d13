//! `rotate_backups`: delete backups of a name by the profile's grandfather-father-son policy.

use anyhow::Result;
use clap::Parser;

use super::{client, delete::print_plan, Cli, EXIT_OK};
use crate::model::Destination;
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct RotateArgs {
    filename: String,
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Only print keep/delete with the reason for each
    #[arg(long)]
    dry_run: bool,
}

pub(super) fn run(cli: &Cli, a: &RotateArgs) -> Result<i32> {
    let opts = ops::RotateOptions { destination: a.destination, dry_run: a.dry_run };
    let plan = client(cli)?.rotate(&a.filename, &opts)?;
    print_plan(&plan, a.dry_run);
    Ok(EXIT_OK)
}
