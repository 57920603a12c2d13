//! Safe, atomic extraction of a plain tar stream: the restore side of bakthat's archives.
//!
//! Everything is first extracted into a private staging directory, `dest/.bakthat-restore-<random hex>` (mode
//! 0700), and only once the whole stream has been read without error is each top-level entry moved to its final
//! name with rename(2). On any error the staging directory is removed and nothing appears under a final name.
//! A staging directory left behind by a crash (a process killed mid-restore) holds nothing but restore data and is
//! safe to delete; it is never removed automatically, because another restore may be using it.
//!
//! Entries are sanitised, unlike bakthat 0.6 which called `tarfile.extractall()` on whatever it downloaded:
//! absolute names, `..` components, empty names, NUL bytes, components over 255 bytes and paths over 4095 bytes are
//! refused (one rule, [`crate::model::relative_path`]); nothing is ever written through a
//! symlink; hard links must point at a file extracted earlier from the same stream; device nodes and FIFOs are
//! skipped. A hostile entry fails the whole restore with [`ExtractError::Unsafe`].
//!
//! This module is not the archive reader: decompression, decryption and integrity checks happen in the reader the
//! caller hands in (their errors come back as [`ExtractError::Archive`]). It knows nothing about stores or the
//! inventory. Unix only.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, DirBuilder, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

use super::index::Counted;

/// Prefix of the staging directory created inside the destination.
pub const STAGING_PREFIX: &str = ".bakthat-restore-";

/// Size of the buffer used to copy file data.
const COPY_BUFFER: usize = 64 * 1024;

/// Regular files up to this size are read whole and created by the writer threads ([`writers`]); larger ones are
/// copied by the reading thread.
const HANDOFF_MAX: u64 = 1 << 20;

mod writers;

/// How to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Replace existing entries of the same name (directories are merged); without it an existing top-level name
    /// is [`ExtractError::Exists`].
    pub overwrite: bool,
    /// Restore owners (uid/gid) and setuid/setgid bits from the archive; only honoured when running as root.
    pub preserve_owner: bool,
}

/// What an extraction did.
#[derive(Debug, Default)]
pub struct ExtractSummary {
    /// Entries created: files, directories, symlinks and hard links (skipped entries are not counted).
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// The distinct first path components of the created entries, in order of appearance.
    pub top_level: Vec<PathBuf>,
    /// Entries not created (device nodes, FIFOs, unknown types), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Why an extraction failed. In every case nothing was left under a final name in the destination, except when
/// moving entries into place (the last step) fails part way; see [`extract`].
#[derive(thiserror::Error, Debug)]
pub enum ExtractError {
    /// A hostile or malformed entry; the whole restore was refused.
    #[error("refusing unsafe archive entry {path}: {reason}")]
    Unsafe {
        /// The entry's name as stored in the archive (control characters escaped).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A top-level entry already exists in the destination and overwriting was not asked for.
    #[error("{path} already exists; pass --force to overwrite it, or restore to another directory with --to")]
    Exists {
        /// The existing path in the destination.
        path: PathBuf,
    },
    /// Writing to the destination failed (disk full shows here).
    #[error("writing {path}: {source}")]
    Io {
        /// The final path of the entry being written (or the destination itself).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the tar stream failed: truncated or malformed archive, or an error from the reader underneath
    /// (decryption, integrity check, network).
    #[error("reading the archive: {0}")]
    Archive(#[source] io::Error),
}

/// Extracts `tar` into `dest` (which must exist). Nothing appears under a final name unless the whole stream
/// succeeded, up to its end-of-archive blocks (a stream that stops on an entry boundary without them is truncated:
/// [`ExtractError::Archive`] with [`std::io::ErrorKind::UnexpectedEof`]).
///
/// The entries are staged in `dest/.bakthat-restore-<random hex>` and then moved into place one top-level name at
/// a time. Without `opts.overwrite`, an existing top-level name fails the restore as soon as the first entry of that
/// name is read (before its data). With it, directories are merged recursively, and files and symlinks replace
/// existing entries atomically; an entry of another type (file against directory) replaces the existing one.
/// If moving into place fails part way (a rename error, or a name created by someone else meanwhile), the entries
/// moved so far stay and the rest is removed with the staging directory. Directory modes and times are applied
/// last, deepest first, at the final locations.
pub fn extract<R: Read>(tar: R, dest: &Path, opts: &ExtractOptions) -> Result<ExtractSummary, ExtractError> {
    let mut staging = Staging::create(dest)?;
    let mut ex = Extractor::new(dest, staging.tree.clone(), opts);
    let mut archive = tar::Archive::new(Counted::new(tar));
    for entry in archive.entries().map_err(ExtractError::Archive)? {
        let entry = entry.map_err(ExtractError::Archive)?;
        ex.entry(entry)?;
    }
    // A stream that ran out on an entry boundary is cut short, not complete: nothing goes under a final name.
    archive.into_inner().check_ended().map_err(ExtractError::Archive)?;
    ex.writers.wait_idle()?;
    ex.commit(&mut staging)?;
    drop(staging);
    Ok(ex.summary)
}

/// Mode, mtime and owner of an entry, from its header.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
}

/// What was found at an entry's final name inside the staging tree.
enum Slot {
    Free,
    Directory,
}

struct Extractor<'a> {
    dest: &'a Path,
    /// Root of the staged tree (`staging/tree`).
    tree: PathBuf,
    overwrite: bool,
    /// Restore owners and setuid/setgid bits (root and `preserve_owner`).
    privileged: bool,
    summary: ExtractSummary,
    top_seen: HashSet<PathBuf>,
    /// Relative paths known to be real directories in the staged tree; directories are never replaced.
    known_dirs: HashSet<PathBuf>,
    /// Relative paths of regular files (and hard links to them) currently in the staged tree.
    files: HashSet<PathBuf>,
    /// Relative paths of symlinks currently in the staged tree. With `known_dirs` and `files` this is everything
    /// the staged tree holds (it is private and starts empty), so a name in none of them needs no lookup.
    symlinks: HashSet<PathBuf>,
    /// Modes and times of explicit directory entries (a later entry for the same name wins).
    dir_meta: HashMap<PathBuf, Meta>,
    buf: Vec<u8>,
    /// Create small files while this thread reads on. Every path in `files` may still be on its way.
    writers: writers::Writers,
}

impl<'a> Extractor<'a> {
    fn new(dest: &'a Path, tree: PathBuf, opts: &ExtractOptions) -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        Extractor {
            dest,
            tree,
            overwrite: opts.overwrite,
            privileged: opts.preserve_owner && root,
            summary: ExtractSummary::default(),
            top_seen: HashSet::new(),
            known_dirs: HashSet::new(),
            files: HashSet::new(),
            symlinks: HashSet::new(),
            dir_meta: HashMap::new(),
            buf: vec![0; COPY_BUFFER],
            writers: writers::Writers::start(writer_threads()),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        // A GNU dumpdir (an incremental backup's directory) is a directory; its list of contents is not needed here.
        let kind = if super::incremental::is_dumpdir(kind) { EntryType::Directory } else { kind };
        let rel = match normalize(&raw) {
            Ok(Some(rel)) => rel,
            Ok(None) if kind == EntryType::Directory => {
                tracing::debug!("ignoring the archive's root directory entry; the destination keeps its own mode");
                return Ok(());
            }
            Ok(None) => return Err(unsafe_entry(&raw, "empty name")),
            Err(reason) => return Err(unsafe_entry(&raw, reason)),
        };
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => self.file(&mut entry, &raw, &rel),
            EntryType::Directory => self.directory(&entry, &raw, &rel),
            EntryType::Symlink => self.symlink(&entry, &raw, &rel),
            EntryType::Link => self.hard_link(&entry, &raw, &rel),
            EntryType::Char => self.skip(rel, "character device nodes are not restored"),
            EntryType::Block => self.skip(rel, "block device nodes are not restored"),
            EntryType::Fifo => self.skip(rel, "FIFOs are not restored"),
            other => self.skip(rel, format!("unsupported entry type {:?}", other.as_byte() as char)),
        }
    }

    fn skip(&mut self, rel: PathBuf, reason: impl Into<String>) -> Result<(), ExtractError> {
        let reason = reason.into();
        tracing::warn!(path = %rel.display(), "skipping archive entry: {reason}");
        self.summary.skipped.push((rel, reason));
        Ok(())
    }

    fn file<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &[u8], rel: &Path) -> Result<(), ExtractError> {
        let meta = self.meta(entry.header())?;
        let expected = entry.size();
        self.prepare(raw, rel, false)?;
        let final_path = self.dest.join(rel);
        let mode = meta.mode & self.mode_mask();
        let owner = self.privileged.then_some((meta.uid as u32, meta.gid as u32));
        if expected <= HANDOFF_MAX {
            let mut data = Vec::with_capacity(expected as usize);
            entry.read_to_end(&mut data).map_err(ExtractError::Archive)?;
            check_length(raw, data.len() as u64, expected)?;
            self.files.insert(rel.to_path_buf());
            self.summary.entries += 1;
            self.summary.bytes += expected;
            let mtime = to_system_time(meta.mtime);
            let job = writers::Job { staged: self.tree.join(rel), final_path, data, mode, mtime, owner };
            return self.writers.submit(job);
        }
        let io_err = |source| ExtractError::Io { path: final_path.clone(), source };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.tree.join(rel))
            .map_err(io_err)?;
        self.files.insert(rel.to_path_buf());
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ExtractError::Archive(e)),
            };
            file.write_all(&self.buf[..n]).map_err(io_err)?;
            written += n as u64;
        }
        check_length(raw, written, expected)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_err)?;
        }
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_err)?;
        if let Some(t) = to_system_time(meta.mtime) {
            file.set_times(FileTimes::new().set_modified(t)).map_err(io_err)?;
        }
        self.summary.entries += 1;
        self.summary.bytes += written;
        Ok(())
    }

    fn directory<R: Read>(&mut self, entry: &tar::Entry<'_, R>, raw: &[u8], rel: &Path) -> Result<(), ExtractError> {
        let meta = self.meta(entry.header())?;
        if let Slot::Free = self.prepare(raw, rel, true)? {
            create_dir(&self.tree.join(rel))
                .map_err(|source| ExtractError::Io { path: self.dest.join(rel), source })?;
            self.known_dirs.insert(rel.to_path_buf());
        }
        self.dir_meta.insert(rel.to_path_buf(), meta);
        self.summary.entries += 1;
        Ok(())
    }

    fn symlink<R: Read>(&mut self, entry: &tar::Entry<'_, R>, raw: &[u8], rel: &Path) -> Result<(), ExtractError> {
        let meta = self.meta(entry.header())?;
        let target = match entry.link_name_bytes() {
            Some(t) if t.contains(&0) => return Err(unsafe_entry(raw, "symlink target contains a NUL byte")),
            Some(t) if !t.is_empty() => t.into_owned(),
            _ => return Err(unsafe_entry(raw, "symlink without a target")),
        };
        self.prepare(raw, rel, false)?;
        let path = self.tree.join(rel);
        let io_err = |source| ExtractError::Io { path: self.dest.join(rel), source };
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(io_err)?;
        self.symlinks.insert(rel.to_path_buf());
        if self.privileged {
            std::os::unix::fs::lchown(&path, Some(meta.uid as u32), Some(meta.gid as u32)).map_err(io_err)?;
        }
        if let Err(e) = set_symlink_mtime(&path, meta.mtime) {
            tracing::debug!(path = %rel.display(), "could not set the symlink's mtime: {e}");
        }
        self.summary.entries += 1;
        Ok(())
    }

    fn hard_link<R: Read>(&mut self, entry: &tar::Entry<'_, R>, raw: &[u8], rel: &Path) -> Result<(), ExtractError> {
        let target = match entry.link_name_bytes().map(|t| normalize(&t)) {
            Some(Ok(Some(target))) => target,
            _ => return Err(unsafe_entry(raw, "hard link points outside the archive")),
        };
        if !self.files.contains(&target) {
            return Err(unsafe_entry(raw, "hard link target is not a file extracted earlier from the archive"));
        }
        if target != rel {
            self.prepare(raw, rel, false)?;
            // The target may still be with a writer.
            self.writers.wait_idle()?;
            fs::hard_link(self.tree.join(&target), self.tree.join(rel))
                .map_err(|source| ExtractError::Io { path: self.dest.join(rel), source })?;
            self.files.insert(rel.to_path_buf());
        }
        self.summary.entries += 1;
        Ok(())
    }

    fn meta(&self, header: &tar::Header) -> Result<Meta, ExtractError> {
        Ok(Meta {
            mode: header.mode().map_err(ExtractError::Archive)?,
            mtime: header.mtime().map_err(ExtractError::Archive)?,
            uid: header.uid().map_err(ExtractError::Archive)?,
            gid: header.gid().map_err(ExtractError::Archive)?,
        })
    }

    fn mode_mask(&self) -> u32 {
        if self.privileged {
            0o7777
        } else {
            0o1777
        }
    }

    /// Gets the staged tree ready for an entry at `rel`: registers its top-level name (failing fast if it exists in
    /// the destination), creates missing parents after checking that every existing one is a real directory, and
    /// clears the final name (an earlier non-directory entry of the same name is replaced; a directory is reused
    /// when `want_dir`).
    fn prepare(&mut self, raw: &[u8], rel: &Path, want_dir: bool) -> Result<Slot, ExtractError> {
        self.register_top_level(rel)?;
        let mut prefix = PathBuf::new();
        let mut components = rel.components().peekable();
        while let Some(component) = components.next() {
            if components.peek().is_none() {
                break;
            }
            prefix.push(component);
            if self.known_dirs.contains(&prefix) {
                continue;
            }
            let path = self.tree.join(&prefix);
            if self.files.contains(&prefix) {
                self.writers.wait_idle()?;
            } else if !self.symlinks.contains(&prefix) {
                // Nothing of that name was staged: no lookup needed.
                create_dir(&path).map_err(|source| ExtractError::Io { path: self.dest.join(&prefix), source })?;
                self.known_dirs.insert(prefix.clone());
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => return Err(unsafe_entry(raw, "path goes through a symlink")),
                Ok(_) => return Err(unsafe_entry(raw, "path goes through an entry that is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dir(&path).map_err(|source| ExtractError::Io { path: self.dest.join(&prefix), source })?
                }
                Err(source) => return Err(ExtractError::Io { path: self.dest.join(&prefix), source }),
            }
            self.known_dirs.insert(prefix.clone());
        }
        if self.files.contains(rel) {
            self.writers.wait_idle()?;
        } else if !self.known_dirs.contains(rel) && !self.symlinks.contains(rel) {
            return Ok(Slot::Free);
        }
        let path = self.tree.join(rel);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Slot::Free),
            Err(source) => Err(ExtractError::Io { path: self.dest.join(rel), source }),
            Ok(m) if m.file_type().is_dir() && want_dir => Ok(Slot::Directory),
            Ok(m) if m.file_type().is_dir() || want_dir => {
                Err(unsafe_entry(raw, "entry conflicts with an earlier entry of another type"))
            }
            Ok(_) => {
                fs::remove_file(&path).map_err(|source| ExtractError::Io { path: self.dest.join(rel), source })?;
                self.files.remove(rel);
                self.symlinks.remove(rel);
                Ok(Slot::Free)
            }
        }
    }

    fn register_top_level(&mut self, rel: &Path) -> Result<(), ExtractError> {
        let Some(first) = rel.components().next() else { return Ok(()) };
        let first = PathBuf::from(first.as_os_str());
        if self.top_seen.contains(&first) {
            return Ok(());
        }
        let final_path = self.dest.join(&first);
        match fs::symlink_metadata(&final_path) {
            Ok(_) if !self.overwrite => return Err(ExtractError::Exists { path: final_path }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ExtractError::Io { path: final_path, source }),
        }
        self.top_seen.insert(first.clone());
        self.summary.top_level.push(first);
        Ok(())
    }

    /// Moves every top-level entry into place, then applies directory modes and times deepest first.
    fn commit(&mut self, staging: &mut Staging) -> Result<(), ExtractError> {
        for name in &self.summary.top_level {
            let src = self.tree.join(name);
            let dst = self.dest.join(name);
            if self.overwrite {
                place(staging, &src, &dst)?;
            } else {
                rename_noreplace(&src, &dst).map_err(|source| {
                    if source.kind() == io::ErrorKind::AlreadyExists {
                        ExtractError::Exists { path: dst.clone() }
                    } else {
                        ExtractError::Io { path: dst.clone(), source }
                    }
                })?;
            }
        }
        let mut dirs: Vec<(&PathBuf, &Meta)> = self.dir_meta.iter().collect();
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, meta) in dirs {
            let path = self.dest.join(rel);
            apply_dir_meta(&path, meta, self.privileged, self.mode_mask())
                .map_err(|source| ExtractError::Io { path, source })?;
        }
        Ok(())
    }
}

/// Moves `src` (in staging) to `dst`, merging directories and replacing anything else.
fn place(staging: &mut Staging, src: &Path, dst: &Path) -> Result<(), ExtractError> {
    let io_err = |source| ExtractError::Io { path: dst.to_path_buf(), source };
    let src_is_dir = fs::symlink_metadata(src).map_err(io_err)?.file_type().is_dir();
    let dst_is_dir = match fs::symlink_metadata(dst) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return fs::rename(src, dst).map_err(io_err),
        Err(e) => return Err(io_err(e)),
        Ok(m) => m.file_type().is_dir(),
    };
    match (src_is_dir, dst_is_dir) {
        (true, true) => {
            for child in fs::read_dir(src).map_err(io_err)? {
                let name = child.map_err(io_err)?.file_name();
                place(staging, &src.join(&name), &dst.join(&name))?;
            }
            Ok(())
        }
        // rename(2) replaces a file or symlink atomically.
        (false, false) => fs::rename(src, dst).map_err(io_err),
        _ => {
            let aside = staging.set_aside(dst).map_err(io_err)?;
            fs::rename(src, dst).map_err(|e| {
                // Put the old entry back rather than delete it with the staging directory.
                let _ = fs::rename(&aside, dst);
                io_err(e)
            })
        }
    }
}

/// The private staging directory; removed (best effort) when dropped.
struct Staging {
    root: PathBuf,
    tree: PathBuf,
    replaced: u64,
}

impl Staging {
    fn create(dest: &Path) -> Result<Self, ExtractError> {
        let io_err = |source| ExtractError::Io { path: dest.to_path_buf(), source };
        let mut attempts = 0;
        let root = loop {
            let mut random = [0u8; 8];
            getrandom::getrandom(&mut random).map_err(|e| io_err(io::Error::other(e.to_string())))?;
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let root = dest.join(format!("{STAGING_PREFIX}{hex}"));
            match DirBuilder::new().mode(0o700).create(&root) {
                Ok(()) => break root,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
                Err(e) => return Err(io_err(e)),
            }
        };
        let staging = Staging { tree: root.join("tree"), root, replaced: 0 };
        DirBuilder::new().mode(0o700).create(&staging.tree).map_err(io_err)?;
        Ok(staging)
    }

    /// Moves an existing destination entry into the staging directory, to be deleted with it.
    fn set_aside(&mut self, path: &Path) -> io::Result<PathBuf> {
        let old = self.root.join("replaced");
        if self.replaced == 0 {
            DirBuilder::new().mode(0o700).create(&old)?;
        }
        self.replaced += 1;
        let aside = old.join(self.replaced.to_string());
        fs::rename(path, &aside)?;
        Ok(aside)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_best_effort(&self.root);
    }
}

/// Removes a tree; on failure makes every directory in it writable by its owner and tries once more.
fn remove_best_effort(root: &Path) {
    match fs::remove_dir_all(root) {
        Ok(()) => return,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(_) => make_dirs_writable(root),
    }
    if let Err(e) = fs::remove_dir_all(root) {
        tracing::warn!(path = %root.display(), "could not remove the restore staging directory ({e}); it is safe to delete");
    }
}

fn make_dirs_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else { return };
    if !meta.file_type().is_dir() {
        return;
    }
    if meta.mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode((meta.mode() | 0o700) & 0o7777));
    }
    if let Ok(children) = fs::read_dir(dir) {
        for child in children.flatten() {
            make_dirs_writable(&child.path());
        }
    }
}

/// Writer threads: one per core, at most four.
fn writer_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

/// A file's data that came up short is a truncated archive.
fn check_length(raw: &[u8], written: u64, expected: u64) -> Result<(), ExtractError> {
    if written == expected {
        return Ok(());
    }
    Err(ExtractError::Archive(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the archive ends in the middle of {} ({written} of {expected} bytes)", escape(raw)),
    )))
}

/// [`crate::model::relative_path`], the one confinement rule for names that become paths, with its reason as text.
/// `Ok(None)` means the name is the archive root (`.` or `./`).
fn normalize(bytes: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    crate::model::relative_path(bytes).map_err(crate::model::NameError::reason)
}

fn unsafe_entry(raw: &[u8], reason: &'static str) -> ExtractError {
    ExtractError::Unsafe { path: escape(raw), reason }
}

/// The name for messages: lossy UTF-8 with control characters escaped, so a hostile name cannot drive the terminal.
fn escape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in String::from_utf8_lossy(raw).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o755).create(path)
}

fn to_system_time(secs: u64) -> Option<SystemTime> {
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Applies mode, times and (if privileged) owner to a directory, without following a symlink at `path`.
fn apply_dir_meta(path: &Path, meta: &Meta, privileged: bool, mask: u32) -> io::Result<()> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if privileged {
        std::os::unix::fs::fchown(&dir, Some(meta.uid as u32), Some(meta.gid as u32))?;
    }
    dir.set_permissions(fs::Permissions::from_mode(meta.mode & mask))?;
    if let Some(t) = to_system_time(meta.mtime) {
        dir.set_times(FileTimes::new().set_modified(t))?;
    }
    Ok(())
}

/// Sets a symlink's own mtime (lutimes), leaving its atime alone.
fn set_symlink_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let secs = libc::time_t::try_from(mtime).map_err(io::Error::other)?;
    // SAFETY: timespec is plain old data; all-zero is a valid value.
    let mut times: [libc::timespec; 2] = unsafe { std::mem::zeroed() };
    times[0].tv_nsec = libc::UTIME_OMIT;
    times[1].tv_sec = secs;
    // SAFETY: `path` is a NUL-terminated string and `times` points at two timespecs, both alive for the call.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// rename(2) that fails with `AlreadyExists` instead of replacing `dst` (renameat2 RENAME_NOREPLACE, with a
/// check-then-rename fallback on file systems that do not support it).
fn rename_noreplace(src: &Path, dst: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let c_src = CString::new(src.as_os_str().as_bytes())?;
        let c_dst = CString::new(dst.as_os_str().as_bytes())?;
        // SAFETY: both paths are NUL-terminated strings alive for the call; renameat2 takes
        // (int, const char *, int, const char *, unsigned int).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                c_src.as_ptr(),
                libc::AT_FDCWD,
                c_dst.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(err);
        }
    }
    match fs::symlink_metadata(dst) {
        Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(src, dst),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
