//! The command line: the top-level parser and dispatch, logging, exit codes and the helpers the commands share
//! (context, password prompts, sizes). Each command has its own file holding its clap arguments and its body. The
//! only module that uses anyhow and talks to the terminal; the work itself is in [`crate::ops`] (and, for the mount,
//! [`crate::mount`], [`crate::fs`] and [`crate::fuse`]).

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

use crate::archive::{ArchiveError, Secret};
use crate::client::{Client, ClientError};
use crate::config::{self, Config};
use crate::inventory::Inventory;
use crate::ops::{self, Ctx, OpsError};

mod adopt;
mod backup;
mod check;
mod configure;
mod configure_rotation;
mod delete;
mod diff;
pub mod excludes;
mod find;
mod import_legacy;
mod ls;
mod mount;
mod progress;
mod remote;
mod restore;
mod rotate;
mod show;
mod stats;
mod sync;
mod verify;

pub use show::show_line;

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
    /// Read the password from the first line of FILE (instead of BAKTHAT_PASSWORD or a prompt)
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "password_command")]
    password_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and use the first line it prints as the password (e.g. `pass show backups`)
    #[arg(long, global = true, value_name = "CMD")]
    password_command: Option<String>,
    #[command(subcommand)]
    command: Command,
    /// This command's cancel token: Ctrl-C and SIGTERM cancel it (see [`install_signal_handlers`]), and every
    /// context the command opens holds it.
    #[arg(skip)]
    cancel: ops::Cancel,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Back up a file or directory (default: the current directory)
    Backup(backup::BackupArgs),
    /// Restore the newest backup of a name, or an exact stored name
    Restore(restore::RestoreArgs),
    /// List backups from the inventory (no network)
    Show(show::ShowArgs),
    /// List the files of a backup, from the inventory's copy of its index (no network)
    Ls(ls::LsArgs),
    /// Which backups hold a path matching a pattern, with sizes and dates (no network)
    Find(find::FindArgs),
    /// Paths added (+), removed (-) and changed (M) between two backups (no network)
    Diff(diff::DiffArgs),
    /// Backups, bytes stored per store and per name, compression ratio, oldest and newest (no network)
    Stats(stats::StatsArgs),
    /// Delete the newest backup of a name
    Delete(delete::DeleteArgs),
    /// Delete the backups of a name older than an interval such as 3M2D
    #[command(name = "delete_older_than", alias = "delete-older-than")]
    DeleteOlderThan(delete::DeleteOlderArgs),
    /// Delete backups of a name by the profile's grandfather-father-son policy
    #[command(name = "rotate_backups", alias = "rotate-backups", alias = "rotate")]
    RotateBackups(rotate::RotateArgs),
    /// Download a backup and check every checksum and MAC, and its index sidecar, writing no files
    Verify(verify::VerifyArgs),
    /// Check the whole inventory against its stores: objects, index sidecars, the journal, archives without a row
    Check(check::CheckArgs),
    /// Record an archive that is in the store but not in the inventory (see `check`)
    Adopt(adopt::AdoptArgs),
    /// Set up a profile (interactively, or from flags)
    Configure(configure::ConfigureArgs),
    /// Set a profile's rotation policy (interactively, or from flags)
    #[command(name = "configure_backups_rotation", alias = "configure-backups-rotation")]
    ConfigureBackupsRotation(configure_rotation::RotationArgs),
    /// Import a bakthat 0.6 database (~/.bakthat.sqlite); it is never modified
    #[command(name = "import-legacy", alias = "import_legacy")]
    ImportLegacy(import_legacy::ImportLegacyArgs),
    /// Reconcile the inventory with the store's journal, or the sync server when sync.url is set
    Sync(sync::SyncArgs),
    /// Forget the sync server state (client id, sync_ts): the next sync sends every row
    #[command(name = "reset_sync", alias = "reset-sync")]
    ResetSync,
    /// Serve the bakthat 0.6 sync protocol (POST /clients, POST /backups/sync)
    #[command(name = "sync-server", alias = "sync_server")]
    SyncServer(sync::ServerArgs),
    /// Mount the backups as a filesystem (by name, tag and date; /incoming backs up what is copied in)
    Mount(mount::MountArgs),
    /// Unmount a `bakthat mount`
    Umount {
        /// Where the backups are mounted
        mountpoint: PathBuf,
    },
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
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// (for shell completions) Print the names of the backups in the inventory, one per line
    #[command(name = "__names", hide = true)]
    Names,
    /// Print the man page (roff), or write one page per command into a directory
    Manpage {
        /// Write bakthat.1 and bakthat-COMMAND.1 for every command into DIR (e.g. /usr/local/share/man/man1)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    main_from(std::env::args_os())
}

/// Runs the CLI on `args` (the first is the program name) and returns the exit code: what the Python package's
/// `bakthat` command runs in-process, with its plugin host installed (see [`crate::client::host`]).
pub fn main_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    init_logs(cli.verbose);
    let handlers = install_signal_handlers(&cli.cancel);
    let result = run(cli);
    for id in handlers {
        signal_hook::low_level::unregister(id);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return EXIT_OK;
            }
            let code = e.downcast_ref::<OpsError>().map(OpsError::exit_code);
            let code = code.or_else(|| e.downcast_ref::<ClientError>().map(ClientError::exit_code));
            let code = code.unwrap_or(EXIT_FAILURE);
            eprintln!("bakthat: error: {}", crate::join_causes(e.chain()));
            code
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    // serde_json's error hides the io::Error it wraps from the chain (its source is that error's source).
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .map(io::Error::kind)
            .or_else(|| c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind))
            == Some(io::ErrorKind::BrokenPipe)
    })
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
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .without_time();
    let _ = match verbose {
        0 | 1 => builder.event_format(Plain).try_init(),
        _ => builder.try_init(),
    };
}

/// Log lines as the rest of bakthat's messages read: `bakthat: warning: what happened key=value`, no module path
/// (that is for -vv).
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        write!(writer, "bakthat: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Makes SIGINT and SIGTERM cancel this command (and only it: the package's in-process CLI may run beside other
/// library calls); returns the registrations, removed when the command returns.
fn install_signal_handlers(cancel: &ops::Cancel) -> Vec<signal_hook::SigId> {
    let mut ids = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let token = cancel.clone();
        // SAFETY: the registered closure only stores to an atomic (async-signal-safe).
        if let Ok(id) = unsafe { signal_hook::low_level::register(sig, move || token.cancel()) } {
            ids.push(id);
        }
    }
    ids
}

fn load_config(cli: &Cli) -> Result<Config> {
    Ok(Config::load(&config::config_path(cli.config.as_deref()))?)
}

fn context(cli: &Cli) -> Result<Ctx> {
    let config = load_config(cli)?;
    let db = Inventory::default_path()?;
    let inventory = Inventory::open(&db)?;
    let mut ctx = Ctx::new(config, &cli.profile, inventory)?;
    ctx.cancel = cli.cancel.clone();
    ctx.reporter = Arc::new(progress::Bars::new(!cli.quiet && io::stderr().is_terminal()));
    Ok(ctx)
}

/// The library client: the actions run through it so that the profile's hooks and events apply.
fn client(cli: &Cli) -> Result<Client> {
    Ok(Client::from_ctx(context(cli)?)?)
}

fn run(cli: Cli) -> Result<i32> {
    let source = match (&cli.password_file, &cli.password_command) {
        (Some(f), _) => Some(PasswordSource::File(f.clone())),
        (None, Some(c)) => Some(PasswordSource::Command(c.clone())),
        (None, None) => None,
    };
    if let Some(source) = source {
        let _ = PASSWORD_SOURCE.set(source);
    }
    match &cli.command {
        Command::Backup(a) => backup::run(&cli, a),
        Command::Restore(a) => restore::run(&cli, a),
        Command::Show(a) => show::run(&cli, a),
        Command::Ls(a) => ls::run(&cli, a),
        Command::Find(a) => find::run(&cli, a),
        Command::Diff(a) => diff::run(&cli, a),
        Command::Stats(a) => stats::run(&cli, a),
        Command::Delete(a) => delete::run(&cli, a),
        Command::DeleteOlderThan(a) => delete::older_than(&cli, a),
        Command::RotateBackups(a) => rotate::run(&cli, a),
        Command::Verify(a) => verify::run(&cli, a),
        Command::Check(a) => check::run(&cli, a),
        Command::Adopt(a) => adopt::run(&cli, a),
        Command::Configure(a) => configure::run(&cli, a),
        Command::ConfigureBackupsRotation(a) => configure_rotation::run(&cli, a),
        Command::ImportLegacy(a) => import_legacy::run(a),
        Command::Sync(a) => sync::sync(&cli, a),
        Command::ResetSync => sync::reset(&cli),
        Command::SyncServer(a) => sync::server(a),
        Command::Mount(a) => mount::run(&cli, a),
        Command::Umount { mountpoint } => mount::umount(mountpoint),
        Command::Kv { op } => remote::kv(&cli, op),
        Command::Share(a) => remote::share(&cli, a),
        Command::ShowGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::Show),
        Command::ShowLocalGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::ShowLocal),
        Command::BackupGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::Backup),
        Command::RestoreGlacierInventory => remote::glacier_inventory(&cli, remote::GlacierInventory::Restore),
        Command::Completions { shell } => {
            // Generated into memory first: clap_complete panics when its writer fails (a closed pipe, as in
            // `bakthat completions fish | head -3`), and a write error here is ours to report or ignore.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "bakthat", &mut script);
            script.extend_from_slice(names_completion(*shell).as_bytes());
            io::stdout().write_all(&script)?;
            Ok(EXIT_OK)
        }
        Command::Names => {
            let inv = Inventory::open(Inventory::default_path()?)?;
            let names: std::collections::BTreeSet<String> =
                inv.search(&Default::default())?.into_iter().map(|r| r.filename).collect();
            let mut out = io::stdout().lock();
            for n in names.iter().filter(|n| !n.contains('\n')) {
                writeln!(out, "{n}")?;
            }
            Ok(EXIT_OK)
        }
        Command::Manpage { dir: None } => {
            clap_mangen::Man::new(Cli::command()).render(&mut io::stdout())?;
            Ok(EXIT_OK)
        }
        Command::Manpage { dir: Some(dir) } => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing the man pages into {}", dir.display()))?;
            println!("wrote the man pages into {}", dir.display());
            Ok(EXIT_OK)
        }
    }
}

/// Commands whose first argument is a backup name.
const NAMED_COMMANDS: &[&str] = &[
    "restore",
    "verify",
    "delete",
    "delete_older_than",
    "delete-older-than",
    "rotate_backups",
    "rotate-backups",
    "rotate",
    "share",
];

/// What the generated completion scripts lack: backup names (from `bakthat __names`, the local inventory) as the
/// first argument of restore, verify, delete... Bash and fish; other shells complete commands and flags only.
fn names_completion(shell: clap_complete::Shell) -> String {
    let commands = NAMED_COMMANDS.join(" ");
    match shell {
        clap_complete::Shell::Bash => format!(
            r#"
# Backup names for {commands}: the generated function, then names from the inventory.
_bakthat_names() {{
    _bakthat "$@"
    local cur=${{COMP_WORDS[COMP_CWORD]}} i words=0
    for ((i = 1; i < COMP_CWORD; i++)); do [[ ${{COMP_WORDS[i]}} == -* ]] || words=$((words + 1)); done
    if [[ $words -eq 1 && $cur != -* && " {commands} " == *" ${{COMP_WORDS[1]}} "* ]]; then
        local IFS=$'
'
        COMPREPLY=($(compgen -W "$(bakthat __names 2>/dev/null)" -- "$cur"))
    fi
}}
complete -F _bakthat_names -o bashdefault -o default bakthat
"#
        ),
        clap_complete::Shell::Fish => format!(
            "complete -c bakthat -n \"__fish_seen_subcommand_from {commands}\" -f -a \"(bakthat __names 2>/dev/null)\"\n"
        ),
        _ => String::new(),
    }
}

/// Where the password comes from when a global flag names it; set once from the command line in [`run`], before
/// any command asks (the flags are global, so every command that needs a password takes them).
static PASSWORD_SOURCE: std::sync::OnceLock<PasswordSource> = std::sync::OnceLock::new();

#[derive(Debug, Clone, PartialEq, Eq)]
enum PasswordSource {
    File(PathBuf),
    Command(String),
}

/// The password named by `--password-file` / `--password-command`, read once (a command runs once per process).
fn flagged_password() -> Result<Option<Arc<Secret>>> {
    static READ: std::sync::OnceLock<Arc<Secret>> = std::sync::OnceLock::new();
    let Some(source) = PASSWORD_SOURCE.get() else { return Ok(None) };
    if let Some(s) = READ.get() {
        return Ok(Some(s.clone()));
    }
    let text = match source {
        PasswordSource::File(f) => {
            std::fs::read(f).with_context(|| format!("reading the password file {}", f.display()))?
        }
        PasswordSource::Command(cmd) => {
            let out = std::process::Command::new("sh")
                .args(["-c", cmd])
                .stdin(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running the password command {cmd:?}"))?;
            if !out.status.success() {
                bail!("the password command {cmd:?} failed ({}); nothing was done", out.status);
            }
            out.stdout
        }
    };
    let line = first_line(&text);
    if line.is_empty() {
        bail!("the password from {} is empty", source.describe());
    }
    Ok(Some(READ.get_or_init(|| Arc::new(Secret::new(line))).clone()))
}

impl PasswordSource {
    fn describe(&self) -> String {
        match self {
            PasswordSource::File(f) => format!("the password file {}", f.display()),
            PasswordSource::Command(c) => format!("the password command {c:?}"),
        }
    }
}

/// The first line of `text`, without its `\n` or `\r\n`: what password files and commands give.
pub(super) fn first_line(text: &[u8]) -> &[u8] {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether the password was named by a flag (so a detached mount reads it again itself).
pub(super) fn password_from_file() -> bool {
    matches!(PASSWORD_SOURCE.get(), Some(PasswordSource::File(_)))
}

/// The password to read a backup: --password-file/--password-command, BAKTHAT_PASSWORD, else a prompt on a
/// terminal.
fn read_password(ask: bool) -> Result<Option<Arc<Secret>>> {
    if let Some(secret) = flagged_password()? {
        return Ok(Some(secret));
    }
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

/// Sizes in binary units, labelled as such: `256 B`, `3.1 KiB`, `12.0 MiB` (0.6 printed powers of 1024 as "MB").
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
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

/// Asks a question on the terminal; an empty answer is `default`.
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

/// Where the man page and completions are generated from, for packaging scripts.
pub fn command() -> clap::Command {
    Cli::command()
}
