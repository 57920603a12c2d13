//! `bakthat mount` through the real kernel (FUSE, Debian's fuse3), driven by real tools: `ls -lR`, `find`, `stat`,
//! `cat`, `cp -r` + `diff -r` (the drag-and-drop restore), `rsync -a`, `gio copy`, 32 concurrent readers, the cache
//! cap under pressure, and `kill -9`. Each test mounts the built binary in its own temp dir, waits for the mount in
//! /proc/mounts (bounded), and always unmounts in a Drop guard.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bakthat::storage::testing::bytes;

/// An isolated home: config, inventory, store and cache in a temp dir.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let e = Env { dir: tempfile::tempdir().unwrap() };
        fs::write(
            e.path().join("bakthat.yml"),
            format!("default:\n  local_path: {}\n", e.path().join("store").display()),
        )
        .unwrap();
        e
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self) -> Command {
        self.command(env!("CARGO_BIN_EXE_bakthat"))
    }

    /// `program` with this home's environment (and nothing else from the caller's).
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("XDG_CACHE_HOME", self.path().join("xdg-cache"))
            .env("BAKTHAT_CONFIG", self.path().join("bakthat.yml"))
            .env("BAKTHAT_DB", self.path().join("inventory.sqlite"))
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd().args(args).output().unwrap();
        assert!(o.status.success(), "bakthat {args:?} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Backs up `src`; returns the backup directory's timestamp name (`2026-11-22T040805Z`).
    fn backup(&self, src: &Path, extra: &[&str]) -> String {
        let mut args = vec!["backup", src.to_str().unwrap(), "--prompt", "no"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        let stored = out.split_whitespace().nth(1).unwrap().to_string();
        let date = stored.split('.').find(|p| p.len() == 14 && p.bytes().all(|b| b.is_ascii_digit())).unwrap();
        format!("{}-{}-{}T{}Z", &date[..4], &date[4..6], &date[6..8], &date[8..14])
    }

    fn mount(&self, extra: &[&str]) -> Mount {
        self.mount_at(&self.path().join(format!("mnt{}", fastrand())), extra)
    }

    fn mount_at(&self, mp: &Path, extra: &[&str]) -> Mount {
        let mp = mp.to_path_buf();
        fs::create_dir_all(&mp).unwrap();
        let cache = self.path().join("cache");
        let mut args = vec!["mount", mp.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()];
        args.extend_from_slice(extra);
        let child = self.cmd().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut m = Mount { mp, cache, child: Some(child) };
        m.wait_mounted();
        m
    }
}

fn fastrand() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Whether /proc/mounts lists a FUSE mount at `mp`.
fn mounted(mp: &Path) -> bool {
    let want = mp.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(want.as_str()) && l.contains("fuse"))
}

/// A running `bakthat mount`; unmounts on drop, whatever happened.
struct Mount {
    mp: PathBuf,
    cache: PathBuf,
    child: Option<Child>,
}

impl Mount {
    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !mounted(&self.mp) {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let out = self.child.take().unwrap().wait_with_output().unwrap();
                panic!("bakthat mount exited ({st}) before mounting: {}", text(&out));
            }
            assert!(Instant::now() < deadline, "the mount did not appear in /proc/mounts within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mp.join(rel.trim_start_matches('/'))
    }

    /// SIGTERM, then wait for a clean exit (bounded).
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "bakthat mount did not exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if mounted(&self.mp) {
            let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&self.mp).status();
        }
        if mounted(&self.mp) {
            let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A source tree with files of several sizes, a symlink, an empty directory and odd names.
fn tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("small.txt"), b"hello world\n").unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("sub/big.bin"), bytes(1, 5_000_000)).unwrap();
    fs::write(root.join("sub/deeper/with space & ünïcode.txt"), b"odd name\n").unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("sub/link")).unwrap();
}

fn dir_size(d: &Path) -> u64 {
    fs::read_dir(d).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

#[test]
fn ls_find_stat_cat_and_drag_and_drop_restore() {
    let e = Env::new();
    let src = e.path().join("docs");
    tree(&src);
    let ts = e.backup(&src, &["-t", "daily"]);
    let mut m = e.mount(&[]);
    let root = run(Command::new("ls").arg(&m.mp));
    assert_eq!(root.split_whitespace().collect::<Vec<_>>(), ["by-date", "by-name", "by-tag", "incoming", "versions"]);
    let lr = run(Command::new("ls").arg("-lR").arg(&m.mp));
    assert!(lr.contains("big.bin") && lr.contains("5000000") && lr.contains("latest ->"), "{lr}");
    let found = run(Command::new("find").arg(m.p("by-tag/daily")).arg("-type").arg("f"));
    assert!(found.contains("docs/sub/big.bin") && found.contains("ünïcode"), "{found}");
    let base = format!("by-name/docs/{ts}/docs");
    let st = run(Command::new("stat").args(["-c", "%s %a %F"]).arg(m.p(&format!("{base}/sub/big.bin"))));
    assert_eq!(st.trim(), "5000000 644 regular file");
    // The mount's own meter: ls -lR, find and stat reached no store.
    assert_eq!(xattr(&m.mp, "user.bakthat.store_requests").as_deref(), Some("0"));
    assert_eq!(run(Command::new("cat").arg(m.p(&format!("{base}/small.txt")))), "hello world\n");
    assert_ne!(xattr(&m.mp, "user.bakthat.store_requests").as_deref(), Some("0"), "reads are counted");
    assert_eq!(fs::read_link(m.p("by-name/docs/latest")).unwrap(), Path::new(&ts));
    // The drag-and-drop restore: copy the backup directory out of the mount, compare with the source.
    let out = e.path().join("restored");
    run(Command::new("cp").arg("-r").arg(m.p(&format!("by-name/docs/{ts}"))).arg(&out));
    run(Command::new("diff").arg("-r").arg(&src).arg(out.join("docs")));
    // cp -a reads xattrs and ACLs too ("not supported" for ACLs must not make it fail).
    let out_a = e.path().join("archived");
    let cp = Command::new("cp").arg("-a").arg(m.p(&format!("by-name/docs/{ts}"))).arg(&out_a).output().unwrap();
    assert!(cp.status.success() && cp.stderr.is_empty(), "{}", text(&cp));
    run(Command::new("diff").arg("-r").arg(&src).arg(out_a.join("docs")));
    assert_eq!(xattr(&out_a.join("docs/small.txt"), "user.bakthat.state"), None, "restored files carry no state");
    // rsync -a keeps modes and times.
    let out2 = e.path().join("rsynced");
    run(Command::new("rsync").arg("-a").arg(m.p(&format!("{base}/"))).arg(&out2));
    run(Command::new("diff").arg("-r").arg(&src).arg(&out2));
    let a = fs::metadata(src.join("sub/big.bin")).unwrap();
    let b = fs::metadata(out2.join("sub/big.bin")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(a.mtime(), b.mtime(), "mtimes are the archive's (whole seconds)");
    // Writes anywhere but /incoming are refused as a read-only filesystem.
    let err = fs::write(m.p(&format!("{base}/new.txt")), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = fs::remove_file(m.p(&format!("{base}/small.txt"))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    // The status file and xattrs say where the backup is.
    let status = fs::read_to_string(m.p(&format!("by-name/docs/{ts}/.bakthat-status"))).unwrap();
    assert!(status.contains("state: ready") && status.contains("backend: local"), "{status}");
    assert_eq!(xattr(&m.p(&format!("{base}/small.txt")), "user.bakthat.state").as_deref(), Some("ready"));
    assert!(m.stop().success());
    assert!(!mounted(&m.mp), "SIGTERM unmounts");
}

fn xattr(p: &Path, name: &str) -> Option<String> {
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

#[test]
fn gio_copy_out_of_the_mount() {
    let e = Env::new();
    let src = e.path().join("g");
    tree(&src);
    let ts = e.backup(&src, &[]);
    let m = e.mount(&[]);
    let out = e.path().join("gio-big.bin");
    run(Command::new("gio").arg("copy").arg(m.p(&format!("by-name/g/{ts}/g/sub/big.bin"))).arg(&out));
    assert!(fs::read(&out).unwrap() == bytes(1, 5_000_000));
}

#[test]
fn thirty_two_concurrent_readers_get_the_same_bytes() {
    let e = Env::new();
    let src = e.path().join("c");
    tree(&src);
    let ts = e.backup(&src, &[]);
    let m = e.mount(&[]);
    let want = bytes(1, 5_000_000);
    let path = m.p(&format!("by-name/c/{ts}/c/sub/big.bin"));
    std::thread::scope(|s| {
        for i in 0..32 {
            let (path, want) = (&path, &want);
            s.spawn(move || {
                let got = if i % 2 == 0 {
                    fs::read(path).unwrap()
                } else {
                    Command::new("cat").arg(path).output().unwrap().stdout
                };
                assert!(got == *want, "reader {i} got different bytes");
            });
        }
    });
}

#[test]
fn the_cache_cap_is_never_exceeded_under_pressure() {
    let e = Env::new();
    let mut tss = Vec::new();
    for i in 0..3 {
        let src = e.path().join(format!("p{i}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("data.bin"), bytes(10 + i, 4_000_000)).unwrap();
        tss.push(e.backup(&src, &[]));
    }
    let cap = 2u64 << 20;
    let m = e.mount(&["--cache-size", "2M"]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let max_seen = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                max_seen.fetch_max(dir_size(&m.cache), std::sync::atomic::Ordering::SeqCst);
                std::thread::yield_now();
            }
        });
        for (i, ts) in tss.iter().enumerate() {
            let p = m.p(&format!("by-name/p{i}/{ts}/p{i}/data.bin"));
            assert!(fs::read(&p).unwrap() == bytes(10 + i as u64, 4_000_000));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let seen = max_seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!(seen > 0 && seen <= cap, "cache held {seen} bytes, cap {cap}");
    assert!(dir_size(&m.cache) <= cap);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&m.cache).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn kill_9_leaves_no_stale_mount() {
    let e = Env::new();
    let src = e.path().join("k");
    tree(&src);
    e.backup(&src, &[]);
    let mut m = e.mount(&[]);
    // A mount that was used: its root was opened and listed (file managers and indexers do this at once).
    // fusermount3 decides to unmount by opening the mount point after the kill; that must fail (ENOTCONN), which
    // it did not when OPENDIR was answered with ENOSYS.
    assert_eq!(fs::read_dir(&m.mp).unwrap().count(), 5);
    let child = m.child.as_mut().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // fusermount3's auto_unmount helper notices the closed session and detaches; allow for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mounted(&m.mp) {
        assert!(Instant::now() < deadline, "the mount is still there 30 s after kill -9");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fs::read_dir(&m.mp).unwrap().next().is_none(), "the mount point is usable and empty again");
}

#[test]
fn backups_made_while_mounted_appear_and_encrypted_ones_need_the_password() {
    let e = Env::new();
    let src = e.path().join("first");
    tree(&src);
    e.backup(&src, &[]);
    let m = e.mount(&[]);
    assert!(!m.p("by-name/second").exists());
    let src2 = e.path().join("second");
    fs::create_dir_all(&src2).unwrap();
    fs::write(src2.join("x"), b"x").unwrap();
    e.backup(&src2, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.p("by-name/second/latest/second/x").exists() {
        assert!(Instant::now() < deadline, "a new backup did not appear within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(m);
    // Encrypted: a wrong password fails the mount itself; the right one reads.
    let sec = e.path().join("sec");
    fs::create_dir_all(&sec).unwrap();
    fs::write(sec.join("s.txt"), b"secret\n").unwrap();
    let o = e.cmd().env("BAKTHAT_PASSWORD", "pw").args(["backup", sec.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let pwfile = e.path().join("pw.txt");
    fs::write(&pwfile, "wrong\n").unwrap();
    let mp = e.path().join("mnt-wrong");
    fs::create_dir_all(&mp).unwrap();
    let o =
        e.cmd().args(["mount", mp.to_str().unwrap(), "--password-file", pwfile.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("wrong password"), "{}", text(&o));
    assert!(!mounted(&mp));
    fs::write(&pwfile, "pw\n").unwrap();
    let m = e.mount(&["--password-file", pwfile.to_str().unwrap()]);
    assert_eq!(fs::read(m.p("by-name/sec/latest/sec/s.txt")).unwrap(), b"secret\n");
}

/// Waits (bounded) until `done` holds, re-checking as a user would by listing or looking up again.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn listed(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

// Issue 16: the kernel keeps listings and names of the archive tree (FOPEN_CACHE_DIR, day-long timeouts); the
// mount tells it when the inventory changes (FUSE notify). Without the notification the deleted backup stays
// visible through the kernel's cached names for a day, and this test fails.
#[test]
fn cached_listings_and_names_follow_backups_made_and_deleted_while_mounted() {
    let e = Env::new();
    let first = e.path().join("first");
    tree(&first);
    let ts = e.backup(&first, &[]);
    let m = e.mount(&[]);
    assert_eq!(listed(&m.p("by-name")), ["first"]);
    assert_eq!(listed(&m.p("by-name/first")), [ts.as_str(), "latest"]);
    assert!(m.p(&format!("by-name/first/{ts}/first")).is_dir());
    // A backup made by another process appears in the cached listing.
    let second = e.path().join("second");
    fs::create_dir_all(&second).unwrap();
    fs::write(second.join("x"), b"x").unwrap();
    e.backup(&second, &[]);
    eventually("the new backup is listed", || listed(&m.p("by-name")) == ["first", "second"]);
    // A deleted one disappears, names the kernel already looked up included.
    e.ok(&["delete", "first"]);
    eventually("the deleted backup is gone", || {
        !m.p(&format!("by-name/first/{ts}/first")).exists() && !m.p("by-name/first").exists()
    });
    assert_eq!(listed(&m.p("by-name")), ["second"]);
    // And a backup landing through /incoming shows in the cached listing without a remount.
    fs::write(e.path().join("notes.txt"), b"notes").unwrap();
    run(Command::new("cp").arg(e.path().join("notes.txt")).arg(m.p("incoming/")));
    eventually("the /incoming backup is listed", || listed(&m.p("by-name")) == ["notes.txt", "second"]);
}

// Issue 11 item 9: without a password the mount refuses to start while encrypted backups exist (see tests/it/cli.rs);
// --without-encrypted mounts anyway, and the encrypted backups say that they need the password.
#[test]
fn without_encrypted_mounts_and_the_encrypted_backups_say_password_needed() {
    let e = Env::new();
    let plain = e.path().join("plain");
    fs::create_dir_all(&plain).unwrap();
    fs::write(plain.join("p.txt"), b"plain\n").unwrap();
    e.backup(&plain, &[]);
    let sec = e.path().join("sec");
    fs::create_dir_all(&sec).unwrap();
    fs::write(sec.join("s.txt"), b"secret\n").unwrap();
    let o = e.cmd().env("BAKTHAT_PASSWORD", "pw").args(["backup", sec.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let m = e.mount(&["--without-encrypted"]);
    assert_eq!(fs::read(m.p("by-name/plain/latest/plain/p.txt")).unwrap(), b"plain\n");
    let dir = fs::canonicalize(m.p("by-name/sec/latest")).unwrap();
    assert_eq!(xattr(&dir, "user.bakthat.state").as_deref(), Some("password-needed"));
}

#[test]
fn daemon_mode_prompts_on_the_terminal_hands_the_password_over_and_logs_to_the_cache_dir() {
    let e = Env::new();
    let sec = e.path().join("sec");
    fs::create_dir_all(&sec).unwrap();
    fs::write(sec.join("s.txt"), b"secret\n").unwrap();
    let o = e.cmd().env("BAKTHAT_PASSWORD", "pw").args(["backup", sec.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mp = e.path().join("mnt-daemon");
    fs::create_dir_all(&mp).unwrap();
    let cache = e.path().join("cache");
    // `script` gives bakthat a real terminal, so it prompts; the password is typed on it.
    let line =
        format!("{} mount {} --cache-dir {} --daemon", env!("CARGO_BIN_EXE_bakthat"), mp.display(), cache.display());
    let mut run = e
        .command("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs a command on a pseudo-terminal");
    std::io::Write::write_all(run.stdin.as_mut().unwrap(), b"pw\n").unwrap();
    let out = run.wait_with_output().unwrap();
    let shown = text(&out);
    assert!(out.status.success() && shown.contains("Password:") && shown.contains("mounted on"), "{shown}");
    assert!(mounted(&mp), "{shown}");
    let m = Mount { mp: mp.clone(), cache: cache.clone(), child: None };
    assert_eq!(fs::read(m.p("by-name/sec/latest/sec/s.txt")).unwrap(), b"secret\n", "the daemon got the password");
    // The daemon logs to the cache directory (not to the terminal it left).
    assert!(cache.join("mount.log").exists());
    e.ok(&["umount", mp.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while mounted(&mp) {
        assert!(Instant::now() < deadline, "bakthat umount did not unmount the daemon within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_mount_points_are_refused_with_one_line_that_says_what_to_do() {
    let e = Env::new();
    let src = e.path().join("b");
    tree(&src);
    e.backup(&src, &[]);
    let full = e.path().join("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("keep.txt"), b"mine").unwrap();
    let file = e.path().join("file");
    fs::write(&file, b"x").unwrap();
    let m = e.mount(&[]);
    let cases = [
        (e.path().join("missing"), "does not exist; create it"),
        (file, "is not a directory"),
        (full.clone(), "is not empty"),
        (m.mp.clone(), "is already a mount point"),
    ];
    for (mp, says) in cases {
        let o = e.cmd().args(["mount", mp.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{mp:?}: {err}");
        assert!(err.contains(says) && err.trim().lines().count() == 1, "{mp:?}: {err}");
    }
    assert!(!mounted(&full));
    assert_eq!(fs::read(full.join("keep.txt")).unwrap(), b"mine", "the directory's files stay visible");
}

#[test]
fn cp_into_incoming_gives_a_restorable_backup() {
    let e = Env::new();
    let src = e.path().join("seed");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    e.backup(&src, &[]);
    let m = e.mount(&[]);
    // A file: backed up on its last close.
    let file = e.path().join("notes.txt");
    fs::write(&file, bytes(3, 300_000)).unwrap();
    run(Command::new("cp").arg(&file).arg(m.p("incoming/")));
    // A directory with tags, via the @tag directory.
    let dir = e.path().join("album");
    tree(&dir);
    fs::create_dir(m.p("incoming/@photos,2026")).unwrap();
    run(Command::new("cp").arg("-r").arg(&dir).arg(m.p("incoming/@photos,2026/")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(m.p("by-name/notes.txt/latest/notes.txt").exists() && m.p("by-tag/photos/album").exists()) {
        assert!(Instant::now() < deadline, "the /incoming backups did not appear within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!m.p("incoming/notes.txt").exists(), "the file left /incoming");
    assert!(fs::read(m.p("by-name/notes.txt/latest/notes.txt")).unwrap() == bytes(3, 300_000));
    // Restorable with the CLI, like any backup.
    let out = e.path().join("restored");
    e.ok(&["restore", "album", "--to", out.to_str().unwrap()]);
    run(Command::new("diff").arg("-r").arg(&dir).arg(out.join("album")));
    let shown = e.ok(&["show", "-t", "photos 2026"]);
    assert!(shown.contains("album"), "{shown}");
    let err = fs::write(m.p("by-name/new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    // Issue 12: file managers drag from a backup into /incoming by rename(2): EXDEV makes them copy instead.
    let err = fs::rename(m.p("by-name/notes.txt/latest/notes.txt"), m.p("incoming/moved.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");
    // access(W_OK) is honest even for root (gio's can-write), and `latest` is dated like its backup, not 1970.
    let w_ok = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    };
    assert!(!w_ok(&m.p("by-name/notes.txt/latest/notes.txt")) && !w_ok(&m.p("by-name")));
    assert!(w_ok(&m.p("incoming")));
    let latest = fs::symlink_metadata(m.p("by-name/notes.txt/latest")).unwrap();
    let target = fs::metadata(m.p("by-name/notes.txt/latest")).unwrap();
    assert_eq!(latest.modified().unwrap(), target.modified().unwrap());
}

/// moto's endpoint (scripts/test.sh starts it); a missing server is a failure, never a skip.
fn moto_endpoint() -> String {
    match std::env::var("BAKTHAT_TEST_S3_ENDPOINT") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("BAKTHAT_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh (it starts moto)"),
    }
}

#[test]
fn glacier_gives_eagain_until_the_retrieval_completes_then_reads() {
    let e = Env::new();
    let vault = format!("mount-{}", std::process::id() as u64 * 1000 + fastrand());
    fs::write(
        e.path().join("bakthat.yml"),
        format!(
            "default:\n  access_key: test\n  secret_key: test\n  region_name: us-east-1\n  glacier_vault: {vault}\n  \
             endpoint_url: {}\n  local_path: {}\n",
            moto_endpoint(),
            e.path().join("store").display()
        ),
    )
    .unwrap();
    let src = e.path().join("cold");
    tree(&src);
    let ts = e.backup(&src, &["-d", "glacier"]);
    let m = e.mount(&["--poll-interval", "0.3"]);
    let dir = m.p(&format!("by-name/cold/{ts}"));
    // Listing and xattrs never start a retrieval.
    run(Command::new("ls").arg("-lR").arg(&dir));
    assert_eq!(xattr(&dir, "user.bakthat.state").as_deref(), Some("archived"));
    assert_eq!(xattr(&dir, "user.bakthat.storage_class").as_deref(), Some("GLACIER"));
    let file = dir.join("cold/small.txt");
    let err = fs::read(&file).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "{err}");
    assert_eq!(xattr(&dir, "user.bakthat.state").as_deref(), Some("retrieving"));
    assert!(xattr(&dir, "user.bakthat.job_id").is_some());
    let status = fs::read_to_string(dir.join(".bakthat-status")).unwrap();
    assert!(status.contains("state: retrieving") && status.contains("EAGAIN"), "{status}");
    // The job is in the inventory, shared with `bakthat restore`.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match fs::read(&file) {
            Ok(d) => {
                assert_eq!(d, b"hello world\n");
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                assert!(Instant::now() < deadline, "still EAGAIN after 60 s");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(xattr(&dir, "user.bakthat.state").as_deref(), Some("ready"));
    assert!(fs::read(dir.join("cold/sub/big.bin")).unwrap() == bytes(1, 5_000_000));
}

// Regression (issue 11, item 7): `backup ~` with the mount at ~/backups read every backup through the mount (EIO
// on each cold or damaged one), and a file whose read failed part way was stored zero-padded and restored as if
// the zeros were real. The mount is now stored as an empty directory, and a file that fails mid-read (here: read
// through the mount from an archive damaged in its middle) is marked, and named when it is restored.
#[test]
fn backup_never_reads_through_its_own_mount_and_marks_files_that_fail_mid_read() {
    let e = Env::new();
    let docs = e.path().join("docs");
    tree(&docs);
    let ts = e.backup(&docs, &[]);
    let home = e.path().join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("notes.txt"), b"mine\n").unwrap();
    let m = e.mount_at(&home.join("backups"), &[]);
    let big = m.p(&format!("by-name/docs/{ts}/docs/sub/big.bin"));
    assert_eq!(fs::metadata(&big).unwrap().len(), 5_000_000);

    let o = e.cmd().args(["backup", home.to_str().unwrap(), "--prompt", "no"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not descended into: a bakthat mount"), "{}", text(&o));
    let out = e.path().join("restored-home");
    e.ok(&["restore", "home", "--to", out.to_str().unwrap()]);
    assert_eq!(fs::read(out.join("home/notes.txt")).unwrap(), b"mine\n");
    assert_eq!(fs::read_dir(out.join("home/backups")).unwrap().count(), 0, "the mount is stored empty");

    // Damage the middle of the docs archive: reading big.bin through the mount fails part way (EIO).
    let stored = fs::read_dir(e.path().join("store"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("docs.") && n.ends_with(".tgz")
        })
        .unwrap();
    let mut data = fs::read(&stored).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&stored, &data).unwrap();
    let o = e.cmd().args(["backup", big.to_str().unwrap(), "--prompt", "no"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "a file that fails mid-read makes the backup exit 1: {}", text(&o));
    assert!(text(&o).contains("read failed part way"), "{}", text(&o));
    let out = e.path().join("restored-big");
    let o = e.cmd().args(["restore", "big.bin", "--to", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "restore of an incomplete file exits 1 (README exit codes): {}", text(&o));
    assert!(text(&o).contains("big.bin: could not be read completely when it was backed up"), "{}", text(&o));
}

/// Issue 12: the README's quick tour failed on a fresh machine. This runs its block line by line, as written, in a
/// fresh HOME with only the paths replaced (`~` is the home, `/etc` a small tree, `/tmp` a scratch directory, the
/// example stored name the real one, `...` a password), and needs every line to succeed.
#[test]
fn readme_quick_tour_runs_as_written() {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let tour = readme.split("## A quick tour").nth(1).expect("a quick tour section");
    let block = tour.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a ```sh block in the tour");
    let lines: Vec<&str> =
        block.lines().map(|l| l.split("  #").next().unwrap().trim()).filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 10 && lines.iter().any(|l| l.contains("bakthat mount")), "{lines:?}");

    let e = Env::new();
    let home = e.path().join("home");
    let scratch = e.path().join("scratch");
    for d in ["projects/site", "etc/ssh", "Photos"] {
        fs::create_dir_all(home.join(d)).unwrap();
    }
    fs::create_dir_all(&scratch).unwrap();
    fs::write(home.join("projects/site/index.html"), "<html>site</html>\n").unwrap();
    fs::write(home.join("etc/hostname"), "tour\n").unwrap();
    fs::write(home.join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
    for i in 0..5 {
        fs::write(home.join(format!("Photos/img{i}.jpg")), bytes(i, 10_000)).unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_bakthat")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut stored_site: Option<String> = None;
    let mountpoint = home.join("backups");
    for line in &lines {
        let mut cmd = line
            .replace("BAKTHAT_PASSWORD=...", "BAKTHAT_PASSWORD=tour-password")
            .replace(" /tmp/", &format!(" {}/", scratch.display()))
            .replace(" /etc", &format!(" {}/etc", home.display()));
        if let Some(stored) = &stored_site {
            cmd = cmd.replace("site.20261122040805.tgz", stored.as_str());
        }
        let out = Command::new("bash")
            .args(["-c", &cmd])
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("TMPDIR", std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            let _ = Command::new("fusermount3").arg("-u").arg(&mountpoint).status();
            panic!("the quick tour's line `{line}` (run as `{cmd}`) failed:\n{stdout}{stderr}");
        }
        if line.starts_with("bakthat backup ~/projects/site") {
            stored_site = stdout.split_whitespace().nth(1).map(str::to_string);
        }
    }
    assert!(!mounted(&mountpoint), "the tour ends unmounted");
    assert_eq!(fs::read_to_string(scratch.join("index.html")).unwrap(), "<html>site</html>\n");
    assert_eq!(fs::read_to_string(scratch.join("r/site/index.html")).unwrap(), "<html>site</html>\n");
}

/// Issue 15: `/versions/<name>/<path>/` lists one file per version of a file across a chain, each reading its
/// bytes. Version names are read from the listing (two CLI backups may share a second), in backup order.
#[test]
fn versions_lists_every_version_of_a_file_and_reads_each() {
    let e = Env::new();
    let config = fs::read_to_string(e.path().join("bakthat.yml")).unwrap();
    fs::write(e.path().join("bakthat.yml"), format!("{config}  incremental: {{full_every: 7D}}\n")).unwrap();
    let src = e.path().join("notes");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("todo.txt"), "one\n").unwrap();
    fs::write(src.join("same.txt"), "unchanged\n").unwrap();
    e.backup(&src, &[]);
    // Each version has another size, so none can pass for the one before it whatever the clock says.
    fs::write(src.join("todo.txt"), "one\ntwo\n").unwrap();
    e.backup(&src, &[]);
    fs::write(src.join("todo.txt"), "one\ntwo\nthree\n").unwrap();
    e.backup(&src, &[]);
    let mut m = e.mount(&[]);
    let dir = m.p("versions/notes/notes/todo.txt");
    let versions = listed(&dir);
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert_eq!(listed(&m.p("versions/notes/notes/same.txt")).len(), 1);
    assert_eq!(xattr(&m.mp, "user.bakthat.store_requests").as_deref(), Some("0"), "listing reached no store");
    let read: Vec<String> = versions.iter().map(|v| fs::read_to_string(dir.join(v)).unwrap()).collect();
    assert_eq!(read, ["one\n", "one\ntwo\n", "one\ntwo\nthree\n"]);
    let err = fs::write(dir.join(&versions[0]), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(m.stop().success());
}
