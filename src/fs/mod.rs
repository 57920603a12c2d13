//! The mount's logic in plain Rust types: the tree built from the inventory and the entry indexes, inode numbers,
//! attributes, reads through the block cache, cold-storage state and the errno table. It knows nothing about fuser;
//! `crate::fuse` converts kernel requests into calls of [`Fs`] and replies with what they return. So all of it is
//! tested without a kernel (see `tests.rs`), over a backend that counts its requests.
//!
//! The tree (names escaped by [`names`]):
//! ```text
//! /by-name/<name>/<2026-11-22T040805Z>/<the archive's own entries>   and  /by-name/<name>/latest -> newest
//! /by-tag/<tag>/<name>/<timestamp>/…
//! /by-date/YYYY/MM/DD/<name>@HHMMSS/…
//! /incoming/
//! ```
//! Each backup directory also holds `.bakthat-status`, a small text file saying where the backup is, whether it
//! can be read now (cold storage) and how much of it is cached. Listing and `stat` are answered from the inventory
//! and the entry indexes it keeps: they never reach a store, and never start a cold-storage retrieval. A backup made
//! without compression (a single raw file) shows as that file inside its backup directory.

pub mod cache;
pub mod incoming;
pub mod names;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::archive::index::{EntryKind, Index};
use crate::archive::read::{Decoder, RangeRead, ReadError};
use crate::archive::{self, ArchiveError, Hints, Secret};
use crate::inventory::{InventoryError, Job, JobKind, JobStatus, Query};
use crate::model::{BackupRecord, Epoch};
use crate::ops::{Ctx, OpsError};
use crate::storage::metered::{Meter, Metered, Totals};
use crate::storage::{Backend, Retrieval, StorageError};
use cache::BlockCache;

/// An inode number; [`ROOT`] is the mount's root.
pub type Ino = u64;
/// The root directory's inode.
pub const ROOT: Ino = 1;
/// Every extended attribute the mount shows starts with this.
pub const XATTR_PREFIX: &str = "user.bakthat.";
/// Name of the status file in each backup directory.
pub const STATUS_FILE: &[u8] = b".bakthat-status";

/// Why a filesystem operation failed. `crate::fuse` maps every variant to an errno in one exhaustive match.
#[derive(Debug, Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("not a symbolic link")]
    NotASymlink,
    #[error("the mount is read-only outside /incoming")]
    ReadOnly,
    #[error("unknown file handle {0}")]
    BadHandle(u64),
    #[error("no such extended attribute")]
    NoXattr,
    #[error("the extended attribute is larger than the buffer")]
    XattrTooSmall,
    #[error("this extended attribute namespace is not supported (no security labels or POSIX ACLs)")]
    XattrNamespace,
    #[error("{stored} is in cold storage; its retrieval is {state}, reads work once it completes")]
    RetrievalPending { stored: String, state: String },
    #[error("{stored} is encrypted; mount with its password (BAKTHAT_PASSWORD or --password-file)")]
    PasswordNeeded { stored: String },
    #[error("wrong password for {stored}")]
    WrongPassword { stored: String },
    #[error("{stored}: damaged or tampered data ({detail}); run `bakthat verify` on it")]
    Integrity { stored: String, detail: String },
    #[error("{stored}: the store failed")]
    Backend {
        stored: String,
        #[source]
        source: StorageError,
    },
    #[error("{stored}: {detail} is larger than the whole cache; mount with a larger --cache-size")]
    TooLarge { stored: String, detail: String },
    #[error("opening the store of {stored}")]
    Open {
        stored: String,
        #[source]
        source: Box<OpsError>,
    },
    #[error("inventory query failed")]
    Inventory(#[from] InventoryError),
    #[error("block cache I/O failed")]
    Cache(#[source] io::Error),
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("the /incoming staging area failed")]
    Staging(#[source] io::Error),
    #[error("no space left for the {what}; free some space (the cache and /incoming staging live in --cache-dir)")]
    NoSpace {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// A block cache I/O failure: ENOSPC when its disk is full, EIO otherwise.
fn cache_io(e: io::Error) -> FsError {
    if is_full(&e) {
        FsError::NoSpace { what: "block cache", source: e }
    } else {
        FsError::Cache(e)
    }
}

impl FsError {
    /// Whether the failure deserves a warning in the log (the user sees only an errno).
    pub fn is_noteworthy(&self) -> bool {
        match self {
            FsError::NotFound
            | FsError::NotADirectory
            | FsError::IsADirectory
            | FsError::NotASymlink
            | FsError::ReadOnly
            | FsError::BadHandle(_)
            | FsError::NoXattr
            | FsError::XattrTooSmall
            | FsError::XattrNamespace
            | FsError::Exists
            | FsError::NotEmpty => false,
            FsError::RetrievalPending { .. }
            | FsError::PasswordNeeded { .. }
            | FsError::WrongPassword { .. }
            | FsError::Integrity { .. }
            | FsError::Backend { .. }
            | FsError::TooLarge { .. }
            | FsError::Open { .. }
            | FsError::Inventory(_)
            | FsError::Cache(_)
            | FsError::NoSpace { .. }
            | FsError::Staging(_) => true,
        }
    }
}

/// Result of filesystem operations.
pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// The type of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// Attributes of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// A node with how long the kernel may cache what it was told.
#[derive(Debug, Clone)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

/// One directory entry; `offset` is what the kernel passes back to continue after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: Kind,
    pub name: Vec<u8>,
    pub offset: u64,
}

/// An open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// Keep the kernel's page cache across opens (immutable backup content).
    pub keep_cache: bool,
    /// Bypass the page cache (content that changes, such as status files).
    pub direct_io: bool,
}

/// The answer to an extended attribute request of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    /// The caller asked for the size only.
    Size(u32),
    Data(Vec<u8>),
}

/// Settings of a mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Where decoded blocks are kept (created with mode 0700).
    pub cache_dir: PathBuf,
    /// Hard cap of the block cache, in bytes.
    pub cache_size: u64,
    /// How far ahead of a sequential reader members are fetched, in bytes.
    pub prefetch_window: u64,
    /// Bytes of prefetch in flight over all handles (the memory cap of prefetching).
    pub prefetch_total: u64,
    /// Owner shown for the mount's own directories.
    pub uid: u32,
    pub gid: u32,
    /// How often the inventory is checked for new backups (at most).
    pub refresh_interval: Duration,
    /// How often pending cold-storage retrievals are polled.
    pub poll_interval: Duration,
    /// Where `/incoming` stages what is copied in (created with mode 0700).
    pub staging_dir: PathBuf,
    /// How long a directory in `/incoming` must be quiet before it is backed up.
    pub settle: Duration,
}

impl MountOptions {
    /// Defaults for a cache directory: 1 GiB cache, 8 MiB prefetch per reader, 64 MiB in all.
    pub fn new(cache_dir: PathBuf) -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        MountOptions {
            staging_dir: cache_dir.join("incoming"),
            settle: Duration::from_secs(3),
            cache_dir,
            cache_size: 1 << 30,
            prefetch_window: 8 << 20,
            prefetch_total: 64 << 20,
            uid,
            gid,
            refresh_interval: Duration::from_secs(1),
            poll_interval: Duration::from_secs(30),
        }
    }
}

/// Opens the store of a destination (`local`, `s3`…); the CLI passes [`Ctx::backend`], tests a counting store.
pub type OpenBackend = Arc<dyn Fn(&str) -> Result<Arc<dyn Backend>, OpsError> + Send + Sync>;

/// The mounted filesystem. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Fs {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<Ctx>,
    open_backend: OpenBackend,
    backends: Mutex<HashMap<String, Arc<dyn Backend>>>,
    /// Every request the mount makes to a store, and the bytes it read.
    meter: Arc<Meter>,
    secret: Option<Arc<Secret>>,
    opts: MountOptions,
    cache: BlockCache,
    tree: RwLock<Tree>,
    checked: Mutex<Option<Instant>>,
    handles: Mutex<HashMap<u64, Arc<Mutex<Handle>>>>,
    next_fh: AtomicU64,
    prefetching: AtomicU64,
    /// Whether a failed cache write was already reported.
    cache_warned: std::sync::atomic::AtomicBool,
    cold: Mutex<HashMap<String, Cold>>,
    mounted_at: Epoch,
    incoming: incoming::Incoming,
}

/// What is known about a cold object's readability.
#[derive(Debug, Clone)]
struct Cold {
    state: Retrieval,
    checked: Instant,
}

#[derive(Default)]
struct Tree {
    nodes: Vec<Node>,
    paths: HashMap<Vec<u8>, Ino>,
    slots: Vec<Slot>,
    slot_of: HashMap<String, usize>,
    stamp: Option<(i64, i64, i64, i64)>,
}

struct Slot {
    record: BackupRecord,
    loaded: Option<Arc<Loaded>>,
}

/// A backup's content description, loaded on first use from the inventory's copy of its entry index.
struct Loaded {
    index: Index,
    by_path: HashMap<Vec<u8>, usize>,
    content: Content,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Independent gzip members: ranged reads.
    Members,
    /// A legacy single-stream archive: decoded whole into the cache on first read.
    Whole,
    /// A single file stored as is (compression off): decoded whole into the cache on first read.
    Raw,
}

struct Node {
    parent: Ino,
    kind: NodeKind,
    children: Option<BTreeMap<Vec<u8>, Ino>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeKind {
    /// A directory of the virtual tree (root, by-name…).
    Dir,
    /// `latest`.
    Latest(Vec<u8>),
    /// A backup's directory; its children are filled in from the index on first use.
    Backup(usize),
    /// An entry of a backup's archive: (slot, entry index).
    Entry(usize, usize),
    /// A directory implied by archive paths that has no entry of its own.
    ImpliedDir(usize),
    /// The single file of a raw backup.
    Raw(usize),
    /// The status file of a backup.
    Status(usize),
    /// `/incoming`.
    Incoming,
}

/// An open file's read state.
struct Handle {
    ino: Ino,
    /// The last decoded member this handle used: (member, bytes).
    last: Option<(usize, Arc<Vec<u8>>)>,
    /// Where a sequential reader reads next.
    next_offset: u64,
    /// Members up to here were already handed to the prefetcher.
    prefetched_to: usize,
    whole: Option<Arc<cache::CachedFile>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const DIR_TTL: Duration = Duration::from_secs(1);
const CONTENT_TTL: Duration = Duration::from_secs(3600);

/// The file type encoded in tar mode bits, for entries that are neither files, directories nor links.
fn other_kind(mode: u32) -> Kind {
    match mode & 0o170000 {
        0o010000 => Kind::Fifo,
        0o020000 => Kind::CharDevice,
        0o060000 => Kind::BlockDevice,
        0o140000 => Kind::Socket,
        _ => Kind::Fifo,
    }
}

fn hints(record: &BackupRecord) -> Hints {
    let mut h = Hints::from_name(record.stored_filename.as_str(), record.is_enc());
    h.v1 = record.metadata.get("enc").and_then(|v| v.as_str()) == Some("v1");
    h
}

fn key_hash(stored: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(stored.as_bytes());
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn block_key(stored: &str, member: usize) -> String {
    format!("b-{}-{member}", key_hash(stored))
}

fn whole_key(stored: &str) -> String {
    format!("w-{}", key_hash(stored))
}

fn index_key(stored: &str) -> String {
    format!("i-{}", key_hash(stored))
}

/// A store object as a [`RangeRead`], keeping the store's own error for classification.
struct BackendRange<'a> {
    backend: &'a dyn Backend,
    key: &'a str,
    len: u64,
    error: Mutex<Option<StorageError>>,
}

impl RangeRead for BackendRange<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&self, start: u64, len: u64) -> io::Result<Vec<u8>> {
        self.backend.get_range(self.key, start, len).map_err(|e| {
            let msg = e.to_string();
            *lock(&self.error) = Some(e);
            io::Error::other(msg)
        })
    }
}

fn classify_read(stored: &str, e: ReadError, storage: Option<StorageError>) -> FsError {
    if let Some(s) = storage {
        return storage_error(stored, s);
    }
    let stored = stored.to_string();
    match e {
        ReadError::PasswordNeeded => FsError::PasswordNeeded { stored },
        ReadError::Crypto(archive::crypto::CryptoError::WrongPassword) => FsError::WrongPassword { stored },
        ReadError::Crypto(c) => FsError::Integrity { stored, detail: c.to_string() },
        ReadError::LengthMismatch { .. } | ReadError::NotSeekable | ReadError::NotAFile(_) => {
            FsError::Integrity { stored, detail: e.to_string() }
        }
        ReadError::Io(io) => FsError::Integrity { stored, detail: io.to_string() },
    }
}

fn storage_error(stored: &str, e: StorageError) -> FsError {
    match e {
        StorageError::NotRetrieved { state, .. } => {
            FsError::RetrievalPending { stored: stored.to_string(), state: state_word(&state).to_string() }
        }
        other => FsError::Backend { stored: stored.to_string(), source: other },
    }
}

fn archive_error(stored: &str, e: ArchiveError) -> FsError {
    let stored = stored.to_string();
    if e.is_wrong_password() {
        return FsError::WrongPassword { stored };
    }
    match e {
        ArchiveError::PasswordNeeded => FsError::PasswordNeeded { stored },
        ArchiveError::Read(r) => classify_read(&stored, r, None),
        ArchiveError::Io(io) => FsError::Cache(io),
        other => FsError::Integrity { stored, detail: format!("{other:#}") },
    }
}

fn state_word(r: &Retrieval) -> &'static str {
    match r {
        Retrieval::Ready => "ready",
        Retrieval::NotStarted => "not started",
        Retrieval::Pending { .. } => "in progress",
    }
}

/// Stores whose objects may need a retrieval before they can be read.
fn may_be_cold(kind: &str) -> bool {
    matches!(kind, "glacier" | "s3")
}

impl Fs {
    /// Builds the filesystem over an inventory (in `ctx`), opening stores with `open_backend`. An encrypted
    /// backup's index is decrypted once here, so a wrong password fails now rather than on reads.
    pub fn new(
        ctx: Arc<Ctx>,
        open_backend: OpenBackend,
        secret: Option<Arc<Secret>>,
        opts: MountOptions,
    ) -> Result<Fs> {
        let cache = BlockCache::open(&opts.cache_dir, opts.cache_size).map_err(FsError::Cache)?;
        let incoming = incoming::Incoming::new(&opts.staging_dir, opts.settle).map_err(FsError::Staging)?;
        let mounted_at = ctx.now();
        let inner = Arc::new(Inner {
            ctx,
            open_backend,
            backends: Mutex::new(HashMap::new()),
            meter: Meter::new(),
            secret,
            opts,
            cache,
            tree: RwLock::new(Tree::default()),
            checked: Mutex::new(None),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            prefetching: AtomicU64::new(0),
            cache_warned: std::sync::atomic::AtomicBool::new(false),
            cold: Mutex::new(HashMap::new()),
            mounted_at,
            incoming,
        });
        {
            let mut t = inner.tree_mut();
            t.nodes.push(Node { parent: ROOT, kind: NodeKind::Dir, children: Some(BTreeMap::new()) });
            t.paths.insert(Vec::new(), ROOT);
        }
        let fs = Fs { inner };
        fs.inner.refresh(true)?;
        fs.inner.check_password()?;
        Ok(fs)
    }

    /// Starts the thread that polls pending cold-storage retrievals every `poll_interval`; it ends with the
    /// filesystem.
    pub fn start_poller(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.opts.poll_interval;
        std::thread::Builder::new()
            .name("bakthat-poll".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(inner) => inner.poll_retrievals(),
                    None => return,
                }
            })
            .map(drop)
            .unwrap_or_else(|e| tracing::warn!("cannot start the retrieval poller: {e}"));
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("bakthat-incoming".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                match weak.upgrade() {
                    Some(inner) => Fs { inner }.incoming_tick(),
                    None => return,
                }
            })
            .map(drop)
            .unwrap_or_else(|e| tracing::warn!("cannot start the /incoming worker: {e}"));
    }

    /// Checks the stores of pending retrievals once (what the poller does each time).
    pub fn poll_retrievals(&self) {
        self.inner.poll_retrievals()
    }

    /// The block cache (for tests and status).
    pub fn cache(&self) -> &BlockCache {
        &self.inner.cache
    }

    /// Requests made to stores since the mount started, and the bytes read from them (also the root's
    /// `user.bakthat.store_requests` and `user.bakthat.store_bytes_read` attributes).
    pub fn store_totals(&self) -> Totals {
        self.inner.meter.totals()
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Entry> {
        if let Some(dir) = self.inner.staged(parent) {
            if name != b"." && name != b".." {
                let (_, ino) = self.inner.incoming.lookup(&dir, name)?;
                return self.getattr(ino);
            }
        }
        self.inner.prepare_dir(parent)?;
        let ino = {
            let t = self.inner.tree();
            let node = t.node(parent)?;
            if name == b"." {
                parent
            } else if name == b".." {
                node.parent
            } else {
                *node.children.as_ref().ok_or(FsError::NotADirectory)?.get(name).ok_or(FsError::NotFound)?
            }
        };
        self.getattr(ino)
    }

    /// Attributes of a node.
    pub fn getattr(&self, ino: Ino) -> Result<Entry> {
        if ino >= incoming::BASE {
            let rel = self.inner.incoming.path_of(ino).ok_or(FsError::NotFound)?;
            return Ok(Entry { attr: self.inner.incoming.attr(&rel, ino)?, ttl: Duration::ZERO });
        }
        self.inner.tree().attr(&self.inner, ino)
    }

    /// The target of a symbolic link.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        if ino >= incoming::BASE {
            let rel = self.inner.incoming.path_of(ino).ok_or(FsError::NotFound)?;
            return self.inner.incoming.readlink(&rel);
        }
        let t = self.inner.tree();
        match &t.node(ino)?.kind {
            NodeKind::Latest(target) => Ok(target.clone()),
            NodeKind::Entry(slot, e) => {
                let loaded = t.loaded(*slot)?;
                let entry = &loaded.index.entries[*e];
                match entry.kind {
                    EntryKind::Symlink => Ok(entry.link.clone().unwrap_or_default()),
                    _ => Err(FsError::NotASymlink),
                }
            }
            _ => Err(FsError::NotASymlink),
        }
    }

    /// Opens a directory (never touches a store). `keep_cache` says its listing never changes (a backup's own
    /// directories), so the kernel may cache it across opens; the virtual directories and /incoming change.
    pub fn opendir(&self, ino: Ino) -> Result<Opened> {
        let open = |keep_cache| Opened { fh: 0, keep_cache, direct_io: false };
        if self.inner.staged(ino).is_some() {
            return match self.getattr(ino)?.attr.kind {
                Kind::Dir => Ok(open(false)),
                _ => Err(FsError::NotADirectory),
            };
        }
        let t = self.inner.tree();
        let node = t.node(ino)?;
        let immutable = matches!(node.kind, NodeKind::Backup(_) | NodeKind::Entry(..) | NodeKind::ImpliedDir(_));
        match node.children {
            Some(_) => Ok(open(immutable)),
            None if matches!(node.kind, NodeKind::Backup(_)) => Ok(open(true)),
            None => Err(FsError::NotADirectory),
        }
    }

    /// Entries of a directory after `offset` (0 for the start), `.` and `..` included.
    pub fn readdir(&self, ino: Ino, offset: u64) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        if let Some(dir) = self.inner.staged(ino) {
            if offset < 1 {
                out.push(DirEntry { ino, kind: Kind::Dir, name: b".".to_vec(), offset: 1 });
            }
            if offset < 2 {
                out.push(DirEntry { ino: ROOT, kind: Kind::Dir, name: b"..".to_vec(), offset: 2 });
            }
            let skip = offset.saturating_sub(2) as usize;
            for (i, (name, child, kind)) in self.inner.incoming.list(&dir)?.into_iter().enumerate().skip(skip) {
                out.push(DirEntry { ino: child, kind, name, offset: i as u64 + 3 });
            }
            return Ok(out);
        }
        self.inner.prepare_dir(ino)?;
        let t = self.inner.tree();
        let node = t.node(ino)?;
        let children = node.children.as_ref().ok_or(FsError::NotADirectory)?;
        if offset < 1 {
            out.push(DirEntry { ino, kind: Kind::Dir, name: b".".to_vec(), offset: 1 });
        }
        if offset < 2 {
            out.push(DirEntry { ino: node.parent, kind: Kind::Dir, name: b"..".to_vec(), offset: 2 });
        }
        let skip = offset.saturating_sub(2) as usize;
        for (i, (name, &child)) in children.iter().enumerate().skip(skip) {
            let kind = t.kind_of(child).unwrap_or(Kind::File);
            out.push(DirEntry { ino: child, kind, name: name.clone(), offset: i as u64 + 3 });
            if out.len() >= 4096 {
                break;
            }
        }
        Ok(out)
    }

    /// [`Fs::readdir`] with each entry's attributes (the kernel's READDIRPLUS): one round trip gives `ls -l`
    /// everything, instead of a lookup per entry. Children that vanished meanwhile are left out.
    pub fn readdirplus(&self, ino: Ino, offset: u64) -> Result<Vec<(DirEntry, Entry)>> {
        let entries = self.readdir(ino, offset)?;
        Ok(entries.into_iter().filter_map(|d| self.getattr(d.ino).ok().map(|e| (d, e))).collect())
    }

    /// Opens a file for reading.
    pub fn open(&self, ino: Ino, write: bool) -> Result<Opened> {
        self.open_file(ino, write, false)
    }

    /// Opens a file; `write` asks for write access, `truncate` for O_TRUNC (only in /incoming).
    pub fn open_file(&self, ino: Ino, write: bool, truncate: bool) -> Result<Opened> {
        if ino >= incoming::BASE {
            let rel = self.inner.incoming.path_of(ino).ok_or(FsError::NotFound)?;
            let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
            self.inner.incoming.open(&rel, write, truncate, fh)?;
            return Ok(Opened { fh, keep_cache: false, direct_io: false });
        }
        let kind = self.inner.tree().node(ino)?.kind.clone();
        let (keep_cache, direct_io) = match kind {
            NodeKind::Entry(..) | NodeKind::Raw(_) => (true, false),
            NodeKind::Status(_) => (false, true),
            NodeKind::Dir | NodeKind::Backup(_) | NodeKind::ImpliedDir(_) | NodeKind::Incoming => {
                return Err(FsError::IsADirectory)
            }
            NodeKind::Latest(_) => (true, false),
        };
        if write {
            return Err(FsError::ReadOnly);
        }
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = Handle { ino, last: None, next_offset: 0, prefetched_to: 0, whole: None };
        lock(&self.inner.handles).insert(fh, Arc::new(Mutex::new(h)));
        Ok(Opened { fh, keep_cache, direct_io })
    }

    /// Reads `size` bytes at `offset` of an open file.
    pub fn read(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        if self.inner.incoming.has_handle(fh) {
            return self.inner.incoming.read(fh, offset, size);
        }
        let handle = lock(&self.inner.handles).get(&fh).cloned().ok_or(FsError::BadHandle(fh))?;
        let mut h = lock(&handle);
        if h.ino != ino {
            return Err(FsError::BadHandle(fh));
        }
        self.inner.read(&mut h, offset, u64::from(size))
    }

    /// Writes into an open file (only files in /incoming can be open for writing).
    pub fn write(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        if self.inner.incoming.has_handle(fh) {
            return self.inner.incoming.write(fh, offset, data);
        }
        self.modify(ino).map(|_| 0)
    }

    /// Closes a file handle. Closing the last writer of a file in /incoming makes it due for backup.
    pub fn release(&self, fh: u64) -> Result<()> {
        if self.inner.incoming.has_handle(fh) {
            self.inner.incoming.release(fh);
            return Ok(());
        }
        lock(&self.inner.handles).remove(&fh).map(drop).ok_or(FsError::BadHandle(fh))
    }

    /// Creates and opens a file (only in /incoming).
    pub fn create(&self, parent: Ino, name: &[u8], mode: u32) -> Result<(Entry, Opened)> {
        let dir = self.inner.staged(parent).ok_or(FsError::ReadOnly)?;
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        let (_, ino) = self.inner.incoming.create(&dir, name, mode, fh)?;
        Ok((self.getattr(ino)?, Opened { fh, keep_cache: false, direct_io: false }))
    }

    /// Makes a directory (only in /incoming; `@tag1,tag2` at the top gives tags to what goes in it).
    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32) -> Result<Entry> {
        let dir = self.inner.staged(parent).ok_or(FsError::ReadOnly)?;
        let (_, ino) = self.inner.incoming.mkdir(&dir, name, mode)?;
        self.getattr(ino)
    }

    /// Makes a symbolic link (only in /incoming).
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &std::path::Path) -> Result<Entry> {
        let dir = self.inner.staged(parent).ok_or(FsError::ReadOnly)?;
        let (_, ino) = self.inner.incoming.symlink(&dir, name, target)?;
        self.getattr(ino)
    }

    /// Removes a file or (empty) directory (only in /incoming).
    pub fn remove(&self, parent: Ino, name: &[u8], is_dir: bool) -> Result<()> {
        let dir = self.inner.staged(parent).ok_or(FsError::ReadOnly)?;
        self.inner.incoming.remove(&dir, name, is_dir)
    }

    /// Renames within /incoming.
    pub fn rename(&self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8]) -> Result<()> {
        let dir = self.inner.staged(parent).ok_or(FsError::ReadOnly)?;
        let newdir = self.inner.staged(newparent).ok_or(FsError::ReadOnly)?;
        self.inner.incoming.rename(&dir, name, &newdir, newname)
    }

    /// Truncate, chmod, utimes (only in /incoming; elsewhere EROFS).
    pub fn setattr(&self, ino: Ino, size: Option<u64>, mode: Option<u32>, mtime: Option<i64>) -> Result<Entry> {
        if ino >= incoming::BASE {
            let rel = self.inner.incoming.path_of(ino).ok_or(FsError::NotFound)?;
            self.inner.incoming.setattr(&rel, size, mode, mtime)?;
            return self.getattr(ino);
        }
        self.modify(ino)?;
        self.getattr(ino)
    }

    /// Backs up the /incoming units that are due (what the background ticker does every 250 ms).
    pub fn incoming_tick(&self) {
        for (unit, tags) in self.inner.incoming.due() {
            self.inner.incoming.back_up(&self.inner.ctx, self.inner.secret.as_ref(), &unit, &tags);
        }
    }

    /// Names of the extended attributes of a node (`user.bakthat.*` on backup content).
    ///
    /// The archive's own files and directories answer `getxattr` by name but list none, so that `cp -a`, `rsync -X`
    /// and file managers do not copy bakthat's state onto restored files; backup directories, status files, the
    /// root and `/incoming` entries list theirs (`getfattr -d`).
    pub fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        let content = ino < incoming::BASE
            && matches!(
                self.inner.tree().node(ino)?.kind,
                NodeKind::Entry(..) | NodeKind::ImpliedDir(_) | NodeKind::Raw(_)
            );
        if content {
            return sized(Vec::new(), size);
        }
        let names = self.inner.xattrs(ino)?;
        let mut data = Vec::new();
        for (n, _) in names {
            data.extend_from_slice(n.as_bytes());
            data.push(0);
        }
        sized(data, size)
    }

    /// One extended attribute of a node.
    pub fn getxattr(&self, ino: Ino, name: &[u8], size: u32) -> Result<XattrReply> {
        // `ls -l` asks every file for `security.selinux` and the POSIX ACLs. "Not supported" (rather than "no such
        // attribute") is the truth, and lets ls and file managers stop asking for the rest of the mount: one round
        // trip per file less for each.
        if !name.starts_with(b"user.") {
            return Err(FsError::XattrNamespace);
        }
        if !name.starts_with(XATTR_PREFIX.as_bytes()) {
            return Err(FsError::NoXattr);
        }
        let attrs = self.inner.xattrs(ino)?;
        let value = attrs.into_iter().find(|(n, _)| n.as_bytes() == name).ok_or(FsError::NoXattr)?.1;
        sized(value.into_bytes(), size)
    }

    /// Any other change (hard links, xattrs, devices…), and any change outside `/incoming`: refused.
    pub fn modify(&self, ino: Ino) -> Result<()> {
        if ino < incoming::BASE {
            self.inner.tree().node(ino)?;
        }
        Err(FsError::ReadOnly)
    }
}
fn sized(data: Vec<u8>, size: u32) -> Result<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(data.len() as u32))
    } else if data.len() > size as usize {
        Err(FsError::XattrTooSmall)
    } else {
        Ok(XattrReply::Data(data))
    }
}

impl Tree {
    fn node(&self, ino: Ino) -> Result<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize)).ok_or(FsError::NotFound)
    }

    fn loaded(&self, slot: usize) -> Result<&Arc<Loaded>> {
        self.slots[slot].loaded.as_ref().ok_or(FsError::NotFound)
    }

    fn push(&mut self, parent: Ino, kind: NodeKind, dir: bool) -> Ino {
        self.nodes.push(Node { parent, kind, children: dir.then(BTreeMap::new) });
        self.nodes.len() as Ino
    }

    fn kind_of(&self, ino: Ino) -> Option<Kind> {
        let node = self.node(ino).ok()?;
        Some(match &node.kind {
            NodeKind::Dir | NodeKind::Backup(_) | NodeKind::ImpliedDir(_) | NodeKind::Incoming => Kind::Dir,
            NodeKind::Latest(_) => Kind::Symlink,
            NodeKind::Raw(_) | NodeKind::Status(_) => Kind::File,
            NodeKind::Entry(slot, e) => {
                let entry = &self.slots[*slot].loaded.as_ref()?.index.entries[*e];
                match entry.kind {
                    EntryKind::File | EntryKind::HardLink => Kind::File,
                    EntryKind::Dir => Kind::Dir,
                    EntryKind::Symlink => Kind::Symlink,
                    EntryKind::Other => other_kind(entry.mode),
                }
            }
        })
    }

    fn attr(&self, fs: &Inner, ino: Ino) -> Result<Entry> {
        let node = self.node(ino)?;
        let (uid, gid) = (fs.opts.uid, fs.opts.gid);
        let dir = |perm: u16, mtime: i64| Attr { ino, kind: Kind::Dir, size: 0, perm, nlink: 2, uid, gid, mtime };
        let (attr, ttl) = match &node.kind {
            NodeKind::Dir => (dir(0o555, fs.mounted_at), DIR_TTL),
            NodeKind::Incoming => (dir(0o755, fs.mounted_at), DIR_TTL),
            NodeKind::Latest(t) => (
                Attr { ino, kind: Kind::Symlink, size: t.len() as u64, perm: 0o777, nlink: 1, uid, gid, mtime: 0 },
                DIR_TTL,
            ),
            NodeKind::Backup(slot) => (dir(0o555, self.slots[*slot].record.backup_date), DIR_TTL),
            NodeKind::ImpliedDir(slot) => (dir(0o755, self.slots[*slot].record.backup_date), CONTENT_TTL),
            NodeKind::Status(slot) => {
                let size = fs.status_text(&self.slots[*slot].record).len() as u64;
                let mtime = self.slots[*slot].record.backup_date;
                (Attr { ino, kind: Kind::File, size, perm: 0o444, nlink: 1, uid, gid, mtime }, Duration::ZERO)
            }
            NodeKind::Raw(slot) => {
                let record = &self.slots[*slot].record;
                let size = fs.raw_size(record);
                let mtime = record.backup_date;
                (Attr { ino, kind: Kind::File, size, perm: 0o644, nlink: 1, uid, gid, mtime }, CONTENT_TTL)
            }
            NodeKind::Entry(slot, e) => {
                let loaded = self.loaded(*slot)?;
                let entry = &loaded.index.entries[*e];
                let kind = self.kind_of(ino).unwrap_or(Kind::File);
                let size = match entry.kind {
                    EntryKind::File => entry.size,
                    EntryKind::HardLink => loaded.link_target(*e).map(|t| loaded.index.entries[t].size).unwrap_or(0),
                    EntryKind::Symlink => entry.link.as_ref().map(|l| l.len() as u64).unwrap_or(0),
                    EntryKind::Dir | EntryKind::Other => 0,
                };
                let attr = Attr {
                    ino,
                    kind,
                    size,
                    perm: (entry.mode & 0o7777) as u16,
                    nlink: if kind == Kind::Dir { 2 } else { 1 },
                    uid: u32::try_from(entry.uid).unwrap_or(u32::MAX),
                    gid: u32::try_from(entry.gid).unwrap_or(u32::MAX),
                    mtime: entry.mtime,
                };
                (attr, CONTENT_TTL)
            }
        };
        Ok(Entry { attr, ttl })
    }

    /// The inode of a virtual directory at `path` (components escaped), created as needed.
    fn ensure_dir(&mut self, path: &[&[u8]]) -> Ino {
        let mut key: Vec<u8> = Vec::new();
        let mut ino = ROOT;
        for c in path {
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(c);
            let child = match self.paths.get(&key) {
                Some(&i) => i,
                None => {
                    let i = self.push(ino, NodeKind::Dir, true);
                    self.paths.insert(key.clone(), i);
                    i
                }
            };
            if let Some(ch) = self.nodes[ino as usize - 1].children.as_mut() {
                ch.insert(c.to_vec(), child);
            }
            ino = child;
        }
        ino
    }

    /// Places a leaf in virtual directory `dir` under `name` (or `name~2`… when taken); reuses the inode a
    /// previous rebuild gave the same path and kind.
    fn place(&mut self, dir: &[&[u8]], name: &[u8], kind: NodeKind) -> Vec<u8> {
        let parent = self.ensure_dir(dir);
        let taken =
            |t: &Tree, n: &[u8]| t.nodes[parent as usize - 1].children.as_ref().is_some_and(|c| c.contains_key(n));
        let mut chosen = name.to_vec();
        let mut k = 2;
        while taken(self, &chosen) {
            chosen = names::disambiguate(name, k);
            k += 1;
        }
        let mut key = dir.join(&b'/');
        key.push(b'/');
        key.extend_from_slice(&chosen);
        let reuse = self.paths.get(&key).copied().filter(|&i| {
            let n = &self.nodes[i as usize - 1];
            match (&n.kind, &kind) {
                (NodeKind::Latest(_), NodeKind::Latest(_)) => true,
                (a, b) => a == b,
            }
        });
        let ino = match reuse {
            Some(i) => {
                self.nodes[i as usize - 1].kind = kind;
                i
            }
            None => {
                let i = self.push(parent, kind, false);
                self.paths.insert(key, i);
                i
            }
        };
        if let Some(c) = self.nodes[parent as usize - 1].children.as_mut() {
            c.insert(chosen.clone(), ino);
        }
        chosen
    }

    /// Lays the virtual tree out again from the inventory's rows (inode numbers of unchanged paths are kept).
    fn rebuild(&mut self, mut records: Vec<BackupRecord>) {
        records.sort_by_key(|r| (r.backup_date, r.id));
        for n in self.nodes.iter_mut() {
            if n.kind == NodeKind::Dir {
                n.children = Some(BTreeMap::new());
            }
        }
        for top in [&b"by-name"[..], b"by-tag", b"by-date"] {
            self.ensure_dir(&[top]);
        }
        if !self.paths.contains_key(&b"incoming"[..]) {
            let i = self.push(ROOT, NodeKind::Incoming, true);
            self.paths.insert(b"incoming".to_vec(), i);
        }
        let incoming = self.paths[&b"incoming"[..]];
        self.nodes[0].children.as_mut().expect("root is a directory").insert(b"incoming".to_vec(), incoming);
        let mut latest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for r in records {
            let slot = match self.slot_of.get(r.stored_filename.as_str()) {
                Some(&s) => {
                    if self.slots[s].record != r {
                        self.slots[s].record = r.clone();
                    }
                    s
                }
                None => {
                    self.slots.push(Slot { record: r.clone(), loaded: None });
                    self.slot_of.insert(r.stored_filename.as_str().to_string(), self.slots.len() - 1);
                    self.slots.len() - 1
                }
            };
            let name = names::escape(&r.filename);
            let ts = names::timestamp(r.backup_date);
            let placed = self.place(&[b"by-name", &name], &ts, NodeKind::Backup(slot));
            latest.insert(name.clone(), placed);
            for tag in r.tag_list() {
                let tag = names::escape(tag);
                self.place(&[b"by-tag", &tag, &name], &ts, NodeKind::Backup(slot));
            }
            let [y, m, d] = names::date_parts(r.backup_date);
            self.place(&[b"by-date", &y, &m, &d], &names::date_entry(&name, r.backup_date), NodeKind::Backup(slot));
        }
        for (name, target) in latest {
            self.place(&[b"by-name", &name], b"latest", NodeKind::Latest(target));
        }
    }

    /// Fills a backup directory from its index (once).
    fn expand(&mut self, ino: Ino, slot: usize) {
        if self.nodes[ino as usize - 1].children.is_some() {
            return;
        }
        let Some(loaded) = self.slots[slot].loaded.clone() else { return };
        self.nodes[ino as usize - 1].children = Some(BTreeMap::new());
        if loaded.content == Content::Raw {
            let name = names::escape(&self.slots[slot].record.filename);
            let f = self.push(ino, NodeKind::Raw(slot), false);
            self.nodes[ino as usize - 1].children.as_mut().expect("just set").insert(name, f);
        }
        let mut dirs: HashMap<Vec<u8>, Ino> = HashMap::new();
        dirs.insert(Vec::new(), ino);
        'entries: for (i, e) in loaded.index.entries.iter().enumerate() {
            let comps: Vec<&[u8]> = e.path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
            if comps.is_empty() || comps.contains(&&b".."[..]) {
                continue;
            }
            let mut parent = ino;
            let mut key: Vec<u8> = Vec::new();
            for c in &comps[..comps.len() - 1] {
                if !key.is_empty() {
                    key.push(b'/');
                }
                key.extend_from_slice(c);
                parent = match dirs.get(&key) {
                    Some(&d) => d,
                    None => {
                        let d = self.push(parent, NodeKind::ImpliedDir(slot), true);
                        match self.nodes[parent as usize - 1].children.as_mut() {
                            Some(ch) => {
                                ch.insert(c.to_vec(), d);
                            }
                            None => continue 'entries,
                        }
                        dirs.insert(key.clone(), d);
                        d
                    }
                };
            }
            let name = comps[comps.len() - 1];
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(name);
            let is_dir = e.kind == EntryKind::Dir;
            if let Some(&existing) = dirs.get(&key) {
                if is_dir {
                    // A directory entry after its implied directory (or a repeated one): it gives the attributes.
                    self.nodes[existing as usize - 1].kind = NodeKind::Entry(slot, i);
                    continue;
                }
            }
            let n = self.push(parent, NodeKind::Entry(slot, i), is_dir);
            if let Some(ch) = self.nodes[parent as usize - 1].children.as_mut() {
                ch.insert(name.to_vec(), n);
            }
            if is_dir {
                dirs.insert(key, n);
            } else {
                dirs.remove(&key);
            }
        }
        let has_status = self.nodes[ino as usize - 1].children.as_ref().is_some_and(|c| c.contains_key(STATUS_FILE));
        if !has_status {
            let s = self.push(ino, NodeKind::Status(slot), false);
            self.nodes[ino as usize - 1].children.as_mut().expect("just set").insert(STATUS_FILE.to_vec(), s);
        }
    }
}

impl Loaded {
    fn new(index: Index, content: Content) -> Loaded {
        let by_path = index.entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect();
        Loaded { index, by_path, content }
    }

    /// The entry a hard link points to (followed once; a link to a link is resolved too).
    fn link_target(&self, e: usize) -> Option<usize> {
        let mut cur = e;
        for _ in 0..8 {
            let entry = &self.index.entries[cur];
            if entry.kind != EntryKind::HardLink {
                return Some(cur);
            }
            let link = entry.link.as_ref()?;
            let link = link.strip_prefix(b"./").unwrap_or(link);
            cur = *self.by_path.get(link)?;
        }
        None
    }
}

impl Inner {
    /// The staged path of an inode in /incoming (`""` for /incoming itself).
    fn staged(&self, ino: Ino) -> Option<PathBuf> {
        if ino >= incoming::BASE {
            return self.incoming.path_of(ino);
        }
        let t = self.tree();
        (t.node(ino).ok()?.kind == NodeKind::Incoming).then(PathBuf::new)
    }

    fn tree(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn tree_mut(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the inventory if it changed (checked at most once per `refresh_interval` unless `force`).
    fn refresh(&self, force: bool) -> Result<()> {
        {
            let mut checked = lock(&self.checked);
            if !force && checked.is_some_and(|t| t.elapsed() < self.opts.refresh_interval) {
                return Ok(());
            }
            *checked = Some(Instant::now());
        }
        let stamp = self.ctx.inventory.change_stamp()?;
        if self.tree().stamp == Some(stamp) {
            return Ok(());
        }
        let records = self.ctx.inventory.search(&Query::default())?;
        let mut t = self.tree_mut();
        t.rebuild(records);
        t.stamp = Some(stamp);
        Ok(())
    }

    /// Before listing or looking up in a directory: refresh the virtual tree, or load a backup's index.
    fn prepare_dir(&self, ino: Ino) -> Result<()> {
        let kind = self.tree().node(ino)?.kind.clone();
        match kind {
            NodeKind::Dir => self.refresh(false),
            NodeKind::Backup(slot) => {
                if self.tree().node(ino)?.children.is_some() {
                    return Ok(());
                }
                self.load(slot)?;
                self.tree_mut().expand(ino, slot);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn record(&self, slot: usize) -> BackupRecord {
        self.tree().slots[slot].record.clone()
    }

    /// Loads a backup's index (from the inventory; for a legacy archive without one, from the cache or by
    /// reading it whole once, which is the only listing that reaches a store).
    fn load(&self, slot: usize) -> Result<Arc<Loaded>> {
        if let Some(l) = &self.tree().slots[slot].loaded {
            return Ok(l.clone());
        }
        let record = self.record(slot);
        let stored = record.stored_filename.as_str();
        let loaded = if !record.stored_filename.is_tgz() {
            Loaded::new(Index::default(), Content::Raw)
        } else if let Some(bytes) = self.ctx.inventory.get_index(&record.stored_filename)? {
            let index =
                archive::read_index_sidecar(&bytes, self.secret.as_deref()).map_err(|e| archive_error(stored, e))?;
            let content = if index.seekable { Content::Members } else { Content::Whole };
            Loaded::new(index, content)
        } else if let Some(bytes) = self.cache.get(&index_key(stored)) {
            let index = crate::archive::index::Index::from_bytes(&bytes)
                .map_err(|e| FsError::Integrity { stored: stored.into(), detail: e.to_string() })?;
            Loaded::new(index, Content::Whole)
        } else {
            let whole = self.whole(&record)?;
            let mut reader = WholeReader { file: &whole, pos: 0 };
            let index = Index::from_tar_stream(&mut reader)
                .map_err(|e| FsError::Integrity { stored: stored.into(), detail: e.to_string() })?;
            self.cache_put(&index_key(stored), &index.to_bytes());
            Loaded::new(index, Content::Whole)
        };
        let loaded = Arc::new(loaded);
        let mut t = self.tree_mut();
        Ok(t.slots[slot].loaded.get_or_insert(loaded).clone())
    }

    /// Decrypts one encrypted index, so that a wrong password fails the mount.
    fn check_password(&self) -> Result<()> {
        let Some(secret) = &self.secret else { return Ok(()) };
        let records: Vec<BackupRecord> = self.tree().slots.iter().map(|s| s.record.clone()).collect();
        for r in records.iter().filter(|r| r.is_enc()) {
            if let Some(bytes) = self.ctx.inventory.get_index(&r.stored_filename)? {
                return match archive::read_index_sidecar(&bytes, Some(secret)) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(archive_error(r.stored_filename.as_str(), e)),
                };
            }
        }
        Ok(())
    }

    fn backend(&self, record: &BackupRecord) -> Result<Arc<dyn Backend>> {
        if let Some(b) = lock(&self.backends).get(&record.backend) {
            return Ok(b.clone());
        }
        let b = (self.open_backend)(&record.backend)
            .map_err(|e| FsError::Open { stored: record.stored_filename.to_string(), source: Box::new(e) })?;
        let b: Arc<dyn Backend> = Arc::new(Metered::new(b, self.meter.clone()));
        lock(&self.backends).insert(record.backend.clone(), b.clone());
        Ok(b)
    }

    /// Succeeds when the object can be read now; otherwise starts its retrieval (once) and says it is pending.
    fn ensure_retrievable(&self, record: &BackupRecord, backend: &dyn Backend) -> Result<()> {
        if !may_be_cold(backend.kind()) {
            return Ok(());
        }
        let stored = record.stored_filename.as_str();
        let pending = |state: &Retrieval| FsError::RetrievalPending {
            stored: stored.to_string(),
            state: state_word(state).to_string(),
        };
        if let Some(c) = lock(&self.cold).get(stored) {
            match &c.state {
                Retrieval::Ready => return Ok(()),
                s @ Retrieval::Pending { .. } if c.checked.elapsed() < self.opts.poll_interval => {
                    return Err(pending(s))
                }
                _ => {}
            }
        }
        // One thread at a time decides for one object, so the retrieval is started once.
        let guard = self.cache.lock_key(&format!("retrieval-{stored}"));
        let _g = lock(&guard);
        if let Some(c) = lock(&self.cold).get(stored) {
            if c.state == Retrieval::Ready {
                return Ok(());
            }
        }
        let mut state = backend.retrieval_state(stored).map_err(|e| storage_error(stored, e))?;
        if state == Retrieval::NotStarted {
            state = backend.start_retrieval(stored).map_err(|e| storage_error(stored, e))?;
            tracing::warn!(
                stored,
                state = state_word(&state),
                "started the retrieval of a cold backup; reads give EAGAIN until it completes"
            );
        }
        self.note_state(record, backend, &state)?;
        match state {
            Retrieval::Ready => Ok(()),
            other => Err(pending(&other)),
        }
    }

    /// Records a retrieval state in memory and its job in the inventory (shared with `bakthat restore`).
    fn note_state(&self, record: &BackupRecord, backend: &dyn Backend, state: &Retrieval) -> Result<()> {
        let stored = record.stored_filename.as_str();
        lock(&self.cold).insert(stored.to_string(), Cold { state: state.clone(), checked: Instant::now() });
        let kind = if backend.kind() == "glacier" { JobKind::ArchiveRetrieval } else { JobKind::S3Restore };
        let now = self.ctx.now();
        let inv = &self.ctx.inventory;
        match state {
            Retrieval::Pending { job_id, .. } => {
                let existing = inv.job(stored, kind)?;
                if existing.as_ref().is_none_or(|j| j.status != JobStatus::Pending) {
                    inv.put_job(&Job {
                        target: stored.to_string(),
                        job_id: job_id.clone().unwrap_or_else(|| "restore".into()),
                        backend: backend.kind().to_string(),
                        kind,
                        status: JobStatus::Pending,
                        created_at: now,
                        ready_at: None,
                        updated_at: now,
                    })?;
                }
            }
            Retrieval::Ready => {
                if inv.job(stored, kind)?.is_some_and(|j| j.status == JobStatus::Pending) {
                    inv.update_job_status(stored, kind, JobStatus::Ready, now)?;
                    tracing::warn!(stored, "the retrieval of a cold backup completed; reads work now");
                }
            }
            Retrieval::NotStarted => {}
        }
        Ok(())
    }

    fn poll_retrievals(&self) {
        let pending: Vec<String> = lock(&self.cold)
            .iter()
            .filter(|(_, c)| matches!(c.state, Retrieval::Pending { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for stored in pending {
            let slot = self.tree().slot_of.get(&stored).copied();
            let Some(slot) = slot else { continue };
            let record = self.record(slot);
            let res = self.backend(&record).and_then(|b| {
                let s = b.retrieval_state(&stored).map_err(|e| storage_error(&stored, e))?;
                self.note_state(&record, b.as_ref(), &s)
            });
            if let Err(e) = res {
                tracing::warn!("polling the retrieval of {stored}: {e:#}");
            }
        }
    }

    /// A decoded whole object (legacy archive or raw file) from the cache, downloading it on a miss.
    fn whole(&self, record: &BackupRecord) -> Result<cache::CachedFile> {
        let stored = record.stored_filename.as_str();
        let key = whole_key(stored);
        if let Some(f) = self.cache.open_file(&key) {
            return Ok(f);
        }
        let guard = self.cache.lock_key(&key);
        let _g = lock(&guard);
        if let Some(f) = self.cache.open_file(&key) {
            return Ok(f);
        }
        let backend = self.backend(record)?;
        self.ensure_retrievable(record, backend.as_ref())?;
        let stream = backend.get(stored).map_err(|e| storage_error(stored, e))?;
        let h = hints(record);
        let tgz = record.stored_filename.is_tgz();
        let (plain, _) = archive::decode(stream, h, self.secret.as_deref()).map_err(|e| archive_error(stored, e))?;
        let mut reader =
            if tgz { archive::gunzip_payload(plain).map_err(|e| archive_error(stored, e))? } else { plain };
        tracing::info!(stored, "reading a backup without a seekable index whole into the cache");
        let mut failure: Option<FsError> = None;
        let stored_ok = self
            .cache
            .insert_stream(&key, |f| {
                io::copy(&mut reader, f).map_err(|e| {
                    if e.to_string() == "larger than the cache" || is_full(&e) {
                        return e;
                    }
                    failure = Some(archive_error(stored, ArchiveError::from_io(e)));
                    io::Error::other("decoding failed")
                })
            })
            .map_err(|e| failure.take().unwrap_or_else(|| cache_io(e)))?;
        if !stored_ok {
            return Err(FsError::TooLarge { stored: stored.into(), detail: "the decoded backup".into() });
        }
        self.cache.open_file(&key).ok_or_else(|| FsError::Cache(io::Error::other("cache entry vanished")))
    }

    /// Decoded members `range` of a backup, fetched with one ranged read.
    fn fetch_members(&self, record: &BackupRecord, loaded: &Loaded, range: Range<usize>) -> Result<Vec<Vec<u8>>> {
        let stored = record.stored_filename.as_str();
        let backend = self.backend(record)?;
        self.ensure_retrievable(record, backend.as_ref())?;
        let len = if loaded.index.stored_len != 0 { loaded.index.stored_len } else { record.size };
        let src = BackendRange { backend: backend.as_ref(), key: stored, len, error: Mutex::new(None) };
        let keys = self.secret.as_ref().map(|s| s.keys());
        let result = Decoder::new(&loaded.index, &src, keys).and_then(|d| d.members(range));
        result.map_err(|e| {
            let err = classify_read(stored, e, lock(&src.error).take());
            if matches!(err, FsError::Integrity { .. }) {
                tracing::error!("{err}");
            }
            err
        })
    }

    /// One decoded member, from the handle, the cache, or the store (fetching the uncached members up to
    /// `want_end` with it in one request).
    fn member(
        &self,
        record: &BackupRecord,
        loaded: &Loaded,
        m: usize,
        want_end: usize,
        h: &mut Handle,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some((lm, data)) = &h.last {
            if *lm == m {
                return Ok(data.clone());
            }
        }
        let stored = record.stored_filename.as_str();
        let key = block_key(stored, m);
        let data = match self.cache.get(&key) {
            Some(d) => d,
            None => {
                let guard = self.cache.lock_key(&key);
                let _g = lock(&guard);
                match self.cache.get(&key) {
                    Some(d) => d,
                    None => {
                        let mut end = m + 1;
                        while end < want_end && !self.cache.contains(&block_key(stored, end)) {
                            end += 1;
                        }
                        let mut parts = self.fetch_members(record, loaded, m..end)?.into_iter();
                        let first = parts.next().unwrap_or_default();
                        self.cache_put(&key, &first);
                        for (i, p) in parts.enumerate() {
                            self.cache_put(&block_key(stored, m + 1 + i), &p);
                        }
                        first
                    }
                }
            }
        };
        let data = Arc::new(data);
        h.last = Some((m, data.clone()));
        Ok(data)
    }

    /// Keeps a decoded block for later reads. Best effort: the data in hand is served whatever happens, so a full
    /// or failing cache disk costs refetches, never a failed read (warned about once).
    fn cache_put(&self, key: &str, data: &[u8]) {
        if let Err(e) = self.cache.insert(key, data) {
            if !self.cache_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!("cannot keep decoded blocks in the cache ({e}); reads go on, fetching again as needed");
            }
        }
    }

    fn read(self: &Arc<Inner>, h: &mut Handle, offset: u64, size: u64) -> Result<Vec<u8>> {
        let (kind, slot, loaded) = {
            let t = self.tree();
            let node = t.node(h.ino)?;
            match &node.kind {
                NodeKind::Status(s) => {
                    let text = self.status_text(&t.slots[*s].record).into_bytes();
                    let s = (offset as usize).min(text.len());
                    let e = (offset.saturating_add(size) as usize).min(text.len());
                    return Ok(text[s..e].to_vec());
                }
                NodeKind::Latest(_) => return Err(FsError::NotFound),
                NodeKind::Dir | NodeKind::Backup(_) | NodeKind::ImpliedDir(_) | NodeKind::Incoming => {
                    return Err(FsError::IsADirectory)
                }
                NodeKind::Raw(s) => (node.kind.clone(), *s, None),
                NodeKind::Entry(s, _) => (node.kind.clone(), *s, Some(t.loaded(*s)?.clone())),
            }
        };
        let record = self.record(slot);
        if let NodeKind::Raw(_) = kind {
            let whole = self.handle_whole(h, &record)?;
            return whole.read_at(offset, size).map_err(FsError::Cache);
        }
        let NodeKind::Entry(_, e) = kind else { return Err(FsError::NotFound) };
        let loaded = loaded.ok_or(FsError::NotFound)?;
        let target = loaded.link_target(e).ok_or(FsError::NotFound)?;
        let entry = &loaded.index.entries[target];
        if entry.kind != EntryKind::File {
            return Err(FsError::IsADirectory);
        }
        let end = offset.saturating_add(size).min(entry.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        if loaded.content != Content::Members {
            let whole = self.handle_whole(h, &record)?;
            let data = whole.read_at(entry.data_offset + offset, end - offset).map_err(FsError::Cache)?;
            if data.len() as u64 != end - offset {
                return Err(FsError::Integrity {
                    stored: record.stored_filename.to_string(),
                    detail: "short archive".into(),
                });
            }
            return Ok(data);
        }
        let (tar_start, tar_end) = (entry.data_offset + offset, entry.data_offset + end);
        let range = loaded.index.members_covering(tar_start, tar_end);
        let mut out = Vec::with_capacity((end - offset) as usize);
        for m in range.clone() {
            let member = loaded.index.members[m];
            let data = self.member(&record, &loaded, m, range.end, h)?;
            if data.len() as u64 != member.tar_len {
                return Err(FsError::Integrity {
                    stored: record.stored_filename.to_string(),
                    detail: "a member does not match its index".into(),
                });
            }
            let s = tar_start.max(member.tar_offset);
            let e = tar_end.min(member.tar_offset + member.tar_len);
            if s < e {
                out.extend_from_slice(&data[(s - member.tar_offset) as usize..(e - member.tar_offset) as usize]);
            }
        }
        let sequential = offset == h.next_offset || offset == 0;
        h.next_offset = end;
        if sequential {
            self.prefetch(&record, &loaded, range.end, tar_end, entry.data_offset + entry.size, h);
        }
        Ok(out)
    }

    fn handle_whole(&self, h: &mut Handle, record: &BackupRecord) -> Result<Arc<cache::CachedFile>> {
        if let Some(w) = &h.whole {
            return Ok(w.clone());
        }
        let w = Arc::new(self.whole(record)?);
        h.whole = Some(w.clone());
        Ok(w)
    }

    /// Fetches the members after a sequential read into the cache in the background, within the per-handle window
    /// and the global in-flight cap.
    fn prefetch(
        self: &Arc<Inner>,
        record: &BackupRecord,
        loaded: &Arc<Loaded>,
        from: usize,
        tar_pos: u64,
        file_end: u64,
        h: &mut Handle,
    ) {
        let stored = record.stored_filename.as_str();
        let window_end = tar_pos.saturating_add(self.opts.prefetch_window).min(file_end);
        let last = loaded.index.members_covering(tar_pos, window_end).end;
        let mut start = from.max(h.prefetched_to);
        while start < last && self.cache.contains(&block_key(stored, start)) {
            start += 1;
        }
        if start >= last {
            return;
        }
        let mut end = start;
        while end < last && !self.cache.contains(&block_key(stored, end)) {
            end += 1;
        }
        let bytes: u64 = loaded.index.members[start..end].iter().map(|m| m.tar_len + m.comp_len).sum();
        let total = self.opts.prefetch_total;
        let reserved = self
            .prefetching
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| (cur + bytes <= total).then_some(cur + bytes));
        if reserved.is_err() {
            return;
        }
        h.prefetched_to = end;
        let me = self.clone();
        let (record, loaded) = (record.clone(), loaded.clone());
        let spawned = std::thread::Builder::new().name("bakthat-prefetch".into()).spawn(move || {
            let stored = record.stored_filename.as_str();
            let guard = me.cache.lock_key(&block_key(stored, start));
            let _g = lock(&guard);
            if !me.cache.contains(&block_key(stored, start)) {
                match me.fetch_members(&record, &loaded, start..end) {
                    Ok(parts) => {
                        for (i, p) in parts.iter().enumerate() {
                            if let Err(e) = me.cache.insert(&block_key(stored, start + i), p) {
                                tracing::warn!("prefetch of {stored}: {e}");
                            }
                        }
                    }
                    Err(e) => tracing::debug!("prefetch of {stored}: {e:#}"),
                }
            }
            me.prefetching.fetch_sub(bytes, Ordering::SeqCst);
        });
        if spawned.is_err() {
            self.prefetching.fetch_sub(bytes, Ordering::SeqCst);
        }
    }

    /// The plaintext size of a raw backup: recorded at backup time, or exact once cached; for rows written before
    /// bakthat recorded it, the stored size (an upper bound for encrypted ones).
    fn raw_size(&self, record: &BackupRecord) -> u64 {
        if let Some(n) = record.metadata.get("plain_size").and_then(|v| v.as_u64()) {
            return n;
        }
        self.cache.open_file(&whole_key(record.stored_filename.as_str())).map(|f| f.len()).unwrap_or(record.size)
    }

    /// What `.bakthat-status` and the xattrs say, from memory and the inventory only (never a store).
    fn state_of(&self, record: &BackupRecord) -> Vec<(&'static str, String)> {
        let stored = record.stored_filename.as_str();
        // Opening a store object makes no request; its kind says whether objects can be cold.
        let kind = self.backend(record).map(|b| b.kind()).unwrap_or("unknown");
        let glacier = kind == "glacier";
        let class = record
            .metadata
            .get("storage_class")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| if glacier { "GLACIER".into() } else { "STANDARD".into() });
        let job = [JobKind::ArchiveRetrieval, JobKind::S3Restore]
            .into_iter()
            .find_map(|k| self.ctx.inventory.job(stored, k).ok().flatten());
        let mem = lock(&self.cold).get(stored).map(|c| c.state.clone());
        let cold_class = glacier || matches!(class.as_str(), "GLACIER" | "DEEP_ARCHIVE");
        let state = match (&mem, &job) {
            (Some(Retrieval::Ready), _) => "ready",
            (Some(Retrieval::Pending { .. }), _) => "retrieving",
            (Some(Retrieval::NotStarted), _) => "archived",
            (None, Some(j)) if j.status == JobStatus::Pending => "retrieving",
            (None, Some(j)) if j.status == JobStatus::Ready => "ready",
            _ if cold_class => "archived",
            _ => "ready",
        };
        let mut out = vec![
            ("state", state.to_string()),
            ("storage_class", class),
            ("backend", record.backend.clone()),
            ("stored_name", stored.to_string()),
        ];
        let mem_job = match &mem {
            Some(Retrieval::Pending { job_id, ready_at }) => Some((job_id.clone(), *ready_at)),
            _ => None,
        };
        let job_id = mem_job.as_ref().and_then(|(j, _)| j.clone()).or_else(|| job.as_ref().map(|j| j.job_id.clone()));
        if let Some(j) = job_id {
            out.push(("job_id", j));
        }
        let ready_at = mem_job.and_then(|(_, r)| r).or_else(|| job.as_ref().and_then(|j| j.ready_at));
        if let Some(r) = ready_at {
            out.push(("ready_at", crate::model::utc(r).format("%Y-%m-%dT%H:%M:%SZ").to_string()));
        }
        out
    }

    fn status_text(&self, record: &BackupRecord) -> String {
        let mut s = String::new();
        for (k, v) in self.state_of(record) {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str(&format!("size: {}\n", record.size));
        if !record.tags.is_empty() {
            s.push_str(&format!("tags: {}\n", record.tags));
        }
        if s.contains("state: archived") || s.contains("state: retrieving") {
            s.push_str(
                "note: this backup is in cold storage. Reading any file in it starts a retrieval (once); until it \
                 completes reads fail with EAGAIN (\"Resource temporarily unavailable\"). Run the copy again later.\n",
            );
        }
        s
    }

    /// The extended attributes of a node, with their full names (`user.bakthat.` + [`Inner::xattr_values`]).
    fn xattrs(&self, ino: Ino) -> Result<Vec<(String, String)>> {
        Ok(self.xattr_values(ino)?.into_iter().map(|(k, v)| (format!("{XATTR_PREFIX}{k}"), v)).collect())
    }

    /// The extended attributes of a node, by short name: an /incoming unit's state and progress, the root's
    /// meters, or the state of the backup a node belongs to.
    fn xattr_values(&self, ino: Ino) -> Result<Vec<(&'static str, String)>> {
        if ino >= incoming::BASE {
            let rel = self.incoming.path_of(ino).ok_or(FsError::NotFound)?;
            return Ok(match self.incoming.state(&rel) {
                None => Vec::new(),
                Some(incoming::UnitState::Staged) => vec![("state", "staged".into())],
                Some(incoming::UnitState::BackingUp) => {
                    let mut v = vec![("state", "backing-up".into())];
                    if let Some((done, total)) = self.incoming.progress(&rel) {
                        let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
                        v.push(("progress", format!("{done}/{total} bytes ({pct}%)")));
                    }
                    v
                }
                Some(incoming::UnitState::Failed(e)) => vec![("state", "failed".into()), ("error", e)],
            });
        }
        if ino == ROOT {
            let totals = self.meter.totals();
            return Ok(vec![
                ("store_requests", totals.requests.to_string()),
                ("store_bytes_read", totals.bytes_read.to_string()),
                ("cache_bytes", self.cache.used().to_string()),
                ("cache_cap", self.cache.cap().to_string()),
            ]);
        }
        let t = self.tree();
        let slot = match &t.node(ino)?.kind {
            NodeKind::Backup(s)
            | NodeKind::Entry(s, _)
            | NodeKind::ImpliedDir(s)
            | NodeKind::Raw(s)
            | NodeKind::Status(s) => *s,
            NodeKind::Dir | NodeKind::Latest(_) | NodeKind::Incoming => return Ok(Vec::new()),
        };
        let record = t.slots[slot].record.clone();
        drop(t);
        Ok(self.state_of(&record))
    }
}

/// Reads a cached whole object sequentially.
struct WholeReader<'a> {
    file: &'a cache::CachedFile,
    pos: u64,
}

impl Read for WholeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let data = self.file.read_at(self.pos, buf.len() as u64)?;
        buf[..data.len()].copy_from_slice(&data);
        self.pos += data.len() as u64;
        Ok(data.len())
    }
}
