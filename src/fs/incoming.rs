//! `/incoming`: a drop folder that turns what is copied into it into backups.
//!
//! Everything under `/incoming` is staged on disk in a real directory (never held in memory) and served from it.
//! A *unit* is a top-level entry of `/incoming`, or a top-level entry of an `@tag1,tag2` directory (which gives
//! those tags to what is dropped into it). A file unit is backed up when its last writer closes it; a directory
//! unit once nothing was written to it for the settle period. On success the unit leaves `/incoming` (and appears
//! under `/by-name`); on failure it stays where it is, with `user.bakthat.state` = `failed` and
//! `user.bakthat.error` saying why, and is tried again after it changes. A unit is backed up with
//! [`Client::backup`], like a `bakthat backup`: the profile's hooks, the client's events and plugins and `sync.auto`
//! apply. The logic here knows nothing about fuser.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Attr, FsError, Ino, Kind, Result};
use crate::archive::Secret;
use crate::client::Client;
use crate::lock;
use crate::ops::BackupOptions;

/// Inode numbers of staged entries start here (the tree's own are small).
pub const BASE: Ino = 1 << 40;
/// Staged inodes are numbered below this (the archive tree's backup directories start here).
const END: Ino = 1 << 42;

/// Whether `ino` is one of /incoming's staged inodes.
pub fn owns(ino: Ino) -> bool {
    (BASE..END).contains(&ino)
}

/// Where a unit is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitState {
    /// Being written, or settling.
    Staged,
    BackingUp,
    Failed(String),
}

/// The staging area and the state of each unit.
pub struct Incoming {
    root: PathBuf,
    settle: Duration,
    inos: Mutex<Inos>,
    units: Mutex<HashMap<PathBuf, Unit>>,
    handles: Mutex<HashMap<u64, OpenFile>>,
}

/// An open staged file: its path, the file, and whether it was opened for writing.
type OpenFile = (PathBuf, Arc<File>, bool);

#[derive(Default)]
struct Inos {
    by_path: HashMap<PathBuf, Ino>,
    by_ino: HashMap<Ino, PathBuf>,
    /// Staged inodes handed out so far. Numbers are never reused: the kernel may still hold a forgotten one, and a
    /// directory number given to two paths makes it refuse the second (ELOOP).
    issued: Ino,
}

struct Unit {
    writers: usize,
    last_change: Instant,
    state: UnitState,
    is_file: bool,
    /// While backing up: source bytes read so far, and the unit's size.
    progress: Option<(Arc<AtomicU64>, u64)>,
}

fn io_err(e: io::Error) -> FsError {
    match e.kind() {
        io::ErrorKind::NotFound => FsError::NotFound,
        io::ErrorKind::AlreadyExists => FsError::Exists,
        io::ErrorKind::DirectoryNotEmpty => FsError::NotEmpty,
        io::ErrorKind::IsADirectory => FsError::IsADirectory,
        io::ErrorKind::NotADirectory => FsError::NotADirectory,
        _ if super::is_full(&e) => FsError::NoSpace { what: "/incoming staging area", source: e },
        _ => FsError::Staging(e),
    }
}

fn osname(b: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b)
}

/// The unit a staged path belongs to, and the tags it gets.
pub fn unit_of(rel: &Path) -> Option<(PathBuf, Vec<String>)> {
    let comps: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let first = comps.first()?.to_string_lossy();
    if let Some(tags) = first.strip_prefix('@') {
        let second = comps.get(1)?;
        let tags = tags.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect();
        Some((Path::new(comps[0]).join(second), tags))
    } else {
        Some((PathBuf::from(comps[0]), Vec::new()))
    }
}

impl Incoming {
    /// Opens (creating, mode 0700) the staging directory. Units left from an earlier mount are picked up again.
    pub fn new(root: &Path, settle: Duration) -> io::Result<Incoming> {
        fs::create_dir_all(root)?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        let inc = Incoming {
            root: root.to_path_buf(),
            settle,
            inos: Mutex::new(Inos::default()),
            units: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
        };
        for e in fs::read_dir(root)?.flatten() {
            let rel = PathBuf::from(e.file_name());
            let tag_dir = rel.to_string_lossy().starts_with('@') && e.file_type().is_ok_and(|t| t.is_dir());
            if tag_dir {
                // The units of an `@tags` directory are its entries.
                for sub in fs::read_dir(e.path())?.flatten() {
                    inc.touch(&rel.join(sub.file_name()));
                }
            } else {
                inc.touch(&rel);
            }
        }
        Ok(inc)
    }

    fn real(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// The staged path of an inode (`""` is /incoming itself, given as `root_ino`).
    pub fn path_of(&self, ino: Ino) -> Option<PathBuf> {
        lock(&self.inos).by_ino.get(&ino).cloned()
    }

    fn ino_of(&self, rel: &Path) -> Ino {
        let mut inos = lock(&self.inos);
        if let Some(&i) = inos.by_path.get(rel) {
            return i;
        }
        inos.issued += 1;
        let i = BASE + inos.issued;
        inos.by_path.insert(rel.to_path_buf(), i);
        inos.by_ino.insert(i, rel.to_path_buf());
        i
    }

    fn forget_under(&self, rel: &Path) {
        let mut inos = lock(&self.inos);
        let gone: Vec<PathBuf> = inos.by_path.keys().filter(|p| p.starts_with(rel)).cloned().collect();
        for p in gone {
            if let Some(i) = inos.by_path.remove(&p) {
                inos.by_ino.remove(&i);
            }
        }
    }

    /// Attributes of a staged entry (`root_ino` for /incoming itself).
    pub fn attr(&self, rel: &Path, ino: Ino) -> Result<Attr> {
        let m = fs::symlink_metadata(self.real(rel)).map_err(io_err)?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::File
        };
        Ok(Attr {
            ino,
            kind,
            size: m.len(),
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
        })
    }

    /// Looks a name up in a staged directory; returns its path and inode.
    pub fn lookup(&self, dir: &Path, name: &[u8]) -> Result<(PathBuf, Ino)> {
        let rel = dir.join(osname(name));
        fs::symlink_metadata(self.real(&rel)).map_err(io_err)?;
        let ino = self.ino_of(&rel);
        Ok((rel, ino))
    }

    /// Entries of a staged directory: (name, ino, kind), sorted by name.
    pub fn list(&self, dir: &Path) -> Result<Vec<(Vec<u8>, Ino, Kind)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.real(dir)).map_err(io_err)? {
            let e = e.map_err(io_err)?;
            let rel = dir.join(e.file_name());
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => Kind::Dir,
                Ok(t) if t.is_symlink() => Kind::Symlink,
                _ => Kind::File,
            };
            out.push((e.file_name().as_encoded_bytes().to_vec(), self.ino_of(&rel), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Notes a change below a unit (restarts its settle period and clears an old failure).
    fn touch(&self, rel: &Path) {
        self.touch_as(rel, false)
    }

    /// [`Incoming::touch`], also counting a new writer of the unit (in the same step, so the unit is never seen
    /// idle in between).
    fn touch_as(&self, rel: &Path, writer: bool) {
        let Some((unit, _)) = unit_of(rel) else { return };
        if unit.components().count() == 1 && unit.to_string_lossy().starts_with('@') {
            return;
        }
        let is_file = fs::symlink_metadata(self.real(&unit)).map(|m| !m.is_dir()).unwrap_or(true);
        let mut units = lock(&self.units);
        let u = units.entry(unit).or_insert(Unit {
            writers: 0,
            last_change: Instant::now(),
            state: UnitState::Staged,
            is_file,
            progress: None,
        });
        u.last_change = Instant::now();
        u.is_file = is_file;
        if writer {
            u.writers += 1;
        }
        if u.state != UnitState::BackingUp {
            u.state = UnitState::Staged;
        }
    }

    /// Creates and opens a file for writing.
    pub fn create(&self, dir: &Path, name: &[u8], mode: u32, fh: u64) -> Result<(PathBuf, Ino)> {
        let rel = dir.join(osname(name));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode & 0o7777)
            .open(self.real(&rel))
            .map_err(io_err)?;
        self.touch_as(&rel, true);
        self.add_handle(fh, &rel, f, true);
        let ino = self.ino_of(&rel);
        Ok((rel, ino))
    }

    fn add_handle(&self, fh: u64, rel: &Path, f: File, write: bool) {
        lock(&self.handles).insert(fh, (rel.to_path_buf(), Arc::new(f), write));
    }

    /// Opens a staged file.
    pub fn open(&self, rel: &Path, write: bool, truncate: bool, fh: u64) -> Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(write)
            .truncate(truncate && write)
            .open(self.real(rel))
            .map_err(io_err)?;
        if write {
            self.touch_as(rel, true);
        }
        self.add_handle(fh, rel, f, write);
        Ok(())
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = lock(&self.handles).get(&fh).map(|h| h.1.clone()).ok_or(FsError::BadHandle(fh))?;
        let mut buf = vec![0u8; size as usize];
        let mut n = 0;
        while n < buf.len() {
            let k = f.read_at(&mut buf[n..], offset + n as u64).map_err(io_err)?;
            if k == 0 {
                break;
            }
            n += k;
        }
        buf.truncate(n);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        use std::os::unix::fs::FileExt;
        let (rel, f) =
            lock(&self.handles).get(&fh).map(|h| (h.0.clone(), h.1.clone())).ok_or(FsError::BadHandle(fh))?;
        f.write_all_at(data, offset).map_err(io_err)?;
        self.touch(&rel);
        Ok(data.len() as u32)
    }

    /// Closes a handle; returns the unit to back up now when this was the last writer of a file unit.
    pub fn release(&self, fh: u64) -> Option<(PathBuf, Vec<String>)> {
        let (rel, _, write) = lock(&self.handles).remove(&fh)?;
        if !write {
            return None;
        }
        let (unit, tags) = unit_of(&rel)?;
        let mut units = lock(&self.units);
        let u = units.get_mut(&unit)?;
        u.writers = u.writers.saturating_sub(1);
        u.last_change = Instant::now();
        (u.writers == 0 && u.is_file && u.state == UnitState::Staged).then_some((unit, tags))
    }

    pub fn mkdir(&self, dir: &Path, name: &[u8], mode: u32) -> Result<(PathBuf, Ino)> {
        let rel = dir.join(osname(name));
        fs::create_dir(self.real(&rel)).map_err(io_err)?;
        let _ = fs::set_permissions(self.real(&rel), fs::Permissions::from_mode((mode & 0o7777) | 0o700));
        self.touch(&rel);
        let ino = self.ino_of(&rel);
        Ok((rel, ino))
    }

    pub fn symlink(&self, dir: &Path, name: &[u8], target: &Path) -> Result<(PathBuf, Ino)> {
        let rel = dir.join(osname(name));
        std::os::unix::fs::symlink(target, self.real(&rel)).map_err(io_err)?;
        self.touch(&rel);
        let ino = self.ino_of(&rel);
        Ok((rel, ino))
    }

    pub fn readlink(&self, rel: &Path) -> Result<Vec<u8>> {
        Ok(fs::read_link(self.real(rel)).map_err(io_err)?.into_os_string().into_encoded_bytes())
    }

    pub fn remove(&self, dir: &Path, name: &[u8], is_dir: bool) -> Result<()> {
        let rel = dir.join(osname(name));
        if is_dir {
            fs::remove_dir(self.real(&rel)).map_err(io_err)?;
        } else {
            fs::remove_file(self.real(&rel)).map_err(io_err)?;
        }
        self.forget_under(&rel);
        if let Some((unit, _)) = unit_of(&rel) {
            if unit == rel {
                lock(&self.units).remove(&unit);
            } else {
                self.touch(&rel);
            }
        }
        Ok(())
    }

    pub fn rename(&self, dir: &Path, name: &[u8], newdir: &Path, newname: &[u8]) -> Result<()> {
        let from = dir.join(osname(name));
        let to = newdir.join(osname(newname));
        fs::rename(self.real(&from), self.real(&to)).map_err(io_err)?;
        self.forget_under(&from);
        if let Some((unit, _)) = unit_of(&from) {
            if unit == from {
                lock(&self.units).remove(&unit);
            }
        }
        self.touch(&to);
        Ok(())
    }

    /// `truncate`, `chmod`, `utimes` on a staged entry.
    pub fn setattr(&self, rel: &Path, size: Option<u64>, mode: Option<u32>, mtime: Option<i64>) -> Result<()> {
        let p = self.real(rel);
        if let Some(s) = size {
            OpenOptions::new().write(true).open(&p).and_then(|f| f.set_len(s)).map_err(io_err)?;
        }
        if let Some(m) = mode {
            fs::set_permissions(&p, fs::Permissions::from_mode(m & 0o7777)).map_err(io_err)?;
        }
        if let Some(t) = mtime {
            let f = File::open(&p).map_err(io_err)?;
            let when = std::time::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
            f.set_modified(when).map_err(io_err)?;
        }
        self.touch(rel);
        Ok(())
    }

    /// The state of the unit a staged path belongs to, for xattrs.
    pub fn state(&self, rel: &Path) -> Option<UnitState> {
        let (unit, _) = unit_of(rel)?;
        lock(&self.units).get(&unit).map(|u| u.state.clone())
    }

    /// While the unit of `rel` is being backed up: (source bytes read so far, its size).
    pub fn progress(&self, rel: &Path) -> Option<(u64, u64)> {
        let (unit, _) = unit_of(rel)?;
        let units = lock(&self.units);
        let (done, total) = units.get(&unit)?.progress.as_ref()?;
        Some((done.load(Ordering::Relaxed), *total))
    }

    /// Units that are due: directories quiet for the settle period (and files nobody writes any more).
    pub fn due(&self) -> Vec<(PathBuf, Vec<String>)> {
        let units = lock(&self.units);
        units
            .iter()
            .filter(|(_, u)| {
                u.writers == 0 && u.state == UnitState::Staged && (u.is_file || u.last_change.elapsed() >= self.settle)
            })
            .filter_map(|(p, _)| unit_of(p))
            .collect()
    }

    /// Backs a unit up; on success removes it from the staging area, on failure keeps it with the error.
    pub fn back_up(&self, client: &Client, secret: Option<&Arc<Secret>>, unit: &Path, tags: &[String]) {
        {
            let mut units = lock(&self.units);
            match units.get_mut(unit) {
                Some(u) if u.state == UnitState::Staged && u.writers == 0 => u.state = UnitState::BackingUp,
                _ => return,
            }
        }
        let real = self.real(unit);
        let name = unit.file_name().map(|n| n.to_string_lossy().into_owned());
        let done = Arc::new(AtomicU64::new(0));
        if let Some(u) = lock(&self.units).get_mut(unit) {
            u.progress = Some((done.clone(), crate::ops::tree_size(&real)));
        }
        let opts = BackupOptions {
            source: real.clone(),
            tags: tags.to_vec(),
            name,
            password: secret.cloned(),
            progress: Some(Arc::new(move |n| {
                done.fetch_add(n, Ordering::Relaxed);
            })),
            ..BackupOptions::default()
        };
        tracing::info!(unit = %unit.display(), "backing up from /incoming");
        let result = client.backup(&opts);
        let mut units = lock(&self.units);
        match result {
            Ok(out) => {
                let removed = if real.is_dir() { fs::remove_dir_all(&real) } else { fs::remove_file(&real) };
                if let Err(e) = removed {
                    tracing::warn!(
                        "backed up {} as {}, but could not remove it from /incoming: {e}",
                        unit.display(),
                        out.record.stored_filename
                    );
                }
                units.remove(unit);
                drop(units);
                self.forget_under(unit);
                tracing::info!("backed up {} from /incoming as {}", unit.display(), out.record.stored_filename);
            }
            Err(e) => {
                let msg = crate::error_chain(&e);
                tracing::warn!("backing up {} from /incoming failed (it stays there): {msg}", unit.display());
                if let Some(u) = units.get_mut(unit) {
                    u.state = UnitState::Failed(msg);
                    u.progress = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_tags() {
        assert_eq!(unit_of(Path::new("a/b/c")), Some((PathBuf::from("a"), vec![])));
        assert_eq!(unit_of(Path::new("file.txt")), Some((PathBuf::from("file.txt"), vec![])));
        assert_eq!(
            unit_of(Path::new("@db,daily/dump/x.sql")),
            Some((PathBuf::from("@db,daily/dump"), vec!["db".to_string(), "daily".to_string()]))
        );
        assert_eq!(unit_of(Path::new("@db")), None);
        assert_eq!(unit_of(Path::new("")), None);
    }

    /// A unit backed up and forgotten must not hand its number (or a live one) to the next path: two staged
    /// directories with one inode number made `mkdir` in /incoming fail with ELOOP.
    #[test]
    fn inode_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let inc = Incoming::new(dir.path(), Duration::from_secs(3)).unwrap();
        let a = inc.ino_of(Path::new("notes.txt"));
        let b = inc.ino_of(Path::new("@photos"));
        inc.forget_under(Path::new("notes.txt"));
        let c = inc.ino_of(Path::new("@photos/album"));
        assert!(c != a && c != b, "{a} {b} {c}");
        assert_eq!(inc.ino_of(Path::new("@photos")), b);
        assert!(owns(a) && owns(b) && owns(c));
    }
}
