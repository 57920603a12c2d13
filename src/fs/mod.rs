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

//!
//! The files: `error.rs` (the error type), `tree.rs` (the virtual tree and attributes), `index.rs` (loading entry
//! indexes), `handles.rs` (open files), `read.rs` and `prefetch.rs` (content through the block [`cache`]),
//! `cold.rs` (cold-storage retrievals), `status.rs` (status files and xattrs), [`incoming`] (the writable
//! `/incoming`), [`names`] (escaping). This file holds the public face, [`Fs`], and routes each call to the
//! archive tree or to /incoming once, through `Area`.

pub mod cache;
mod catalog;
#[cfg(test)]
mod chain_tests;
mod cold;
mod cost;
mod error;
mod expand;
mod handles;
pub mod incoming;
mod index;
mod invalidate;
#[cfg(test)]
mod listing_tests;
pub mod names;
mod options;
mod prefetch;
mod read;
mod status;
#[cfg(test)]
mod tests;
mod tree;
mod versions;
#[cfg(test)]
mod versions_tests;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::archive::index::EntryKind;
use crate::archive::Secret;
use crate::client::Client;
use crate::lock;
use crate::model::{BackupRecord, Destination, Epoch, StoreId};
use crate::ops::{Ctx, OpsError};
use crate::storage::metered::{Meter, Totals};
use crate::storage::Backend;
use cache::BlockCache;
pub use error::{is_full, FsError, Result};
use handles::{Handle, Handles, OpenFile};
pub use invalidate::{Invalidation, Watcher};
pub use options::MountOptions;
use tree::{NodeKind, Tree};

/// An inode number; [`ROOT`] is the mount's root.
pub type Ino = u64;
/// The root directory's inode.
pub const ROOT: Ino = 1;
/// Every extended attribute the mount shows starts with this.
pub const XATTR_PREFIX: &str = "user.bakthat.";
/// Name of the status file in each backup directory.
pub const STATUS_FILE: &[u8] = b".bakthat-status";

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

/// An open file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// Keep the kernel's page cache across opens (immutable backup content; a directory listing that has not
    /// changed since the last open).
    pub keep_cache: bool,
    /// A directory whose listing the kernel may cache (it changes only when the mount says so, see
    /// [`Invalidation`]).
    pub cache_dir: bool,
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

/// Opens the store holding a backup; the CLI passes the profile's [`crate::stores::Stores::open_record`], tests a
/// counting store.
pub type OpenBackend = Arc<dyn Fn(&BackupRecord) -> Result<Arc<dyn Backend>, OpsError> + Send + Sync>;

/// The mounted filesystem. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Fs {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every /incoming backup goes through the client, so the profile's hooks, events and auto-sync apply to it.
    client: Arc<Client>,
    open_backend: OpenBackend,
    /// Opened stores, by kind and identity.
    backends: Mutex<HashMap<(Destination, StoreId), Arc<dyn Backend>>>,
    /// Every request the mount makes to a store, and the bytes it read.
    meter: Arc<Meter>,
    secret: Option<Arc<Secret>>,
    opts: MountOptions,
    cache: BlockCache,
    tree: RwLock<Tree>,
    checked: Mutex<Option<Instant>>,
    /// Held while the inventory is re-read.
    refreshing: Mutex<()>,
    /// What the kernel must be told to forget, and the signal that there is some.
    invalidations: Mutex<Vec<Invalidation>>,
    invalidated: Condvar,
    handles: Handles,
    prefetching: AtomicU64,
    /// Whether a failed cache write was already reported.
    cache_warned: AtomicBool,
    cold: Mutex<HashMap<String, cold::Cold>>,
    /// Key settings of the encrypted index copies whose key check this password passed.
    opened_keys: Mutex<HashSet<index::KeySettings>>,
    mounted_at: Epoch,
    incoming: incoming::Incoming,
}

/// Which part of the mount an inode belongs to. Every operation asks [`Inner::area`] once and matches on it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Area {
    /// The read-only archive tree: the virtual directories, backups, their content and status files (or an inode
    /// that does not exist, which the tree reports as not found).
    Archive,
    /// `/incoming` itself: a node of the tree (its attributes come from there) whose content is the staging area.
    IncomingRoot,
    /// Something staged under `/incoming`, by its path relative to the staging area.
    Staged(PathBuf),
}

impl Area {
    /// The staged directory a name in this inode is looked up in (`""` for /incoming itself).
    fn staged_dir(self) -> Option<PathBuf> {
        match self {
            Area::Archive => None,
            Area::IncomingRoot => Some(PathBuf::new()),
            Area::Staged(rel) => Some(rel),
        }
    }
}

/// At most this many entries of a backup's directory per `readdir` call (the kernel asks again for the rest).
const READDIR_PAGE: usize = 4096;

impl Inner {
    /// The operations context (inventory, clock) of the mount's client.
    fn ctx(&self) -> &Ctx {
        self.client.ctx()
    }

    /// Where an inode lives (see [`Area`]). An inode of a backup whose content was let go (the listing budget)
    /// gets that content laid out again here, so every operation finds it.
    fn area(&self, ino: Ino) -> Result<Area> {
        if incoming::owns(ino) {
            return self.incoming.path_of(ino).map(Area::Staged).ok_or(FsError::NotFound);
        }
        let (kind, evicted) = {
            let t = self.tree();
            (t.node(ino).map(|n| n.kind), t.evicted_owner(ino))
        };
        if let Some(dir) = evicted {
            let owner = self.tree().node(dir).map(|n| n.kind);
            if let Ok(NodeKind::Backup(id)) = owner {
                self.expand(dir, id)?;
            }
        }
        let view_owner = self.tree().versions_owner(ino);
        if let Some(dir) = view_owner {
            self.lay_out_versions(dir)?;
        }
        Ok(if kind.is_ok_and(|k| k == NodeKind::Incoming) { Area::IncomingRoot } else { Area::Archive })
    }

    /// The staged directory `ino` is, or EROFS: only /incoming can change.
    fn staged_dir(&self, ino: Ino) -> Result<PathBuf> {
        self.area(ino)?.staged_dir().ok_or(FsError::ReadOnly)
    }
}

impl Fs {
    /// Builds the filesystem over the inventory of `client`, opening stores with `open_backend`; what is copied
    /// into /incoming is backed up with [`Client::backup`]. An encrypted backup's index is decrypted once here, so a
    /// wrong password fails now rather than on reads.
    pub fn new(
        client: Arc<Client>,
        open_backend: OpenBackend,
        secret: Option<Arc<Secret>>,
        opts: MountOptions,
    ) -> Result<Fs> {
        let cache = BlockCache::open(&opts.cache_dir, opts.cache_size).map_err(FsError::Cache)?;
        let incoming = incoming::Incoming::new(&opts.staging_dir, opts.settle).map_err(FsError::Staging)?;
        let mounted_at = client.ctx().now();
        let budget = opts.listing_budget;
        let inner = Arc::new(Inner {
            client,
            open_backend,
            backends: Mutex::new(HashMap::new()),
            meter: Meter::new(),
            secret,
            opts,
            cache,
            tree: RwLock::new(Tree::new(budget)),
            checked: Mutex::new(None),
            refreshing: Mutex::new(()),
            invalidations: Mutex::new(Vec::new()),
            invalidated: Condvar::new(),
            handles: Handles::new(),
            prefetching: AtomicU64::new(0),
            cache_warned: AtomicBool::new(false),
            cold: Mutex::new(HashMap::new()),
            opened_keys: Mutex::new(HashSet::new()),
            mounted_at,
            incoming,
        });
        let fs = Fs { inner };
        fs.inner.refresh(true)?;
        fs.inner.check_password()?;
        Ok(fs)
    }

    /// Starts the thread that polls pending cold-storage retrievals every `poll_interval`, and the one that backs
    /// up /incoming units when they are due; both end with the filesystem.
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
        // The kernel caches listings; this notices backups made or deleted elsewhere (a sync, another bakthat)
        // even when nobody opens a directory, and queues the invalidations.
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.opts.refresh_interval.max(Duration::from_millis(100));
        std::thread::Builder::new()
            .name("bakthat-refresh".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(inner) => {
                        if let Err(e) = inner.refresh(false) {
                            tracing::warn!("re-reading the inventory: {}", crate::error_chain(&e));
                        }
                    }
                    None => return,
                }
            })
            .map(drop)
            .unwrap_or_else(|e| tracing::warn!("cannot start the inventory watcher: {e}"));
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
        if let Some(dir) = self.inner.area(parent)?.staged_dir() {
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
                t.child(parent, name)?
            }
        };
        self.getattr(ino)
    }

    /// Attributes of a node.
    pub fn getattr(&self, ino: Ino) -> Result<Entry> {
        match self.inner.area(ino)? {
            Area::Staged(rel) => Ok(Entry { attr: self.inner.incoming.attr(&rel, ino)?, ttl: Duration::ZERO }),
            Area::Archive | Area::IncomingRoot => self.inner.tree().attr(&self.inner, ino),
        }
    }

    /// The target of a symbolic link.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        if let Area::Staged(rel) = self.inner.area(ino)? {
            return self.inner.incoming.readlink(&rel);
        }
        let t = self.inner.tree();
        match t.node(ino)?.kind {
            NodeKind::Latest => t.cat.latest(ino).map(|(target, _)| target).ok_or(FsError::NotFound),
            NodeKind::Entry(id, e) => {
                let loaded = t.loaded(id)?;
                let entry = &loaded.index.entries[e];
                match entry.kind {
                    EntryKind::Symlink => Ok(entry.link.clone().unwrap_or_default()),
                    _ => Err(FsError::NotASymlink),
                }
            }
            _ => Err(FsError::NotASymlink),
        }
    }

    /// Opens a directory (never touches a store). Every directory of the archive tree may be cached by the kernel
    /// (`cache_dir`): a backup's own never change, and the mount tells the kernel when a virtual one does. Opening a
    /// virtual directory also checks the inventory (at most once per `refresh_interval`); `keep_cache` is false
    /// when the listing changed since the directory was last opened, so this open does not see the old listing even
    /// if the notification has not reached the kernel yet. /incoming changes under the kernel: never cached.
    pub fn opendir(&self, ino: Ino) -> Result<Opened> {
        if self.inner.area(ino)? != Area::Archive {
            return match self.getattr(ino)?.attr.kind {
                Kind::Dir => Ok(Opened { fh: 0, keep_cache: false, cache_dir: false, direct_io: false }),
                _ => Err(FsError::NotADirectory),
            };
        }
        let node = self.inner.tree().node(ino)?;
        match node.kind {
            NodeKind::Dir => self.inner.refresh(false)?,
            NodeKind::Backup(_) => {}
            // A view follows its name's backups: listed afresh on every open (see `versions.rs`).
            NodeKind::VersionDir => {
                self.inner.prepare_dir(ino)?;
                return Ok(Opened { fh: 0, keep_cache: false, cache_dir: false, direct_io: false });
            }
            _ if node.listable => {}
            _ => return Err(FsError::NotADirectory),
        }
        let keep_cache = self.inner.tree_mut().take_clean(ino);
        Ok(Opened { fh: 0, keep_cache, cache_dir: true, direct_io: false })
    }

    /// A handle that hands out what the kernel must forget as the inventory changes (see [`Watcher::next`]).
    pub fn watcher(&self) -> Watcher {
        Watcher { inner: Arc::downgrade(&self.inner) }
    }

    /// Entries of a directory after `offset` (0 for the start), `.` and `..` included.
    pub fn readdir(&self, ino: Ino, offset: u64) -> Result<Vec<DirEntry>> {
        let skip = offset.saturating_sub(2) as usize;
        let (parent, children) = match self.inner.area(ino)?.staged_dir() {
            Some(dir) => (ROOT, self.inner.incoming.list(&dir)?.into_iter().skip(skip).collect()),
            None => {
                self.inner.prepare_dir(ino)?;
                self.inner.tree().listing(ino, skip, READDIR_PAGE)?
            }
        };
        let mut out = Vec::new();
        if offset < 1 {
            out.push(DirEntry { ino, kind: Kind::Dir, name: b".".to_vec(), offset: 1 });
        }
        if offset < 2 {
            out.push(DirEntry { ino: parent, kind: Kind::Dir, name: b"..".to_vec(), offset: 2 });
        }
        for (i, (name, child, kind)) in children.into_iter().enumerate() {
            out.push(DirEntry { ino: child, kind, name, offset: (skip + i) as u64 + 3 });
        }
        Ok(out)
    }

    /// [`Fs::readdir`] with each entry's attributes (the kernel's READDIRPLUS): one round trip gives `ls -l`
    /// everything, instead of a lookup per entry. Children that vanished meanwhile are left out.
    pub fn readdirplus(&self, ino: Ino, offset: u64) -> Result<Vec<(DirEntry, Entry)>> {
        let mut out = Vec::new();
        self.readdirplus_until(ino, offset, |d, e| {
            out.push((d, e));
            false
        })?;
        Ok(out)
    }

    /// [`Fs::readdirplus`], handing each entry to `add` until it says the reply is full: attributes are looked up
    /// only for the entries that fit (a READDIRPLUS reply holds a few hundred of the up to 4096 listed).
    pub fn readdirplus_until(&self, ino: Ino, offset: u64, mut add: impl FnMut(DirEntry, Entry) -> bool) -> Result<()> {
        for d in self.readdir(ino, offset)? {
            if let Ok(e) = self.getattr(d.ino) {
                if add(d, e) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Opens a file for reading.
    pub fn open(&self, ino: Ino, write: bool) -> Result<Opened> {
        self.open_file(ino, write, false)
    }

    /// Opens a file; `write` asks for write access, `truncate` for O_TRUNC (only in /incoming).
    pub fn open_file(&self, ino: Ino, write: bool, truncate: bool) -> Result<Opened> {
        let handles = &self.inner.handles;
        if let Area::Staged(rel) = self.inner.area(ino)? {
            let fh = handles.allocate();
            self.inner.incoming.open(&rel, write, truncate, fh)?;
            handles.insert(fh, OpenFile::Staged);
            return Ok(Opened { fh, keep_cache: false, cache_dir: false, direct_io: false });
        }
        let kind = self.inner.tree().node(ino)?.kind;
        let (keep_cache, direct_io) = match kind {
            NodeKind::Entry(..) | NodeKind::Raw(_) | NodeKind::Version => (true, false),
            NodeKind::Status(_) => (false, true),
            NodeKind::Dir
            | NodeKind::Backup(_)
            | NodeKind::ImpliedDir(_)
            | NodeKind::Incoming
            | NodeKind::VersionDir => return Err(FsError::IsADirectory),
            NodeKind::Latest => (true, false),
        };
        if write {
            return Err(FsError::ReadOnly);
        }
        let fh = handles.allocate();
        handles.insert(fh, OpenFile::Archive(Arc::new(Mutex::new(Handle::new(ino)))));
        Ok(Opened { fh, keep_cache, cache_dir: false, direct_io })
    }

    /// Reads `size` bytes at `offset` of an open file.
    pub fn read(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        match self.inner.handles.get(fh).ok_or(FsError::BadHandle(fh))? {
            OpenFile::Staged => self.inner.incoming.read(fh, offset, size),
            OpenFile::Archive(handle) => {
                // Lays the backup's content out again if it was let go since the open.
                self.inner.area(ino)?;
                let mut h = lock(&handle);
                if h.ino != ino {
                    return Err(FsError::BadHandle(fh));
                }
                self.inner.read(&mut h, offset, u64::from(size))
            }
        }
    }

    /// Writes into an open file (only files in /incoming can be open for writing).
    pub fn write(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        match self.inner.handles.get(fh) {
            Some(OpenFile::Staged) => self.inner.incoming.write(fh, offset, data),
            Some(OpenFile::Archive(_)) | None => self.modify(ino).map(|_| 0),
        }
    }

    /// Closes a file handle. Closing the last writer of a file in /incoming makes it due for backup.
    pub fn release(&self, fh: u64) -> Result<()> {
        match self.inner.handles.remove(fh).ok_or(FsError::BadHandle(fh))? {
            OpenFile::Staged => drop(self.inner.incoming.release(fh)),
            OpenFile::Archive(_) => {}
        }
        Ok(())
    }

    /// Creates and opens a file (only in /incoming).
    pub fn create(&self, parent: Ino, name: &[u8], mode: u32) -> Result<(Entry, Opened)> {
        let dir = self.inner.staged_dir(parent)?;
        let fh = self.inner.handles.allocate();
        let (_, ino) = self.inner.incoming.create(&dir, name, mode, fh)?;
        self.inner.handles.insert(fh, OpenFile::Staged);
        Ok((self.getattr(ino)?, Opened { fh, keep_cache: false, cache_dir: false, direct_io: false }))
    }

    /// Makes a directory (only in /incoming; `@tag1,tag2` at the top gives tags to what goes in it).
    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32) -> Result<Entry> {
        let dir = self.inner.staged_dir(parent)?;
        let (_, ino) = self.inner.incoming.mkdir(&dir, name, mode)?;
        self.getattr(ino)
    }

    /// Makes a symbolic link (only in /incoming).
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &std::path::Path) -> Result<Entry> {
        let dir = self.inner.staged_dir(parent)?;
        let (_, ino) = self.inner.incoming.symlink(&dir, name, target)?;
        self.getattr(ino)
    }

    /// Removes a file or (empty) directory (only in /incoming).
    pub fn remove(&self, parent: Ino, name: &[u8], is_dir: bool) -> Result<()> {
        let dir = self.inner.staged_dir(parent)?;
        self.inner.incoming.remove(&dir, name, is_dir)
    }

    /// Renames within /incoming.
    pub fn rename(&self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8]) -> Result<()> {
        if self.inner.area(parent)? == Area::Archive && self.inner.area(newparent)? != Area::Archive {
            // Dragging from /by-name into /incoming is a rename to the kernel; EXDEV makes the mover copy instead.
            return Err(FsError::CrossDevice);
        }
        let dir = self.inner.staged_dir(parent)?;
        let newdir = self.inner.staged_dir(newparent)?;
        self.inner.incoming.rename(&dir, name, &newdir, newname)
    }

    /// access(2): the node exists, and a write test fails with EROFS outside /incoming (without it, root and file
    /// managers were told that backups are writable: `gio info` said `access::can-write TRUE`).
    pub fn access(&self, ino: Ino, write: bool) -> Result<()> {
        self.getattr(ino)?;
        if write && self.inner.area(ino)? == Area::Archive {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Truncate, chmod, utimes (only in /incoming; elsewhere EROFS).
    pub fn setattr(&self, ino: Ino, size: Option<u64>, mode: Option<u32>, mtime: Option<i64>) -> Result<Entry> {
        match self.inner.area(ino)? {
            Area::Staged(rel) => self.inner.incoming.setattr(&rel, size, mode, mtime)?,
            Area::Archive | Area::IncomingRoot => self.modify(ino)?,
        }
        self.getattr(ino)
    }

    /// Backs up the /incoming units that are due (what the background ticker does every 250 ms).
    pub fn incoming_tick(&self) {
        let due = self.inner.incoming.due();
        for (unit, tags) in &due {
            self.inner.incoming.back_up(&self.inner.client, self.inner.secret.as_ref(), unit, tags);
        }
        if !due.is_empty() {
            // Show the new backups (and tell the kernel) now rather than at the next check.
            if let Err(e) = self.inner.refresh(true) {
                tracing::warn!("re-reading the inventory: {}", crate::error_chain(&e));
            }
        }
    }

    /// Any other change (hard links, xattrs, devices…), and any change outside `/incoming`: refused.
    pub fn modify(&self, ino: Ino) -> Result<()> {
        if self.inner.area(ino)? == Area::Archive {
            self.inner.tree().node(ino)?;
        }
        Err(FsError::ReadOnly)
    }
}
