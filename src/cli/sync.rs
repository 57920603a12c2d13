//! `sync`, `reset_sync` and `sync-server`. The automatic sync after a backup (`sync.auto`) is
//! [`crate::sync::after_backup`], run by [`crate::client::Client::backup`].

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;

use super::{context, read_password, Cli, EXIT_FAILURE, EXIT_OK};
use crate::model::Destination;
use crate::sync::{self as s, SyncReport};

#[derive(Parser, Debug)]
pub(super) struct SyncArgs {
    /// The destination whose store journal to read (default: the profile's default destination)
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Read the whole journal again and recreate every row from it (for a lost or damaged inventory)
    #[arg(long)]
    rebuild: bool,
    /// First write a journal entry for every row of the destination (backups made before sync existed, imports)
    #[arg(long)]
    publish: bool,
}

#[derive(Parser, Debug)]
pub(super) struct ServerArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:2405", value_name = "ADDR")]
    listen: String,
    /// The server's SQLite database
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// Add (or change the password of) a user and exit; the password comes from BAKTHAT_SYNC_PASSWORD or a prompt
    #[arg(long, value_name = "NAME")]
    add_user: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --key)
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// The PEM private key of --cert
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
}

fn print_report(report: &SyncReport, quiet: bool) -> i32 {
    if !quiet {
        println!("synced: {}", report.summary());
    }
    for (key, why) in &report.unreadable {
        eprintln!("bakthat: cannot read journal entry {key}: {why}");
    }
    for (key, why) in &report.rejected {
        eprintln!("bakthat: rejected journal entry {key}: {why}");
    }
    let skipped = report.unreadable.len() + report.rejected.len();
    if skipped == 0 {
        EXIT_OK
    } else {
        eprintln!("bakthat: {skipped} journal entries were not applied; they are read again by the next sync");
        EXIT_FAILURE
    }
}

pub(super) fn sync(cli: &Cli, a: &SyncArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let secret = read_password(false)?;
    if a.publish {
        let dest = ctx.destination(a.destination);
        let n = s::publish_destination(&ctx, dest, secret.as_deref())?;
        if !cli.quiet {
            println!("published {n} journal entries");
        }
    }
    let mut report = s::run(&ctx, a.destination, secret.as_deref(), a.rebuild)?;
    if secret.is_none() && !report.unreadable.is_empty() && io::stdin().is_terminal() {
        let secret = read_password(true)?;
        report = s::run(&ctx, a.destination, secret.as_deref(), false)?;
    }
    Ok(print_report(&report, cli.quiet))
}

pub(super) fn reset(cli: &Cli) -> Result<i32> {
    let ctx = context(cli)?;
    s::client::reset(&ctx)?;
    println!("sync state reset; the next sync sends and reads everything");
    Ok(EXIT_OK)
}

pub(super) fn server(a: &ServerArgs) -> Result<i32> {
    let server = s::server::ServerDb::open(&a.db)?;
    if let Some(name) = &a.add_user {
        let password = match std::env::var("BAKTHAT_SYNC_PASSWORD") {
            Ok(p) if !p.is_empty() => p,
            _ if io::stdin().is_terminal() => rpassword::prompt_password(format!("Password for {name}: "))?,
            _ => bail!("set BAKTHAT_SYNC_PASSWORD or run on a terminal to give the password of {name}"),
        };
        server.add_user(name, &password)?;
        println!("user {name} saved in {}", a.db.display());
        return Ok(EXIT_OK);
    }
    let tls = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => Some(s::server::tls_config(cert, key)?),
        _ => None,
    };
    let listener = std::net::TcpListener::bind(&a.listen)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("bakthat sync server listening on {scheme}://{}", listener.local_addr()?);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    match tls {
        Some(tls) => s::server::serve_tls(listener, server, tls, stop)?,
        None => s::server::serve(listener, server, stop)?,
    }
    Ok(EXIT_OK)
}
