//! The S3 and Glacier side commands: `kv set|get|delete|url` (KeyValue), `share` (a presigned URL of a backup) and
//! the Glacier inventory commands.

use std::io::{self, IsTerminal, Read};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

use super::{context, read_password, Cli, EXIT_FAILURE, EXIT_OK};
use crate::interval::parse_expiry;
use crate::kv::KeyValue;
use crate::model::Destination;
use crate::ops;
use crate::storage::s3::PresignMethod;

/// `bakthat kv ...`
#[derive(Subcommand, Debug)]
pub(super) enum KvCommand {
    /// Store a JSON value under a key (encrypted when BAKTHAT_PASSWORD is set or with --encrypt)
    Set {
        /// The key: a name such as app/config (parts separated by /)
        key: String,
        /// JSON text (quote strings: '"text"'), or - to read it from stdin
        value: String,
        /// Store the JSON text as is, not gzipped
        #[arg(long)]
        no_compress: bool,
        /// Ask for a password when BAKTHAT_PASSWORD is not set
        #[arg(long)]
        encrypt: bool,
    },
    /// Print the JSON value of a key (exit 1 if there is none)
    Get {
        /// The key: a name such as app/config (parts separated by /)
        key: String,
    },
    /// Delete a key
    Delete {
        /// The key: a name such as app/config (parts separated by /)
        key: String,
    },
    /// Print a presigned URL of the key's stored bytes (JSON, gzipped or encrypted as stored)
    Url {
        /// The key: a name such as app/config (parts separated by /)
        key: String,
        /// How long the URL works: 1h, 30m, 7D (at most 7 days)
        #[arg(long, default_value = "1h")]
        expires: String,
        /// What the URL does: GET (download the stored bytes), PUT (upload new bytes), DELETE or HEAD
        #[arg(long, default_value = "GET")]
        method: String,
    },
}

/// `bakthat share ...`
#[derive(Parser, Debug)]
pub(super) struct ShareArgs {
    /// A backup name (its newest backup) or an exact stored name
    name: String,
    /// Only s3 backups can be shared (the default)
    #[arg(short, long)]
    destination: Option<Destination>,
    /// How long the URL works: 1h, 30m, 7D (at most 7 days)
    #[arg(long, default_value = "1h")]
    expires: String,
}

pub(super) fn kv(cli: &Cli, op: &KvCommand) -> Result<i32> {
    let ctx = context(cli)?;
    let kv = KeyValue::open(&ctx)?;
    match op {
        KvCommand::Set { key, value, no_compress, encrypt } => {
            let text = if value == "-" {
                let mut s = String::new();
                io::stdin().read_to_string(&mut s).context("reading the value from stdin")?;
                s
            } else {
                value.clone()
            };
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("the value is not JSON; quote a string as '\"{}\"'", text.trim()))?;
            // As for backups, an empty BAKTHAT_PASSWORD means no encryption.
            let mut password = read_password(false)?.filter(|p| !p.bytes().is_empty());
            if password.is_none() && *encrypt {
                password = read_password(true)?;
                if password.is_none() {
                    bail!("--encrypt needs a password: set BAKTHAT_PASSWORD or run on a terminal");
                }
            }
            kv.set_key(key, &value, !no_compress, password.as_deref())?;
            if !cli.quiet {
                eprintln!("stored {key}{}", if password.is_some() { " (encrypted)" } else { "" });
            }
        }
        KvCommand::Get { key } => {
            let mut password = read_password(false)?;
            let value = match kv.get_key(key, password.as_deref()) {
                Err(e) if e.needs_password() && io::stdin().is_terminal() => {
                    password = read_password(true)?;
                    kv.get_key(key, password.as_deref())?
                }
                other => other?,
            };
            match value {
                Some(v) => println!("{v}"),
                None => {
                    eprintln!("bakthat: no key {key} in the bucket");
                    return Ok(EXIT_FAILURE);
                }
            }
        }
        KvCommand::Delete { key } => {
            if !kv.delete_key(key)? {
                eprintln!("bakthat: no key {key} in the bucket");
                return Ok(EXIT_FAILURE);
            }
            println!("deleted {key}");
        }
        KvCommand::Url { key, expires, method } => {
            let method: PresignMethod = method.parse()?;
            println!("{}", kv.get_key_url(key, parse_expiry(expires)?, method)?);
        }
    }
    Ok(EXIT_OK)
}

pub(super) fn share(cli: &Cli, a: &ShareArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let s = ops::share(&ctx, &a.name, a.destination, &a.expires)?;
    println!("{}", s.url);
    if !cli.quiet {
        let hours = s.expires.as_secs() as f64 / 3600.0;
        println!(
            "\n{} can be downloaded with this URL for {hours:.2} h. To restore it without bakthat:",
            s.record.stored_filename
        );
        println!("  {}", s.command);
        if s.command.contains("bakthat-decrypt") {
            println!(
                "bakthat-decrypt is scripts/bakthat-decrypt in bakthat's sources (Python 3; on Debian and Ubuntu \
                 `apt install python3-cryptography python3-argon2`, elsewhere `pip install 'cryptography>=44'`); \
                 replace … with the password."
            );
        }
    }
    Ok(EXIT_OK)
}

/// The Glacier inventory commands.
#[derive(Debug, Clone, Copy)]
pub(super) enum GlacierInventory {
    Show,
    ShowLocal,
    Backup,
    Restore,
}

pub(super) fn glacier_inventory(cli: &Cli, what: GlacierInventory) -> Result<i32> {
    let ctx = context(cli)?;
    match what {
        GlacierInventory::Show => {
            for a in ops::show_glacier_inventory(&ctx)? {
                println!("{}\t{}\t{}", a.archive_id, a.size, a.description);
            }
        }
        GlacierInventory::ShowLocal => {
            for a in ops::show_local_glacier_inventory(&ctx)? {
                let size = a.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
                println!("{}\t{size}\t{}", a.archive_id, a.filename);
            }
        }
        GlacierInventory::Backup => {
            let n = ops::backup_glacier_inventory(&ctx)?;
            println!(
                "stored {n} archive id(s) in {} of bucket {}",
                ops::GLACIER_INVENTORY_KEY,
                ctx.stores().s3_hot()?.bucket()
            );
        }
        GlacierInventory::Restore => {
            let r = ops::restore_glacier_inventory(&ctx)?;
            println!(
                "{} archive id(s) added, {} already known, {} backup row(s) created",
                r.added, r.known, r.rows_created
            );
        }
    }
    Ok(EXIT_OK)
}
