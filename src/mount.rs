//! The mount's lifecycle around [`crate::fuse`]: checking the mount point, finding bakthat's mounts in
//! `/proc/mounts`, starting a detached mount process and waiting until its mount is up, unmounting.
//!
//! Not here: the filesystem's logic ([`crate::fs`]), the FUSE adapter ([`crate::fuse`]), flags, prompts and messages
//! on the terminal (`cli/mount.rs`).

use std::ffi::OsString;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why a mount could not start or stop. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{} does not exist; create it (mkdir -p {})", .0.display(), .0.display())]
    Missing(PathBuf),
    #[error("{} is a dead mount (its process is gone); clear it with `fusermount3 -u {}`", .0.display(), .0.display())]
    Dead(PathBuf),
    #[error("{} is not a directory; mount on an empty directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is already a mount point; `bakthat umount {}` first", .0.display(), .0.display())]
    AlreadyMounted(PathBuf),
    #[error("{} is not empty (mounting would hide its files); mount on an empty directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("{} is not a bakthat mount", .0.display())]
    NotMounted(PathBuf),
    #[error(
        "could not unmount {}; close the programs using it (see `fuser -m {}`) and try again",
        .0.display(),
        .0.display()
    )]
    Busy(PathBuf),
    #[error("the mount process exited ({status}) before mounting: {last_line} (log: {})", .log.display())]
    ChildExited { status: ExitStatus, last_line: String, log: PathBuf },
    #[error("the mount did not come up within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> MountError {
    let context = context.into();
    move |source| MountError::Io { context, source }
}

/// The mount point must be an existing, empty directory that is not mounted: mounting over files would hide them
/// while mounted.
pub fn check_mountpoint(mp: &Path) -> Result<(), MountError> {
    let owned = || mp.to_path_buf();
    let meta = match std::fs::metadata(mp) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MountError::Missing(owned())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Err(MountError::Dead(owned())),
        Err(e) => return Err(io_err(format!("checking the mount point {}", mp.display()))(e)),
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(owned()));
    }
    let canonical = std::fs::canonicalize(mp).map_err(io_err(format!("checking the mount point {}", mp.display())))?;
    if is_mounted(&canonical) {
        return Err(MountError::AlreadyMounted(owned()));
    }
    let mut entries = std::fs::read_dir(mp).map_err(io_err(format!("reading the mount point {}", mp.display())))?;
    if entries.next().is_some() {
        return Err(MountError::NotEmpty(owned()));
    }
    Ok(())
}

/// Whether `/proc/mounts` lists a FUSE mount at `mp` (an absolute, canonical path).
pub fn is_mounted(mp: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts").map(|m| mounts_list(&m, mp)).unwrap_or(false)
}

/// Whether a `/proc/mounts` text has a FUSE mount at `mp` (the file escapes a space in a path as `\040`).
fn mounts_list(proc_mounts: &str, mp: &Path) -> bool {
    let want = mp.to_string_lossy().replace(' ', "\\040");
    proc_mounts.lines().any(|l| l.split(' ').nth(1) == Some(want.as_str()) && l.contains("fuse"))
}

/// Unmounts a bakthat mount.
pub fn unmount(mp: &Path) -> Result<(), MountError> {
    if !is_mounted(&std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf())) {
        return Err(MountError::NotMounted(mp.to_path_buf()));
    }
    crate::fuse::unmount(mp).map_err(|_| MountError::Busy(mp.to_path_buf()))
}

/// A detached mount process whose mount is up.
#[derive(Debug)]
pub struct Detached {
    /// The canonical mount point.
    pub mountpoint: PathBuf,
    pub pid: u32,
    /// Where the process logs (`<cache-dir>/mount.log`).
    pub log: PathBuf,
}

/// How to start a detached mount process.
pub struct DetachedCommand<'a> {
    /// The program and its arguments: the same mount command, without whatever asked to detach.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Written to the process's standard input, then closed (a password handed over through a pipe, never the
    /// arguments or environment); `None`: standard input is /dev/null.
    pub stdin: Option<&'a [u8]>,
    /// The log goes to `<cache_dir>/mount.log`; the directory is created (mode 0700) if missing.
    pub cache_dir: &'a Path,
    pub mountpoint: &'a Path,
    /// How long to wait for the mount to show up in `/proc/mounts`.
    pub timeout: Duration,
}

/// Starts a mount process in a new session (away from the terminal) and returns once its mount is up, or with the
/// last line of its log if it exits first.
pub fn start_detached(c: &DetachedCommand) -> Result<Detached, MountError> {
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::process::CommandExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(c.cache_dir)
        .map_err(io_err(format!("creating {}", c.cache_dir.display())))?;
    let log_path = c.cache_dir.join("mount.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(format!("opening the log {}", log_path.display())))?;
    let mut cmd = std::process::Command::new(&c.program);
    cmd.args(&c.args).stdout(Stdio::null()).stderr(log);
    cmd.stdin(if c.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    // SAFETY: setsid is async-signal-safe; it detaches the child from the terminal's session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io_err(format!("starting {}", c.program.display())))?;
    if let (Some(bytes), Some(mut stdin)) = (c.stdin, child.stdin.take()) {
        let handed = stdin.write_all(bytes).and_then(|_| stdin.write_all(b"\n"));
        handed.map_err(io_err("handing the password to the mount process"))?;
    }
    let mp = std::fs::canonicalize(c.mountpoint).map_err(io_err(format!("finding {}", c.mountpoint.display())))?;
    wait_mounted(&mut child, &mp, &log_path, c.timeout)?;
    Ok(Detached { mountpoint: mp, pid: child.id(), log: log_path })
}

fn wait_mounted(child: &mut Child, mp: &Path, log: &Path, timeout: Duration) -> Result<(), MountError> {
    let deadline = Instant::now() + timeout;
    loop {
        if is_mounted(mp) {
            return Ok(());
        }
        if let Some(status) = child.try_wait().map_err(io_err("waiting for the mount process"))? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let last_line = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            return Err(MountError::ChildExited { status, last_line, log: log.to_path_buf() });
        }
        if Instant::now() > deadline {
            return Err(MountError::Timeout(timeout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_mounts_lines_are_matched_by_their_escaped_mount_point() {
        let text = "sysfs /sys sysfs rw 0 0\n\
                    bakthat /home/a/my\\040backups fuse.bakthat rw,nosuid 0 0\n\
                    /dev/sda1 /data ext4 rw 0 0\n";
        assert!(mounts_list(text, Path::new("/home/a/my backups")));
        assert!(!mounts_list(text, Path::new("/data")), "only FUSE mounts count");
        assert!(!mounts_list(text, Path::new("/home/a/my")));
    }

    #[test]
    fn mount_point_checks_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = check_mountpoint(&missing).unwrap_err().to_string();
        assert!(e.ends_with(&format!("does not exist; create it (mkdir -p {})", missing.display())), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(check_mountpoint(&file), Err(MountError::NotADirectory(_))));
        assert!(matches!(check_mountpoint(dir.path()), Err(MountError::NotEmpty(_))));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check_mountpoint(&empty).unwrap();
    }
}
