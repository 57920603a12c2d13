//! The command line: clap types, password prompts, progress bars, output formats and exit codes. The only module
//! that uses anyhow and talks to the terminal; the work itself is in [`crate::ops`].

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::archive::{ArchiveError, Secret};
use crate::client::{Client, ClientError};
use crate::config::{self, Config, Profile, RotationConfig};
use crate::inventory::Inventory;
use crate::model::{utc, BackupRecord};
use crate::ops::{self, Ctx, OpsError};

mod excludes;
mod progress;
mod remote;
mod sync;

/// Exit codes (also in the README).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "bakthat",
    version,
    about = "Compress, encrypt and upload backups; list, restore, rotate and browse them"
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 75 cold-storage retrieval pending (run again later), 130 interrupted."
)]
pub struct Cli {
    /// Config file (default: $BAKTHAT_CONFIG or ~/.bakthat.yml)
    #[arg(short, long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Profile of the config file to use
    #[arg(short, long, global = true, default_value = config::DEFAULT_PROFILE)]
    profile: String,
    /// More logs (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress bars or notes
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Back up a file or directory (default: the current directory)
    Backup(BackupArgs),
    /// Restore the newest backup of a name, or an exact stored name
    Restore(RestoreArgs),
    /// List backups from the inventory (no network)
    Show(ShowArgs),
    /// Delete the newest backup of a name
    Delete(DeleteArgs),
    /// Delete the backups of a name older than an interval such as 3M2D
    #[command(name = "delete_older_than", alias = "delete-older-than")]
    DeleteOlderThan(DeleteOlderArgs),
    /// Delete backups of a name by the profile's grandfather-father-son policy
    #[command(name = "rotate_backups", alias = "rotate-backups", alias = "rotate")]
    RotateBackups(RotateArgs),
    /// Download a backup and check every checksum and MAC, writing no files
    Verify(VerifyArgs),
    /// Set up a profile (interactively, or from flags)
    Configure(ConfigureArgs),
    /// Set a profile's rotation policy (interactively, or from flags)
    #[command(name = "configure_backups_rotation", alias = "configure-backups-rotation")]
    ConfigureBackupsRotation(RotationArgs),
    /// Import a bakthat 0.6 database (~/.bakthat.sqlite); it is never modified
    #[command(name = "import-legacy", alias = "import_legacy")]
    ImportLegacy {
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
    /// Reconcile the inventory with the store's journal, or the sync server when sync.url is set
    Sync(sync::SyncArgs),
    /// Forget the sync server state (client id, sync_ts): the next sync sends every row
    #[command(name = "reset_sync", alias = "reset-sync")]
    ResetSync,
    /// Serve the bakthat 0.6 sync protocol (POST /clients, POST /backups/sync)
    #[command(name = "sync-server", alias = "sync_server")]
    SyncServer(sync::ServerArgs),
    /// Mount the backups as a filesystem (by name, tag and date; /incoming backs up what is copied in)
    Mount(MountArgs),
    /// Unmount a `bakthat mount`
    Umount { mountpoint: PathBuf },
    /// KeyValue: small JSON values in the profile's S3 bucket
    Kv {
        #[command(subcommand)]
        op: remote::KvCommand,
    },
    /// Print a presigned URL of a backup in S3, and how to restore it without bakthat
    Share(remote::ShareArgs),
    /// List the archives in the Glacier vault (an inventory job: exits 75 until Glacier has run it)
    #[command(name = "show_glacier_inventory", alias = "show-glacier-inventory")]
    ShowGlacierInventory,
    /// List the Glacier archive ids in the local inventory
    #[command(name = "show_local_glacier_inventory", alias = "show-local-glacier-inventory")]
    ShowLocalGlacierInventory,
    /// Save the local Glacier archive ids to the S3 key bakthat_glacier_inventory
    #[command(name = "backup_glacier_inventory", alias = "backup-glacier-inventory")]
    BackupGlacierInventory,
    /// Load the Glacier archive ids saved by backup_glacier_inventory into the local inventory
    #[command(name = "restore_glacier_inventory", alias = "restore-glacier-inventory")]
    RestoreGlacierInventory,
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Manpage,
}

#[derive(Parser, Debug)]
struct BackupArgs {
    /// File or directory to back up
    filename: Option<PathBuf>,
    /// local, s3, glacier or swift (default: the profile's default_destination, else local)
    #[arg(short, long)]
    destination: Option<String>,
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
    /// Store with the REDUCED_REDUNDANCY storage class (S3)
    #[arg(long)]
    s3_reduced_redundancy: bool,
    /// Name the backup instead of using the basename
    #[arg(long)]
    name: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum YesNo {
    Yes,
    No,
}

#[derive(Parser, Debug)]
struct RestoreArgs {
    filename: String,
    #[arg(short, long)]
    destination: Option<String>,
    /// Directory to restore into (default: the current directory)
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Overwrite existing files
    #[arg(long)]
    force: bool,
}

#[derive(Parser, Debug)]
struct ShowArgs {
    query: Option<String>,
    /// Only these destinations (repeatable; default: all)
    #[arg(short, long)]
    destination: Vec<String>,
    /// Only backups with all these tags (space separated)
    #[arg(short, long)]
    tags: Option<String>,
    /// JSON output
    #[arg(long)]
    json: bool,
    /// Include deleted backups
    #[arg(long)]
    deleted: bool,
}

#[derive(Parser, Debug)]
struct DeleteArgs {
    filename: String,
    #[arg(short, long)]
    destination: Option<String>,
}

#[derive(Parser, Debug)]
struct DeleteOlderArgs {
    filename: String,
    /// s m h D W M Y units, e.g. 2W, 3M2D8h
    interval: String,
    #[arg(short, long)]
    destination: Option<String>,
    /// Only print what would be deleted
    #[arg(long)]
    dry_run: bool,
}

#[derive(Parser, Debug)]
struct RotateArgs {
    filename: String,
    #[arg(short, long)]
    destination: Option<String>,
    /// Only print keep/delete with the reason for each
    #[arg(long)]
    dry_run: bool,
}

#[derive(Parser, Debug)]
struct VerifyArgs {
    filename: String,
    #[arg(short, long)]
    destination: Option<String>,
}

#[derive(Parser, Debug)]
struct MountArgs {
    /// Empty directory to mount on
    mountpoint: PathBuf,
    /// Cache of decoded blocks (plaintext, mode 0700; default: ~/.cache/bakthat/mount)
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Size cap of the cache: bytes, or with K, M, G, T (powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    cache_size: String,
    /// Let other users see the mount (permissions are then enforced by the kernel)
    #[arg(long)]
    allow_other: bool,
    /// Run in the background once mounted
    #[arg(long)]
    daemon: bool,
    /// Read the password of encrypted backups from this file (first line)
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// (internal) read the password from the first line of standard input: how --daemon hands over a password it
    /// prompted for
    #[arg(long, hide = true)]
    password_stdin: bool,
    /// FUSE worker threads
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Seconds between checks of pending cold-storage retrievals
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    poll_interval: f64,
    /// Seconds a directory in /incoming must be quiet before it is backed up
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    settle: f64,
}

#[derive(Parser, Debug, Default)]
struct ConfigureArgs {
    #[arg(long)]
    access_key: Option<String>,
    #[arg(long)]
    secret_key: Option<String>,
    #[arg(long)]
    s3_bucket: Option<String>,
    #[arg(long)]
    glacier_vault: Option<String>,
    #[arg(long)]
    default_destination: Option<String>,
    #[arg(long)]
    region_name: Option<String>,
    #[arg(long)]
    auth_version: Option<String>,
    #[arg(long)]
    auth_url: Option<String>,
    /// Directory of the local store
    #[arg(long)]
    local_path: Option<PathBuf>,
    /// S3-compatible endpoint (MinIO, Ceph, R2...)
    #[arg(long)]
    endpoint_url: Option<String>,
}

#[derive(Parser, Debug, Default)]
struct RotationArgs {
    #[arg(long)]
    days: Option<i64>,
    #[arg(long)]
    weeks: Option<i64>,
    #[arg(long)]
    months: Option<i64>,
    /// monday..sunday, or 0 (monday) to 6 (sunday)
    #[arg(long)]
    first_week_day: Option<String>,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    init_logs(cli.verbose);
    install_signal_handlers();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return EXIT_OK;
            }
            let code = e.downcast_ref::<OpsError>().map(OpsError::exit_code);
            let code = code.or_else(|| e.downcast_ref::<ClientError>().map(ClientError::exit_code));
            let code = code.unwrap_or(EXIT_FAILURE);
            eprintln!("bakthat: error: {e:#}");
            code
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

fn init_logs(verbose: u8) {
    // The S3 SDK warns on every GET of a multipart object that its part-level checksum cannot be checked; bakthat
    // checks what it reads itself (gzip CRCs, HMACs), so that warning is noise unless debugging.
    let level = match verbose {
        0 => "warn,aws_sdk_s3::http_response_checksum=error",
        1 => "info,aws_sdk_s3::http_response_checksum=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BAKTHAT_LOG").unwrap_or_else(|_| level.into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).without_time().try_init();
}

fn install_signal_handlers() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY-free: signal-hook's registered closure only stores to an atomic.
        let _ = unsafe { signal_hook::low_level::register(sig, ops::interrupt) };
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    Ok(Config::load(&config::config_path(cli.config.as_deref()))?)
}

fn context(cli: &Cli) -> Result<Ctx> {
    let config = load_config(cli)?;
    let db = Inventory::default_path()?;
    let inventory = Inventory::open(&db)?;
    let mut ctx = Ctx::new(config, &cli.profile, inventory)?;
    ctx.reporter = Arc::new(progress::Bars::new(!cli.quiet && io::stderr().is_terminal()));
    Ok(ctx)
}

/// The library client: the actions run through it so that the profile's hooks and events apply.
fn client(cli: &Cli) -> Result<Client> {
    Ok(Client::from_ctx(context(cli)?)?)
}

fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Backup(a) => backup(&cli, a),
        Command::Restore(a) => restore(&cli, a),
        Command::Show(a) => show(&cli, a),
        Command::Delete(a) => {
            let r = client(&cli)?.delete(&a.filename, a.destination.as_deref())?;
            println!("deleted {}", r.stored_filename);
            Ok(EXIT_OK)
        }
        Command::DeleteOlderThan(a) => {
            let c = client(&cli)?;
            let done = c.delete_older_than(&a.filename, &a.interval, a.destination.as_deref(), a.dry_run)?;
            print_plan(&done, a.dry_run);
            Ok(EXIT_OK)
        }
        Command::RotateBackups(a) => {
            let opts = ops::RotateOptions { destination: a.destination.clone(), dry_run: a.dry_run };
            let plan = client(&cli)?.rotate(&a.filename, &opts)?;
            print_plan(&plan, a.dry_run);
            Ok(EXIT_OK)
        }
        Command::Verify(a) => verify(&cli, a),
        Command::Configure(a) => configure(&cli, a),
        Command::ConfigureBackupsRotation(a) => configure_rotation(&cli, a),
        Command::ImportLegacy { db } => {
            let path = match db {
                Some(p) => p.clone(),
                None => {
                    dirs::home_dir().ok_or_else(|| anyhow!("no home directory; pass --db"))?.join(".bakthat.sqlite")
                }
            };
            let inv = Inventory::open(Inventory::default_path()?)?;
            let report = inv.import_legacy(&path)?;
            println!("{report:?}");
            Ok(EXIT_OK)
        }
        Command::Sync(a) => sync::sync(&cli, a),
        Command::ResetSync => sync::reset(&cli),
        Command::SyncServer(a) => sync::server(a),
        Command::Mount(a) => mount(&cli, a),
        Command::Umount { mountpoint } => umount(mountpoint),
        Command::Kv { op } => remote::kv(&cli, op),
        Command::Share(a) => remote::share(&cli, a),
        Command::ShowGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::Show),
        Command::ShowLocalGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::ShowLocal),
        Command::BackupGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::Backup),
        Command::RestoreGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::Restore),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "bakthat", &mut io::stdout());
            Ok(EXIT_OK)
        }
        Command::Manpage => {
            clap_mangen::Man::new(Cli::command()).render(&mut io::stdout())?;
            Ok(EXIT_OK)
        }
    }
}

/// The password for new backups: BAKTHAT_PASSWORD, else a prompt on a terminal (unless --prompt no).
fn backup_password(prompt: YesNo) -> Result<Option<Arc<Secret>>> {
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

/// The password to read a backup: BAKTHAT_PASSWORD, else a prompt on a terminal.
fn read_password(ask: bool) -> Result<Option<Arc<Secret>>> {
    if let Some(pw) = std::env::var_os("BAKTHAT_PASSWORD") {
        use std::os::unix::ffi::OsStrExt;
        return Ok(Some(Arc::new(Secret::new(pw.as_bytes()))));
    }
    if ask && io::stdin().is_terminal() {
        let pw = rpassword::prompt_password("Password: ")?;
        return Ok(Some(Arc::new(Secret::new(pw.as_bytes()))));
    }
    Ok(None)
}

fn needs_password(e: &ClientError) -> bool {
    matches!(e.as_ops(), Some(OpsError::Archive(ArchiveError::PasswordNeeded)))
}

fn backup(cli: &Cli, a: &BackupArgs) -> Result<i32> {
    let client = client(cli)?;
    let source = match &a.filename {
        Some(p) => p.clone(),
        None => std::env::current_dir()?,
    };
    let filter = excludes::filter(&source, a.exclude_file.as_deref())?;
    let opts = ops::BackupOptions {
        source,
        destination: a.destination.clone(),
        tags: a.tags.iter().cloned().collect(),
        name: a.name.clone(),
        password: backup_password(a.prompt)?,
        filter,
        storage_class: a.s3_reduced_redundancy.then(|| "REDUCED_REDUNDANCY".to_string()),
        pack: None,
        progress: None,
    };
    let out = match &a.key {
        Some(key) => client.backup_monitored(&opts, key)?,
        None => client.backup(&opts)?,
    };
    if out.cleaned > 0 && !cli.quiet {
        eprintln!("removed {} leftover file(s) of interrupted backups", out.cleaned);
    }
    println!("stored {} ({}) in {}", out.record.stored_filename, human(out.record.size), out.record.backend);
    sync::after_backup(client.ctx(), opts.password.as_deref(), &out.record)?;
    if !out.warnings.is_empty() {
        eprintln!("bakthat: {} file(s) could not be backed up completely (see the warnings above)", out.warnings.len());
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_OK)
}

fn restore(cli: &Cli, a: &RestoreArgs) -> Result<i32> {
    let client = client(cli)?;
    let mut opts = ops::RestoreOptions {
        name: a.filename.clone(),
        destination: a.destination.clone(),
        to: a.to.clone(),
        force: a.force,
        password: read_password(false)?,
    };
    // Ask before restoring rather than after a failed try, so that restore hooks run once.
    let encrypted = client.inventory().newest(&a.filename, a.destination.as_deref())?.is_some_and(|r| r.is_enc());
    if encrypted && opts.password.is_none() && io::stdin().is_terminal() {
        opts.password = read_password(true)?;
    }
    let out = match client.restore(&opts) {
        Err(e) if needs_password(&e) && io::stdin().is_terminal() => {
            opts.password = read_password(true)?;
            client.restore(&opts)?
        }
        other => other?,
    };
    println!("restored {} ({} entries, {})", out.record.stored_filename, out.entries, human(out.bytes));
    for p in &out.written {
        println!("  {}", p.display());
    }
    Ok(EXIT_OK)
}

fn verify(cli: &Cli, a: &VerifyArgs) -> Result<i32> {
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

fn show(cli: &Cli, a: &ShowArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let q = ops::ShowQuery {
        text: a.query.clone(),
        destinations: a.destination.clone(),
        tags: a.tags.iter().cloned().collect(),
        include_deleted: a.deleted,
    };
    let rows = ops::show(&ctx, &q)?;
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        for r in &rows {
            writeln!(out, "{}", show_line(r))?;
        }
    }
    Ok(EXIT_OK)
}

/// One `show` line, as 0.6 printed it: date, backend, size, stored name, (tags).
fn show_line(r: &BackupRecord) -> String {
    let tags = if r.tags.is_empty() { String::new() } else { format!(" ({})", r.tags) };
    let deleted = if r.is_deleted { " [deleted]" } else { "" };
    format!(
        "{}\t{:8}\t{:8}\t{}{tags}{deleted}",
        utc(r.backup_date).format("%Y-%m-%dT%H:%M:%S"),
        r.backend,
        human(r.size),
        r.stored_filename
    )
}

fn print_plan(plan: &[ops::Planned], dry_run: bool) {
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

/// Sizes as 0.6's byteformat printed them: `256 B`, `3.1 KB`, `12.0 MB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn ask(question: &str, default: Option<&str>) -> Result<Option<String>> {
    let mut err = io::stderr();
    write!(err, "{question}")?;
    err.flush()?;
    let mut line = String::new();
    if io::stdin().read_line(&mut line)? == 0 {
        bail!("no answer (end of input); run configure with flags to set values without prompts");
    }
    let v = line.trim();
    Ok(if v.is_empty() { default.map(str::to_string) } else { Some(v.to_string()) })
}

fn configure(cli: &Cli, a: &ConfigureArgs) -> Result<i32> {
    let mut config = load_config(cli)?;
    let mut p: Profile = config.profile(&cli.profile).unwrap_or_default();
    let from_flags = a.access_key.is_some()
        || a.secret_key.is_some()
        || a.s3_bucket.is_some()
        || a.glacier_vault.is_some()
        || a.default_destination.is_some()
        || a.region_name.is_some()
        || a.auth_version.is_some()
        || a.auth_url.is_some()
        || a.local_path.is_some()
        || a.endpoint_url.is_some();
    if from_flags {
        set(&mut p.access_key, &a.access_key);
        set(&mut p.secret_key, &a.secret_key);
        set(&mut p.s3_bucket, &a.s3_bucket);
        set(&mut p.glacier_vault, &a.glacier_vault);
        set(&mut p.default_destination, &a.default_destination);
        set(&mut p.region_name, &a.region_name);
        set(&mut p.auth_version, &a.auth_version);
        set(&mut p.auth_url, &a.auth_url);
        set(&mut p.endpoint_url, &a.endpoint_url);
        if let Some(l) = &a.local_path {
            p.local_path = Some(l.clone());
        }
    } else {
        p.access_key = ask("AWS Access Key: ", p.access_key.as_deref())?;
        p.secret_key = ask("AWS Secret Key: ", p.secret_key.as_deref())?;
        p.s3_bucket = ask("S3 Bucket Name: ", p.s3_bucket.as_deref())?;
        p.glacier_vault = ask("Glacier Vault Name: ", p.glacier_vault.as_deref())?;
        loop {
            let d = ask("Default destination (local): ", Some(p.destination()))?.unwrap_or_else(|| "local".into());
            if config::DESTINATIONS.contains(&d.as_str()) {
                p.default_destination = Some(d);
                break;
            }
            eprintln!("choose one of {}", config::DESTINATIONS.join(", "));
        }
        p.region_name = ask("Region Name (us-east-1): ", p.region_name.as_deref().or(Some("us-east-1")))?;
        if p.destination() == "swift" {
            p.auth_version = ask("Swift Auth Version: ", p.auth_version.as_deref())?;
            p.auth_url = ask("Swift Auth URL: ", p.auth_url.as_deref())?;
        }
    }
    if let Some(d) = &p.default_destination {
        if !config::DESTINATIONS.contains(&d.as_str()) {
            bail!("unknown destination {d:?}; use one of {}", config::DESTINATIONS.join(", "));
        }
    }
    config.set_profile(&cli.profile, p);
    config.save()?;
    println!("saved profile {} in {}", cli.profile, config.path().display());
    Ok(EXIT_OK)
}

fn set(slot: &mut Option<String>, v: &Option<String>) {
    if v.is_some() {
        slot.clone_from(v);
    }
}

fn configure_rotation(cli: &Cli, a: &RotationArgs) -> Result<i32> {
    let mut config = load_config(cli)?;
    let mut p = config.profile(&cli.profile)?;
    let mut r: RotationConfig = p.rotation.clone().unwrap_or_default();
    let num = |s: Option<String>, what: &str| -> Result<Option<i64>> {
        s.map(|v| v.parse::<i64>().with_context(|| format!("{what} must be a whole number, got {v:?}"))).transpose()
    };
    let from_flags = a.days.is_some() || a.weeks.is_some() || a.months.is_some() || a.first_week_day.is_some();
    let first = if from_flags {
        r.days = a.days.or(r.days);
        r.weeks = a.weeks.or(r.weeks);
        r.months = a.months.or(r.months);
        a.first_week_day.clone()
    } else {
        r.days = num(ask("Number of days to keep: ", None)?, "days")?.or(r.days);
        r.weeks = num(ask("Number of weeks to keep: ", None)?, "weeks")?.or(r.weeks);
        r.months = num(ask("Number of months to keep: ", None)?, "months")?.or(r.months);
        ask("First week day (monday..sunday, saturday by default): ", None)?
    };
    if let Some(f) = first {
        let day = f.parse::<i64>().ok().filter(|d| (0..=6).contains(d)).or_else(|| config::parse_weekday(&f));
        r.first_week_day = Some(day.ok_or_else(|| anyhow!("unknown week day {f:?}; use monday..sunday or 0..6"))?);
    }
    for (k, v) in [("days", r.days), ("weeks", r.weeks), ("months", r.months)] {
        if v.is_some_and(|v| v < 0) {
            bail!("{k} must not be negative");
        }
    }
    p.rotation = Some(r);
    config.set_profile(&cli.profile, p);
    config.save()?;
    println!("saved the rotation policy of profile {} in {}", cli.profile, config.path().display());
    Ok(EXIT_OK)
}

/// Parses `1G`, `512M`, `4096`.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => bail!("unknown size unit in {s:?}; use K, M, G or T"),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().with_context(|| format!("{s:?} is not a size such as 512M or 2G"))?;
    Ok((n * mult as f64) as u64)
}

fn mount(cli: &Cli, a: &MountArgs) -> Result<i32> {
    check_mountpoint(&a.mountpoint)?;
    let ctx = Arc::new(context(cli)?);
    let first_line = |text: &[u8]| {
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        Arc::new(Secret::new(line.strip_suffix(b"\r").unwrap_or(line)))
    };
    let secret = match &a.password_file {
        Some(f) => {
            let text = std::fs::read(f).with_context(|| format!("reading the password file {}", f.display()))?;
            Some(first_line(&text))
        }
        None if a.password_stdin => {
            let mut text = Vec::new();
            io::Read::read_to_end(&mut io::stdin(), &mut text).context("reading the password from stdin")?;
            Some(first_line(&text))
        }
        None => {
            let any_enc = ctx.inventory.search(&Default::default())?.iter().any(|r| r.is_enc());
            read_password(any_enc)?
        }
    };
    let cache_dir = mount_cache_dir(a)?;
    if a.daemon {
        return daemonize(a, &cache_dir, secret.as_deref());
    }
    let mut opts = crate::fs::MountOptions::new(cache_dir);
    opts.cache_size = parse_size(&a.cache_size)?;
    opts.poll_interval = std::time::Duration::from_secs_f64(a.poll_interval.max(0.1));
    opts.settle = std::time::Duration::from_secs_f64(a.settle.max(0.0));
    let c2 = ctx.clone();
    let open: crate::fs::OpenBackend = Arc::new(move |d: &str| c2.backend(d));
    let fs = crate::fs::Fs::new(ctx, open, secret, opts).context("preparing the mount")?;
    let cfg = crate::fuse::MountConfig { allow_other: a.allow_other, threads: a.threads };
    let mp = a.mountpoint.display().to_string();
    let meter = fs.clone();
    crate::fuse::serve(fs, &a.mountpoint, &cfg, ops::interrupt_flag(), || {
        eprintln!("bakthat: mounted on {mp}; Ctrl-C or `bakthat umount {mp}` to unmount");
    })
    .with_context(|| format!("mounting on {mp} (is it an empty directory, and is /dev/fuse usable?)"))?;
    let totals = meter.store_totals();
    tracing::info!(requests = totals.requests, bytes_read = totals.bytes_read, "unmounted {mp}");
    Ok(EXIT_OK)
}

/// The mount point must be an existing, empty directory: mounting over files would hide them while mounted.
fn check_mountpoint(mp: &std::path::Path) -> Result<()> {
    let shown = mp.display();
    let meta = match std::fs::metadata(mp) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("{shown} does not exist; create it (mkdir -p {shown})"),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            bail!("{shown} is a dead mount (its process is gone); clear it with `fusermount3 -u {shown}`")
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("checking the mount point {shown}"))),
    };
    if !meta.is_dir() {
        bail!("{shown} is not a directory; mount on an empty directory");
    }
    if is_mounted(&std::fs::canonicalize(mp)?) {
        bail!("{shown} is already a mount point; `bakthat umount {shown}` first");
    }
    let mut entries = std::fs::read_dir(mp).with_context(|| format!("reading the mount point {shown}"))?;
    if entries.next().is_some() {
        bail!("{shown} is not empty (mounting would hide its files); mount on an empty directory");
    }
    Ok(())
}

/// Where the mount keeps its cache, /incoming staging and (with --daemon) its log.
fn mount_cache_dir(a: &MountArgs) -> Result<PathBuf> {
    match &a.cache_dir {
        Some(d) => Ok(d.clone()),
        None => Ok(dirs::cache_dir()
            .ok_or_else(|| anyhow!("no cache directory known; pass --cache-dir"))?
            .join("bakthat/mount")),
    }
}

/// Starts the same command without --daemon in a new session and returns once the mount is up. A password asked
/// for here (the prompt needs the terminal) goes to the child through a pipe, never its arguments or environment;
/// the child's log goes to `<cache-dir>/mount.log`.
fn daemonize(a: &MountArgs, cache_dir: &std::path::Path, secret: Option<&Secret>) -> Result<i32> {
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::process::CommandExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let log_path = cache_dir.join("mount.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening the log {}", log_path.display()))?;
    let exe = std::env::current_exe()?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).filter(|x| x != "--daemon").collect();
    let hand_over = secret.is_some() && a.password_file.is_none() && std::env::var_os("BAKTHAT_PASSWORD").is_none();
    if hand_over {
        args.push("--password-stdin".into());
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args).stdout(std::process::Stdio::null()).stderr(log);
    cmd.stdin(if hand_over { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    // SAFETY: setsid is async-signal-safe; it detaches the child from the terminal's session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    if let (true, Some(secret), Some(mut stdin)) = (hand_over, secret, child.stdin.take()) {
        io::Write::write_all(&mut stdin, secret.bytes()).context("handing the password to the mount process")?;
        io::Write::write_all(&mut stdin, b"\n")?;
    }
    let mp = std::fs::canonicalize(&a.mountpoint)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if is_mounted(&mp) {
            println!("mounted on {} (pid {}, log {})", mp.display(), child.id(), log_path.display());
            return Ok(EXIT_OK);
        }
        if let Some(st) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            bail!("the mount process exited ({st}) before mounting: {last} (log: {})", log_path.display());
        }
        if std::time::Instant::now() > deadline {
            bail!("the mount did not come up within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether `/proc/mounts` lists a bakthat FUSE mount at `mp`.
fn is_mounted(mp: &std::path::Path) -> bool {
    let want = mp.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(want.as_str()) && l.contains("fuse")))
        .unwrap_or(false)
}

fn umount(mp: &std::path::Path) -> Result<i32> {
    if !is_mounted(&std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf())) {
        bail!("{} is not a bakthat mount", mp.display());
    }
    if crate::fuse::unmount(mp).is_err() {
        bail!(
            "could not unmount {}; close the programs using it (see `fuser -m {}`) and try again",
            mp.display(),
            mp.display()
        );
    }
    Ok(EXIT_OK)
}

/// Where the man page and completions are generated from, for packaging scripts.
pub fn command() -> clap::Command {
    Cli::command()
}
