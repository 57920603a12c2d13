//! `backup`: pack a file or directory and store it (the client runs the automatic sync after it).

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};

use super::{client, excludes, human, Cli, EXIT_FAILURE, EXIT_OK};
use crate::archive::Secret;
use crate::model::{Compression, Destination};
use crate::ops;

#[derive(Parser, Debug)]
pub(super) struct BackupArgs {
    /// File or directory to back up
    filename: Option<PathBuf>,
    /// local, s3, glacier or swift (default: the profile's default_destination, else local)
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Ask for a password when BAKTHAT_PASSWORD is not set
    #[arg(long, value_enum, default_value = "yes")]
    prompt: YesNo,
    /// Space-separated tags
    #[arg(short, long)]
    tags: Option<String>,
    /// Periodic-backup monitoring key (posted to the profile's webhook_url)
    #[arg(short, long)]
    key: Option<String>,
    /// A gitignore-style exclude file, merged with .bakthatexclude and .gitignore
    #[arg(long, value_name = "PATH")]
    exclude_file: Option<PathBuf>,
    /// Exclude paths matching PATTERN (gitignore syntax, relative to the source; repeatable)
    #[arg(long = "exclude", value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Exclude the contents of directories holding a valid CACHEDIR.TAG (the tag file itself is stored)
    #[arg(long)]
    exclude_caches: bool,
    /// Exclude directories that hold a file or directory named FILE (repeatable)
    #[arg(long, value_name = "FILE")]
    exclude_if_present: Vec<String>,
    /// Ignore .gitignore and .bakthatexclude (other exclude options still apply)
    #[arg(long)]
    no_ignore: bool,
    /// Store nothing, contact no store: print what would be stored and what the rules exclude
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Stay on the source's file system: directories of other mounts are stored empty, not descended into
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Store with the REDUCED_REDUNDANCY storage class (S3)
    #[arg(long)]
    s3_reduced_redundancy: bool,
    /// Name the backup instead of using the basename
    #[arg(long)]
    name: Option<String>,
    /// gzip (.tgz, readable by bakthat 0.6) or zstd (.tar.zst: faster to back up and restore); default: the
    /// profile's `compression`, else gzip
    #[arg(long, value_name = "gzip|zstd")]
    compression: Option<Compression>,
    /// A full backup, whatever the profile's `incremental:` policy says (it starts a new chain under one)
    #[arg(long, conflicts_with = "incremental")]
    full: bool,
    /// Store only what changed since the newest backup of the same name, source and store (GNU tar incremental)
    #[arg(long)]
    incremental: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum YesNo {
    Yes,
    No,
}

pub(super) fn run(cli: &Cli, a: &BackupArgs) -> Result<i32> {
    let source = match &a.filename {
        Some(p) => p.clone(),
        None => std::env::current_dir()?,
    };
    let rules = excludes::Rules {
        exclude_file: a.exclude_file.clone(),
        patterns: a.exclude.clone(),
        if_present: a.exclude_if_present.clone(),
        caches: a.exclude_caches,
        no_ignore: a.no_ignore,
    };
    let ex = excludes::filter(&source, &rules)?;
    if a.dry_run {
        return dry_run(cli, &source, &ex, a.one_file_system);
    }
    let client = client(cli)?;
    let filter = ex.filter.clone();
    let opts = ops::BackupOptions {
        source,
        destination: a.destination,
        tags: a.tags.iter().cloned().collect(),
        name: a.name.clone(),
        password: backup_password(a.prompt)?,
        filter,
        storage_class: a.s3_reduced_redundancy.then(|| "REDUCED_REDUNDANCY".to_string()),
        compression: a.compression,
        pack: None,
        progress: None,
        one_file_system: a.one_file_system,
        kind: match (a.full, a.incremental) {
            (true, _) => ops::BackupKind::Full,
            (_, true) => ops::BackupKind::Incremental,
            _ => ops::BackupKind::Policy,
        },
    };
    let out = match &a.key {
        Some(key) => client.backup_monitored(&opts, key)?,
        None => client.backup(&opts)?,
    };
    report_excluded(cli, &ex.excluded());
    if out.cleaned > 0 && !cli.quiet {
        eprintln!("removed {} leftover file(s) of interrupted backups", out.cleaned);
    }
    let encrypted = if out.record.is_enc() { "encrypted" } else { "not encrypted" };
    println!(
        "stored {} ({}) in {} ({}), {encrypted}",
        out.record.stored_filename,
        human(out.record.size),
        out.record.backend,
        out.store
    );
    if !out.warnings.is_empty() {
        eprintln!("bakthat: {} file(s) could not be backed up completely (see the warnings above)", out.warnings.len());
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_OK)
}

/// `--dry-run`: walks the source with the rules, stores nothing, opens no store and writes no row.
fn dry_run(cli: &Cli, source: &std::path::Path, ex: &excludes::Excludes, one_file_system: bool) -> Result<i32> {
    let plan = ops::plan(source, ex.filter.as_ref(), one_file_system)?;
    let excluded = ex.excluded();
    let noun = if plan.files == 1 { "file" } else { "files" };
    println!(
        "would store {} {noun} ({}) from {} (dry run: nothing stored)",
        plan.files,
        human(plan.bytes),
        source.display()
    );
    for line in excludes::listing(&excluded) {
        println!("{line}");
    }
    if let Some(s) = excludes::summary(&excluded, true) {
        if !cli.quiet {
            eprintln!("{s}");
        }
    }
    Ok(EXIT_OK)
}

/// One summary line on stderr; with `-v` a line per excluded path and its rule.
fn report_excluded(cli: &Cli, excluded: &[excludes::Excluded]) {
    if cli.quiet {
        return;
    }
    let verbose = cli.verbose > 0;
    if verbose {
        for line in excludes::listing(excluded) {
            eprintln!("{line}");
        }
    }
    if let Some(s) = excludes::summary(excluded, verbose) {
        eprintln!("{s}");
    }
}

/// The password for new backups: --password-file/--password-command, BAKTHAT_PASSWORD, else a prompt on a terminal
/// (unless --prompt no).
fn backup_password(prompt: YesNo) -> Result<Option<Arc<Secret>>> {
    if let Some(secret) = super::flagged_password()? {
        return Ok(Some(secret));
    }
    if let Some(pw) = std::env::var_os("BAKTHAT_PASSWORD") {
        use std::os::unix::ffi::OsStrExt;
        return Ok((!pw.is_empty()).then(|| Arc::new(Secret::new(pw.as_bytes()))));
    }
    if prompt == YesNo::No || !io::stdin().is_terminal() {
        return Ok(None);
    }
    let pw = rpassword::prompt_password("Password (blank to disable encryption): ")?;
    if pw.is_empty() {
        return Ok(None);
    }
    let again = rpassword::prompt_password("Password confirmation: ")?;
    if pw != again {
        bail!("the passwords do not match; nothing was backed up");
    }
    Ok(Some(Arc::new(Secret::new(pw.as_bytes()))))
}
