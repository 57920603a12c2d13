//! `backup`: pack a file or directory, upload it and its index sidecar, record it.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Ctx, OpsError, Watched};
use crate::archive::crypto::{KdfParams, MasterKey};
use crate::archive::pack::{Filter, PackOptions, PackWarning};
use crate::archive::{self, ArchiveError, Encryption, Secret};
use crate::model::{self, BackupRecord, Compression, Destination, Format, NewMetadata, StoredName};
use crate::storage::{Backend, PutOptions};

/// Suffix of the index sidecar object stored beside each archive.
pub const INDEX_SUFFIX: &str = ".index";

/// What to back up and how.
#[derive(Default)]
pub struct BackupOptions {
    pub source: PathBuf,
    /// `-d`; the profile's default destination when `None`.
    pub destination: Option<Destination>,
    /// Space-separated tags.
    pub tags: Vec<String>,
    /// The backup's name instead of the source's basename.
    pub name: Option<String>,
    pub password: Option<Arc<Secret>>,
    /// Decides which paths below the source are included.
    pub filter: Option<Filter>,
    /// A storage class for stores that have them.
    pub storage_class: Option<String>,
    /// `--compression`: overrides the profile's `compression` (and turns compression on).
    pub compression: Option<Compression>,
    /// Overrides the pack defaults (span, compression, level, threads) when set.
    pub pack: Option<PackOptions>,
    /// Called with the number of source bytes just read, besides the context's reporter (the mount shows it as
    /// the progress of an /incoming backup).
    pub progress: Option<crate::archive::pack::Progress>,
    /// `-x`: directories on another file system than the source are stored empty, not descended into.
    pub one_file_system: bool,
    /// `--full`, `--incremental`, or the profile's `incremental:` policy.
    pub kind: super::BackupKind,
}

/// What a backup stored.
#[derive(Debug)]
pub struct BackupOutcome {
    pub record: BackupRecord,
    /// Files skipped or damaged while reading; the CLI exits 1 when there are any.
    pub warnings: Vec<PackWarning>,
    /// Leftovers of earlier interrupted uploads that were cleaned up.
    pub cleaned: u64,
    /// Where the archive went, for people: the store's description (`local store /home/u/.local/share/...`).
    pub store: String,
}

/// How bakthat 0.6 recognised an input that is already a gzipped tar (mimetypes: .tgz, .tar.gz, .taz, .tz).
fn already_gzipped(name: &str) -> bool {
    [".tgz", ".tar.gz", ".taz", ".tz"].iter().any(|s| name.ends_with(s))
}

/// 0.6's `re.sub(r'(\.t(ar\.)?gz)', '', arcname)`: every `.tgz` and `.tar.gz` removed.
fn strip_gz(name: &str) -> String {
    let re = regex::Regex::new(r"\.t(ar\.)?gz").expect("static regex");
    re.replace_all(name, "").into_owned()
}

/// How to pack: `opts.pack` as given, else the compression of `--compression` or the profile, at the profile's
/// `compression_level` when that level is for this compression (else the compression's default).
fn pack_options(ctx: &Ctx, opts: &BackupOptions) -> PackOptions {
    if let Some(p) = &opts.pack {
        return p.clone();
    }
    let compression = opts.compression.unwrap_or(ctx.profile.compression());
    let level = ctx.profile.compression_level.filter(|_| compression == ctx.profile.compression()).map(i32::from);
    PackOptions { compression, level, ..PackOptions::default() }
}

/// Backs up `opts.source`.
pub fn backup(ctx: &Ctx, opts: &BackupOptions) -> Result<BackupOutcome, OpsError> {
    let source = fs::canonicalize(&opts.source).map_err(|_| OpsError::SourceMissing { path: opts.source.clone() })?;
    let meta = fs::metadata(&source)
        .map_err(|e| OpsError::Io { context: format!("reading {}", source.display()), source: e })?;
    let arcname = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
    let name = opts.name.clone().unwrap_or_else(|| arcname.clone());
    let destination = ctx.destination(opts.destination);
    let backend = ctx.stores().open(destination)?;
    let journal = super::journal_for(ctx, destination, &backend)?;
    let cleaned = backend.cleanup()?;

    let enc = match &opts.password {
        Some(secret) => {
            Some(Encryption { master: master_key(ctx, secret)?, chunk_size: archive::crypto::DEFAULT_CHUNK_SIZE })
        }
        None => None,
    };
    // What to store: an archive, or the file as it is (compression off, or already a .tgz as 0.6 did).
    let pack = pack_options(ctx, opts);
    let compress = ctx.profile.compress() || opts.compression.is_some();
    let raw = !compress || (meta.is_file() && already_gzipped(&arcname));
    if raw && meta.is_dir() {
        return Err(OpsError::NeedsFile { path: source });
    }
    let (key_name, archive_kind) = match (compress, raw) {
        (false, _) => (name.clone(), None),
        (true, true) => (strip_gz(&name), Some(Compression::Gzip)),
        (true, false) => (name.clone(), Some(pack.compression)),
    };
    // A directory under an `incremental:` policy (or `--incremental`) joins a chain (see ops::incremental).
    let chain = if raw || !meta.is_dir() {
        None
    } else {
        let store = ctx.stores().identity(destination)?;
        let secret = opts.password.as_deref();
        super::incremental::start(ctx, opts.kind, &name, &source, &store, destination, secret)?
    };
    let parent = chain.as_ref().and_then(|c| c.parent.as_ref().map(|p| p.stored_filename.clone()));
    let new_name = |now| match (&parent, archive_kind) {
        (Some(_), Some(c)) => StoredName::incremental(&key_name, now, c, enc.is_some()),
        _ => StoredName::new(&key_name, now, archive_kind, enc.is_some()),
    };
    let mut now = ctx.now();
    let mut stored = new_name(now);
    // Two backups of one name within a second would collide: take the next free second.
    while ctx.inventory.get(&stored)?.is_some() || backend.head(stored.as_str())?.is_some() {
        now += 1;
        stored = new_name(now);
    }
    crate::storage::check_key(stored.as_str())?;

    let put = PutOptions { storage_class: opts.storage_class.clone(), ..PutOptions::default() };
    let upload = backend.create(stored.as_str(), &put)?;
    // Never read a backup through bakthat's own mount (`backup ~` with the mount at ~/backups read it all).
    let stop_at =
        if raw { Vec::new() } else { fs::read_to_string(MOUNTINFO).map(|m| bakthat_mounts(&m)).unwrap_or_default() };
    let dev = opts.one_file_system.then(|| std::os::unix::fs::MetadataExt::dev(&meta));
    // The total skips what the rules exclude, so the bar ends at 100% (the filter logs each exclusion once).
    let total = if raw {
        Some(meta.len())
    } else {
        let mut plan = Plan::default();
        plan_within(&source, &stop_at, dev, opts.filter.as_ref(), &mut plan);
        Some(plan.bytes)
    };
    let meter: Box<dyn super::Meter> = Box::new(AlsoTell {
        inner: ctx.reporter.start(&format!("backing up {}", source.display()), total),
        also: opts.progress.clone(),
    });
    let mut warnings = Vec::new();
    // A raw backup has no index: its plaintext size goes into the row (the mount shows it before any read).
    let mut plain_size = None;
    let (index, size, upload) = if raw {
        let file = fs::File::open(&source)
            .map_err(|e| OpsError::Io { context: format!("reading {}", source.display()), source: e })?;
        let mut counted = archive::CountingReader { inner: file, count: 0 };
        let input = Watched { inner: &mut counted, meter: Some(meter), cancel: &ctx.cancel };
        let (n, w) =
            archive::write_raw(input, enc.as_ref(), upload).map_err(|e| OpsError::from(e).classify(&ctx.cancel))?;
        plain_size = Some(counted.count);
        (None, n, w)
    } else {
        let mut pack = pack;
        pack.filter = opts.filter.clone();
        pack.one_file_system = opts.one_file_system;
        pack.changes = chain.as_ref().map(|c| c.tracker.clone());
        pack.stop_at = stop_at;
        let meter: Arc<dyn super::Meter> = Arc::from(meter);
        let m2 = meter.clone();
        pack.progress = Some(Arc::new(move |n| m2.inc(n)));
        let out = Watched { inner: upload, meter: None, cancel: &ctx.cancel };
        let result = archive::write_archive(&source, &arcname, &pack, enc.as_ref(), out);
        meter.finish();
        let (report, out) = result.map_err(|e| OpsError::from(e).classify(&ctx.cancel))?;
        warnings = report.warnings;
        for skipped in &report.not_descended {
            ctx.reporter.warn(&format!(
                "{}: stored empty, not descended into: {}",
                skipped.path.display(),
                skipped.message
            ));
        }
        let size = report.index.stored_len;
        (Some(report.index), size, out.inner)
    };
    let info = upload.commit()?;
    let sidecar = index.as_ref().map(|i| archive::index_sidecar(i, enc.as_ref()));
    let snapshot =
        chain.as_ref().map(|c| super::incremental::snapshot_sidecar(&c.tracker.finish().1, &stored, enc.as_ref()));
    let metadata = NewMetadata {
        client: ctx.host.clone(),
        encryption: if enc.is_some() { model::Encryption::V1 } else { model::Encryption::None },
        format: Some(if raw { Format::Raw } else { Format::Archive }),
        plain_size,
        // The class the store applied (S3): the mount tells an archived backup by it before any read.
        storage_class: info.storage_class.clone(),
        source: Some(source.to_string_lossy().into_owned()),
        chain: chain.is_some(),
        parent,
    };
    let record = BackupRecord {
        id: None,
        backend: destination,
        backend_hash: Some(ctx.stores().backend_hash(destination)?),
        backup_date: now,
        filename: if raw && compress { arcname.clone() } else { name.clone() },
        is_deleted: false,
        last_updated: now,
        metadata: metadata.to_json(),
        size: info.size.max(size),
        stored_filename: stored.clone(),
        tags: opts.tags.iter().flat_map(|t| t.split_whitespace()).collect::<Vec<_>>().join(" "),
        store: ctx.stores().identity(destination)?,
    };
    let mut entry_key = None;
    let master = enc.as_ref().map(|e| e.master.as_ref());
    let snap_key = format!("{stored}{}", super::incremental::SNAPSHOT_SUFFIX);
    let done = match &snapshot {
        Some(bytes) => super::incremental::put_snapshot(ctx, &record, backend.as_ref(), journal.as_deref(), bytes),
        None => Ok(()),
    }
    .and_then(|()| {
        finish(ctx, backend.as_ref(), journal.as_deref(), master, &record, sidecar.as_deref(), &mut entry_key)
    })
    .and_then(|()| match &snapshot {
        Some(bytes) => Ok(ctx.inventory.put_snapshot(&stored, bytes)?),
        None => Ok(()),
    });
    if let Err(e) = done {
        // Leave no object without a row, and no row without its object.
        let _ = backend.delete(stored.as_str());
        for key in [format!("{stored}{INDEX_SUFFIX}"), snap_key.clone()] {
            let _ = backend.delete(&key);
            if let Some(j) = &journal {
                let _ = j.delete(&key);
            }
        }
        if let (Some(key), Some(j)) = (entry_key, &journal) {
            let _ = j.delete(&key);
        }
        let _ = ctx.inventory.remove(&stored);
        return Err(e);
    }
    for w in &warnings {
        ctx.reporter.warn(&format!("{}: {}", w.path.display(), w.message));
    }
    Ok(BackupOutcome { record, warnings, cleaned, store: backend.describe() })
}

/// Stores the index sidecar and the journal entry (see [`crate::journal`]), then records the row.
pub(crate) fn finish(
    ctx: &Ctx,
    backend: &dyn Backend,
    journal: Option<&dyn Backend>,
    master: Option<&MasterKey>,
    record: &BackupRecord,
    sidecar: Option<&[u8]>,
    entry_key: &mut Option<String>,
) -> Result<(), OpsError> {
    if let Some(bytes) = sidecar {
        let key = format!("{}{INDEX_SUFFIX}", record.stored_filename);
        if record.backend == Destination::Glacier {
            // A vault can neither list nor quickly read small objects: Glacier's sidecars live in the profile's S3
            // bucket, beside its journal. The inventory keeps a copy either way, so trouble there is a warning.
            let stored = journal.map(|j| j.put_bytes(&key, bytes, &PutOptions::default()));
            match stored {
                Some(Ok(_)) => {}
                Some(Err(e)) => ctx.reporter.warn(&format!("{key} is kept in the inventory only: {e}")),
                None => {
                    ctx.reporter.warn(&format!("{key} is kept in the inventory only: the profile has no s3_bucket"))
                }
            }
        } else {
            // Beside the journal: for S3 that is the same bucket without the archives' (possibly cold) class.
            journal.unwrap_or(backend).put_bytes(&key, bytes, &PutOptions::default())?;
        }
    }
    if let Some(j) = journal {
        match crate::journal::publish_backup(j, record, sidecar, master) {
            Ok(key) => *entry_key = Some(key),
            // Glacier's journal is in another service (the profile's S3 bucket), which the credentials may not
            // reach: the backup itself is fine, so it stands, unjournaled.
            Err(e) if record.backend == Destination::Glacier => ctx.reporter.warn(&format!(
                "{} is stored but not journaled for sync ({e}); run `bakthat sync --publish -d glacier` later",
                record.stored_filename
            )),
            Err(e) => return Err(e.into()),
        }
    }
    ctx.inventory.insert_for_profile(record, Some(&ctx.profile_name))?;
    if let Some(bytes) = sidecar {
        ctx.inventory.put_index(&record.stored_filename, bytes)?;
    }
    Ok(())
}

/// The master key for new archives: one Argon2id run per process, with a salt kept in the inventory so that all of
/// this inventory's archives share it (a mount then derives one key for all of them; each file still gets its own
/// keys from its random file id).
pub(crate) fn master_key(ctx: &Ctx, secret: &Secret) -> Result<Arc<MasterKey>, OpsError> {
    let salt = match ctx.inventory.get_config("kdf_salt")?.and_then(|v| v.as_str().map(str::to_string)) {
        Some(hex) if hex.len() == 32 => {
            let mut s = [0u8; 16];
            for (i, b) in s.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            s
        }
        _ => {
            let s = MasterKey::random_salt();
            let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
            ctx.inventory.set_config("kdf_salt", &serde_json::Value::String(hex))?;
            s
        }
    };
    secret.keys().master(salt, KdfParams::default()).map_err(|e| OpsError::Archive(ArchiveError::Crypto(e)))
}

/// Where the kernel lists this process's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The mount points of bakthat's FUSE mounts in a `/proc/self/mountinfo` text (file system type `fuse.bakthat`, or
/// a FUSE file system whose source is `bakthat`).
pub(crate) fn bakthat_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let (fstype, source) = (*fields.get(sep + 1)?, *fields.get(sep + 2)?);
            let ours = fstype == "fuse.bakthat" || (fstype.starts_with("fuse") && source == "bakthat");
            let mount_point = unescape_octal(fields.get(4)?);
            ours.then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&mount_point)))
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escapes of space, tab, newline and backslash in mount points.
fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code =
            b.get(i + 1..i + 4).and_then(|o| std::str::from_utf8(o).ok()).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) if b[i] == b'\\' => {
                out.push(c);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// Bytes of regular files below `path` (for the progress bar's total; errors count as 0).
pub(crate) fn tree_size(path: &Path) -> u64 {
    let mut plan = Plan::default();
    plan_within(path, &[], None, None, &mut plan);
    plan.bytes
}

/// What a backup of a directory would read: its regular files and their bytes (before compression).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub files: u64,
    pub bytes: u64,
}

/// `backup --dry-run`: walks `source` as [`backup`] would (the filter applied, bakthat's own mounts and, with
/// `one_file_system`, other file systems not descended into) and opens no store.
pub fn plan(source: &Path, filter: Option<&Filter>, one_file_system: bool) -> Result<Plan, OpsError> {
    let source = fs::canonicalize(source).map_err(|_| OpsError::SourceMissing { path: source.to_path_buf() })?;
    let meta = fs::metadata(&source)
        .map_err(|e| OpsError::Io { context: format!("reading {}", source.display()), source: e })?;
    let stop_at = fs::read_to_string(MOUNTINFO).map(|m| bakthat_mounts(&m)).unwrap_or_default();
    let dev = one_file_system.then(|| std::os::unix::fs::MetadataExt::dev(&meta));
    let mut plan = Plan::default();
    plan_within(&source, &stop_at, dev, filter, &mut plan);
    Ok(plan)
}

/// Adds the regular files below `path` to `plan`, not descending into `stop` or, with `dev`, into other file
/// systems, and skipping what `filter` excludes (as the packer does); errors count as nothing.
fn plan_within(path: &Path, stop: &[PathBuf], dev: Option<u64>, filter: Option<&Filter>, plan: &mut Plan) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else { return };
    if meta.is_file() {
        plan.files += 1;
        plan.bytes += meta.len();
        return;
    }
    if !meta.is_dir() || stop.iter().any(|s| s == path) || dev.is_some_and(|d| d != meta.dev()) {
        return;
    }
    let Ok(read) = fs::read_dir(path) else { return };
    for child in read.flatten().map(|e| e.path()) {
        let is_dir = fs::symlink_metadata(&child).is_ok_and(|m| m.is_dir());
        if filter.is_some_and(|f| !f(&child, is_dir)) {
            continue;
        }
        plan_within(&child, stop, dev, filter, plan);
    }
}

/// A reporter's meter that also passes progress to a caller's callback.
struct AlsoTell {
    inner: Box<dyn super::Meter>,
    also: Option<crate::archive::pack::Progress>,
}

impl super::Meter for AlsoTell {
    fn inc(&self, n: u64) {
        if let Some(f) = &self.also {
            f(n);
        }
        self.inner.inc(n);
    }

    fn finish(&self) {
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_names_follow_0_6() {
        assert!(already_gzipped("a.tgz") && already_gzipped("a.tar.gz") && already_gzipped("a.taz"));
        assert!(!already_gzipped("a.TGZ") && !already_gzipped("a.gz"));
        assert_eq!(strip_gz("already.tar.gz"), "already");
        assert_eq!(strip_gz("x.tgz.tar.gz"), "x");
        assert_eq!(strip_gz("a.taz"), "a.taz");
    }

    #[test]
    fn own_mounts_are_found_in_mountinfo() {
        let info = "\
36 35 98:0 / / rw,noatime - ext4 /dev/vda rw
80 36 0:50 / /home/u/backups rw,nosuid,nodev shared:40 - fuse.bakthat bakthat rw,user_id=0,group_id=0
81 36 0:51 / /home/u/my\\040mount rw - fuse bakthat rw
82 36 0:52 / /media/other rw - fuse.sshfs host:/x rw
83 36 0:53 / /mnt/bakthat rw - tmpfs bakthat rw
";
        assert_eq!(bakthat_mounts(info), [PathBuf::from("/home/u/backups"), PathBuf::from("/home/u/my mount")]);
        assert_eq!(unescape_octal("a\\134b\\011"), b"a\\b\t");
    }
}
