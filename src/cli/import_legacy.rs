//! `import-legacy`: import a bakthat 0.6 database (`~/.bakthat.sqlite`) into the inventory; it is never modified.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Parser;

use super::EXIT_OK;
use crate::inventory::Inventory;

#[derive(Parser, Debug)]
pub(super) struct ImportLegacyArgs {
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

pub(super) fn run(a: &ImportLegacyArgs) -> Result<i32> {
    let path = match &a.db {
        Some(p) => p.clone(),
        None => dirs::home_dir().ok_or_else(|| anyhow!("no home directory; pass --db"))?.join(".bakthat.sqlite"),
    };
    let inv = Inventory::open(Inventory::default_path()?)?;
    let report = inv.import_legacy(&path)?;
    for refused in &report.backups_refused {
        eprintln!("bakthat: warning: {refused}");
    }
    println!("{}", report.summary());
    // A refused row is a problem in the 0.6 database worth a non-zero exit, as a rejected journal entry is.
    Ok(if report.backups_refused.is_empty() { EXIT_OK } else { super::EXIT_FAILURE })
}
