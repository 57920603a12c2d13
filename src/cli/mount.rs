//! `mount` and `umount`: flags, the password, and messages on the terminal. The mount point checks, `/proc/mounts`
//! and the detached process are in [`crate::mount`]; the filesystem in [`crate::fs`] and [`crate::fuse`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;

use super::{client, first_line, password_from_file, read_password, Cli, EXIT_OK};
use crate::archive::Secret;
use crate::mount::{self, DetachedCommand};

#[derive(Parser, Debug)]
pub(super) struct MountArgs {
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
    /// Mount even if encrypted backups exist and no password is given (no prompt; they show as needing one)
    #[arg(long)]
    without_encrypted: bool,
    /// (internal) read the password from the first line of standard input: how --daemon hands over a password it
    /// prompted for
    #[arg(long, hide = true)]
    password_stdin: bool,
    /// Heap the listed backups' entries may hold before the least recently used are let go (and laid out again
    /// when used): `16M`, `1G`; about 4 KB per backup of a few files
    #[arg(long, default_value = "16M", value_name = "SIZE")]
    listing_budget: String,
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

pub(super) fn run(cli: &Cli, a: &MountArgs) -> Result<i32> {
    mount::check_mountpoint(&a.mountpoint)?;
    // Backups dropped into /incoming go through the client, so hooks, events and auto-sync apply to them.
    let client = Arc::new(client(cli)?);
    let ctx = client.ctx();
    let secret = match a.password_stdin {
        true => {
            let mut text = Vec::new();
            io::Read::read_to_end(&mut io::stdin(), &mut text).context("reading the password from stdin")?;
            Some(Arc::new(Secret::new(first_line(&text))))
        }
        false => {
            let encrypted = encrypted_rows(&ctx.inventory)?;
            let secret = read_password(encrypted > 0 && !a.without_encrypted)?;
            if secret.is_none() && encrypted > 0 && !a.without_encrypted {
                // Mounted without it, they would only answer "Permission denied".
                bail!(
                    "{encrypted} backup(s) are encrypted and no password was given: set BAKTHAT_PASSWORD, pass \
                     --password-file FILE or run from a terminal to be asked, or pass --without-encrypted to mount \
                     without them"
                );
            }
            secret
        }
    };
    let cache_dir = cache_dir(a)?;
    if a.daemon {
        return daemonize(a, &cache_dir, secret.as_deref());
    }
    let mut opts = crate::fs::MountOptions::new(cache_dir);
    opts.cache_size = parse_size(&a.cache_size)?;
    opts.listing_budget = usize::try_from(parse_size(&a.listing_budget)?).context("--listing-budget is too large")?;
    opts.poll_interval = Duration::from_secs_f64(a.poll_interval.max(0.1));
    opts.settle = Duration::from_secs_f64(a.settle.max(0.0));
    let c2 = client.clone();
    let open: crate::fs::OpenBackend = Arc::new(move |r| Ok(c2.ctx().stores().open_record(r)?));
    let stop = client.ctx().cancel.clone();
    let fs = crate::fs::Fs::new(client, open, secret, opts).context("preparing the mount")?;
    let cfg = crate::fuse::MountConfig { allow_other: a.allow_other, threads: a.threads };
    let mp = a.mountpoint.display().to_string();
    let meter = fs.clone();
    crate::fuse::serve(fs, &a.mountpoint, &cfg, stop.flag(), || {
        eprintln!("bakthat: mounted on {mp}; Ctrl-C or `bakthat umount {mp}` to unmount");
    })
    .with_context(|| format!("mounting on {mp} (is it an empty directory, and is /dev/fuse usable?)"))?;
    let totals = meter.store_totals();
    tracing::info!(requests = totals.requests, bytes_read = totals.bytes_read, "unmounted {mp}");
    Ok(EXIT_OK)
}

pub(super) fn umount(mp: &Path) -> Result<i32> {
    mount::unmount(mp)?;
    Ok(EXIT_OK)
}

/// Where the mount keeps its cache, /incoming staging and (with --daemon) its log.
fn cache_dir(a: &MountArgs) -> Result<PathBuf> {
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
fn daemonize(a: &MountArgs, cache_dir: &Path, secret: Option<&Secret>) -> Result<i32> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).filter(|x| x != "--daemon").collect();
    let hand_over = secret.filter(|_| !password_from_file() && std::env::var_os("BAKTHAT_PASSWORD").is_none());
    if hand_over.is_some() {
        args.push("--password-stdin".into());
    }
    let started = mount::start_detached(&DetachedCommand {
        program: std::env::current_exe()?,
        args,
        stdin: hand_over.map(Secret::bytes),
        cache_dir,
        mountpoint: &a.mountpoint,
        timeout: Duration::from_secs(30),
    })?;
    println!("mounted on {} (pid {}, log {})", started.mountpoint.display(), started.pid, started.log.display());
    Ok(EXIT_OK)
}

/// How many live backups are encrypted, counted row by row (a million rows read as records held ~1 GB at once).
fn encrypted_rows(inventory: &crate::inventory::Inventory) -> Result<usize> {
    let mut n = 0;
    inventory.for_each_live_row(|r| n += usize::from(r.is_enc()))?;
    Ok(n)
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

#[cfg(test)]
mod tests {
    use crate::inventory::{sample, Inventory};

    // Regression (issue 16): the mount counted encrypted backups by reading every row as a record at once, which
    // made a million-row mount peak at ~1 GB before the catalog was even built.
    #[test]
    fn encrypted_backups_are_counted_without_holding_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path().join("inv.sqlite")).unwrap();
        let mut rows: Vec<_> = (0..2_000).map(sample::row).collect();
        for (r, _) in rows.iter_mut().take(3) {
            r.stored_filename = crate::model::StoredName::from_key(format!("{}.enc", r.stored_filename));
        }
        inv.insert_with_indexes(&rows).unwrap();
        let expected = inv.search(&Default::default()).unwrap().iter().filter(|r| r.is_enc()).count();
        crate::test_heap::take_peak();
        let before = crate::test_heap::held();
        assert_eq!(super::encrypted_rows(&inv).unwrap(), expected);
        assert_eq!(expected, 3);
        let peak = crate::test_heap::take_peak() - before;
        assert!(peak < 64 << 10, "counting 2,000 rows held {peak} bytes at once");
    }
}
