//! The FUSE adapter: the only module that names fuser. Each callback converts its arguments, calls
//! [`crate::fs::Fs`], and replies with the result; every [`FsError`] becomes an errno in [`errno`], one exhaustive
//! match. No filesystem logic lives here.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, Notifier, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, SessionACL,
    TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, Fs, FsError, Invalidation, Kind, Opened, Watcher, XattrReply};

/// The errno for each filesystem error. Exhaustive, no wildcard: a new variant does not compile until it has one.
pub fn errno(e: &FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::NotADirectory => Errno::ENOTDIR,
        FsError::IsADirectory => Errno::EISDIR,
        FsError::NotASymlink => Errno::EINVAL,
        FsError::ReadOnly => Errno::EROFS,
        FsError::CrossDevice => Errno::EXDEV,
        FsError::BadHandle(_) => Errno::EBADF,
        FsError::NoXattr => Errno::NO_XATTR,
        FsError::XattrTooSmall => Errno::ERANGE,
        FsError::XattrNamespace => Errno::EOPNOTSUPP,
        FsError::RetrievalPending { .. } => Errno::EAGAIN,
        FsError::PasswordNeeded { .. } => Errno::EACCES,
        FsError::WrongPassword { .. } => Errno::EACCES,
        FsError::WrongPasswordOrDamaged { .. } => Errno::EACCES,
        FsError::Integrity { .. } => Errno::EIO,
        FsError::IncompleteAtBackup { .. } => Errno::EIO,
        FsError::Backend { .. } => Errno::EIO,
        FsError::TooLarge { .. } => Errno::EFBIG,
        FsError::Open { .. } => Errno::EIO,
        FsError::Inventory(_) => Errno::EIO,
        FsError::Cache(_) => Errno::EIO,
        FsError::Exists => Errno::EEXIST,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::Staging(_) => Errno::EIO,
        FsError::NoSpace { .. } => Errno::ENOSPC,
    }
}

fn fail(op: &str, e: &FsError) -> Errno {
    if e.is_noteworthy() {
        tracing::warn!("{op}: {}", crate::error_chain(e));
    } else {
        tracing::debug!("{op}: {e}");
    }
    errno(e)
}

fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn fopen_flags(o: &Opened) -> FopenFlags {
    let mut f = FopenFlags::empty();
    for (on, flag) in [
        (o.keep_cache, FopenFlags::FOPEN_KEEP_CACHE),
        (o.cache_dir, FopenFlags::FOPEN_CACHE_DIR),
        (o.direct_io, FopenFlags::FOPEN_DIRECT_IO),
    ] {
        if on {
            f |= flag;
        }
    }
    f
}

/// The fuser face of [`Fs`].
pub struct FuseFs {
    fs: Fs,
}

impl FuseFs {
    pub fn new(fs: Fs) -> Self {
        FuseFs { fs }
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Best effort: larger requests mean fewer round trips; the kernel clamps what it does not support.
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_write(1 << 20);
        // Directory listings carry attributes, so `ls -l` needs no lookup per entry; symbolic links are cached like
        // pages (the mount invalidates `latest` when it moves); lookups and listings in one directory run in parallel.
        for flag in [InitFlags::FUSE_DO_READDIRPLUS, InitFlags::FUSE_CACHE_SYMLINKS, InitFlags::FUSE_PARALLEL_DIROPS] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0)),
            Err(e) => reply.error(fail("lookup", &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
            Err(e) => reply.error(fail("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mtime = mtime.map(|t| match t {
            TimeOrNow::SpecificTime(t) => secs(t),
            TimeOrNow::Now => secs(SystemTime::now()),
        });
        match self.fs.setattr(ino.0, size, mode, mtime) {
            Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
            Err(e) => reply.error(fail("setattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(fail("readlink", &e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(fail("mknod", &self.fs.modify(parent.0).err().unwrap_or(FsError::ReadOnly)));
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.fs.mkdir(parent.0, name.as_bytes(), mode & !umask) {
            Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0)),
            Err(e) => reply.error(fail("mkdir", &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.remove(parent.0, name.as_bytes(), false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("unlink", &e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.remove(parent.0, name.as_bytes(), true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rmdir", &e)),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link: &OsStr, target: &Path, reply: ReplyEntry) {
        match self.fs.symlink(parent.0, link.as_bytes(), target) {
            Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0)),
            Err(e) => reply.error(fail("symlink", &e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.fs.rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rename", &e)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(fail("link", &self.fs.modify(ino.0).err().unwrap_or(FsError::ReadOnly)));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        match self.fs.open_file(ino.0, write, flags.0 & libc::O_TRUNC != 0) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
            Err(e) => reply.error(fail("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(ino.0, fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(fail("read", &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(ino.0, fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(fail("write", &e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("release", &e)),
        }
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Answering ENOSYS would save a round trip per directory (the kernel then stops sending OPENDIR), but it
        // breaks AutoUnmount: after a kill -9, fusermount3 only unmounts if opening the mount point fails with
        // ENOTCONN, and with no OPENDIR the open succeeds without asking anyone. So directories are really opened.
        match self.fs.opendir(ino.0) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
            Err(e) => reply.error(fail("opendir", &e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.fs.readdir(ino.0, offset) {
            Ok(entries) => {
                for e in entries {
                    if reply.add(INodeNo(e.ino), e.offset, file_type(e.kind), OsStr::from_bytes(&e.name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(fail("readdir", &e)),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let added = self.fs.readdirplus_until(ino.0, offset, |d, e| {
            let name = OsStr::from_bytes(&d.name);
            reply.add(INodeNo(d.ino), d.offset, name, &e.ttl, &file_attr(&e.attr), Generation(0))
        });
        match added {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdirplus", &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(fail("setxattr", &self.fs.modify(ino.0).err().unwrap_or(FsError::ReadOnly)));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(ino.0, name.as_bytes(), size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(fail("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(ino.0, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(fail("listxattr", &e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fail("removexattr", &self.fs.modify(ino.0).err().unwrap_or(FsError::ReadOnly)));
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.fs.access(ino.0, mask.contains(AccessFlags::W_OK)) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(fail("access", &e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.fs.create(parent.0, name.as_bytes(), mode & !umask) {
            Ok((e, o)) => {
                reply.created(&e.ttl, &file_attr(&e.attr), Generation(0), FileHandle(o.fh), FopenFlags::empty())
            }
            Err(e) => reply.error(fail("create", &e)),
        }
    }
}

/// How to mount.
#[derive(Debug, Clone, Default)]
pub struct MountConfig {
    /// Let other users see the mount (`allow_other`; permissions are then checked by the kernel).
    pub allow_other: bool,
    /// FUSE worker threads.
    pub threads: usize,
}

/// Mounts `fs` at `mountpoint` and serves it until `stop` is set (SIGINT/SIGTERM) or the mount goes away
/// (`bakthat umount`, `fusermount3 -u`); then unmounts. AutoUnmount makes a killed process leave no stale mount.
pub fn serve(fs: Fs, mountpoint: &Path, cfg: &MountConfig, stop: &AtomicBool, ready: impl FnOnce()) -> io::Result<()> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("bakthat".into()),
        MountOption::Subtype("bakthat".into()),
        MountOption::AutoUnmount,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    if cfg.allow_other {
        config.mount_options.push(MountOption::DefaultPermissions);
        config.acl = SessionACL::All;
    } else {
        config.acl = SessionACL::RootAndOwner;
    }
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = true;
    fs.start_poller();
    let watcher = fs.watcher();
    let session = fuser::spawn_mount(FuseFs::new(fs), mountpoint, &config)?;
    let notifier = session.notifier();
    std::thread::Builder::new().name("bakthat-notify".into()).spawn(move || notify(&watcher, &notifier))?;
    ready();
    while !stop.load(Ordering::SeqCst) && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if session.guard.is_finished() {
        return session.join();
    }
    // Dropping fusermount3's auto-unmount socket does not always unmount; detach the mount ourselves, so the
    // workers see the device close and the session ends.
    unmount(mountpoint)?;
    session.umount_and_join()
}

/// Passes the filesystem's invalidations on to the kernel until the filesystem ends. Its own thread: an entry
/// invalidation waits for the directory's lock, which a request being answered may hold.
fn notify(watcher: &Watcher, notifier: &Notifier) {
    while let Some(batch) = watcher.next(Duration::from_secs(1)) {
        for inv in batch {
            let sent = match &inv {
                Invalidation::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
                Invalidation::Entry { parent, name } => notifier.inval_entry(INodeNo(*parent), OsStr::from_bytes(name)),
            };
            if let Err(e) = sent {
                tracing::debug!("telling the kernel {inv:?}: {e}");
            }
        }
    }
}

/// Detaches a FUSE mount: umount2(MNT_DETACH) as root, else `fusermount3 -u -z`.
pub fn unmount(mountpoint: &Path) -> io::Result<()> {
    let mp = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let c = std::ffi::CString::new(mp.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let status = std::process::Command::new("fusermount3").args(["-u", "-z", "--"]).arg(&mp).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("fusermount3 -u {} failed ({status})", mp.display())))
    }
}
