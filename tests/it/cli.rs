//! The `bakthat` command end to end on the local store: every verb, and every bad input the issue lists.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// An isolated home: config, inventory and store live in a temp dir.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let e = Env { dir: tempfile::tempdir().unwrap() };
        fs::write(e.config(), format!("default:\n  local_path: {}\n", e.store().display())).unwrap();
        e
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn config(&self) -> PathBuf {
        self.path().join("bakthat.yml")
    }
    fn store(&self) -> PathBuf {
        self.path().join("store")
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bakthat"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("BAKTHAT_CONFIG", self.config())
            .env("BAKTHAT_DB", self.path().join("inventory.sqlite"))
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "bakthat {args:?} failed: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    }
    fn fails(&self, args: &[&str], code: i32, needle: &str) -> Output {
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(code), "bakthat {args:?}: {}{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains(needle), "bakthat {args:?}: stderr lacks {needle:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).trim().lines().filter(|l| l.contains("error")).count(),
            1,
            "one error line: {}",
            stderr(&o)
        );
        o
    }
    /// The store's backup objects (without the sync journal).
    fn store_files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.store())
            .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.retain(|n| !n.starts_with(bakthat::journal::JOURNAL_PREFIX));
        v.sort();
        v
    }
    fn show_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["show", "--json"])).unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stored_name(out: &str) -> String {
    out.split_whitespace().nth(1).unwrap().to_string()
}

fn empty_dir(p: &Path) -> bool {
    fs::read_dir(p).map(|mut r| r.next().is_none()).unwrap_or(true)
}

#[test]
fn backup_show_restore_round_trip() {
    let e = Env::new();
    let src = e.path().join("mydir");
    rich_tree(&src);
    let out = e.ok(&["backup", src.to_str().unwrap(), "-t", "daily db", "--prompt", "no"]);
    let stored = stored_name(&out);
    assert!(stored.starts_with("mydir.") && stored.ends_with(".tgz"), "{out}");
    assert_eq!(e.store_files(), vec![stored.clone(), format!("{stored}.index")]);
    let show = e.ok(&["show"]);
    assert!(show.contains(&stored) && show.contains("(daily db)") && show.contains("local"), "{show}");
    assert!(e.ok(&["show", "-t", "db daily"]).contains(&stored));
    assert!(e.ok(&["show", "-t", "dail"]).is_empty(), "tags match whole words");
    let rows = e.show_json();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["filename"], "mydir");
    assert_eq!(rows[0]["metadata"]["is_enc"], false);
    let to = e.path().join("out");
    e.ok(&["restore", "mydir", "--to", to.to_str().unwrap()]);
    assert_eq!(snapshot(&to.join("mydir")), snapshot(&src));
    // Never overwrite without --force, and say what to do.
    e.fails(&["restore", "mydir", "--to", to.to_str().unwrap()], 1, "--force");
    e.ok(&["restore", &stored, "--to", to.to_str().unwrap(), "--force"]);
    assert!(e.ok(&["verify", "mydir"]).starts_with("ok "));
    // Restoring into the current directory by default.
    let cwd = e.path().join("cwd");
    fs::create_dir(&cwd).unwrap();
    let o = e.cmd().args(["restore", "mydir"]).current_dir(&cwd).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cwd.join("mydir/small.txt").exists());
}

#[test]
fn backup_defaults_to_the_current_directory() {
    let e = Env::new();
    let src = e.path().join("here");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let o = e.cmd().args(["backup", "--prompt", "no"]).current_dir(&src).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("stored here."), "{}", stdout(&o));
}

#[test]
fn encrypted_backups_and_wrong_passwords() {
    let e = Env::new();
    let src = e.path().join("secret");
    rich_tree(&src);
    let o =
        e.cmd().args(["backup", src.to_str().unwrap()]).env("BAKTHAT_PASSWORD", "s3cr3t pässword").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stored = stored_name(&stdout(&o));
    assert!(stored.ends_with(".tgz.enc"), "{stored}");
    let to = e.path().join("out");
    fs::create_dir(&to).unwrap();
    let o = e
        .cmd()
        .args(["restore", "secret", "--to", to.to_str().unwrap()])
        .env("BAKTHAT_PASSWORD", "nope")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("wrong password"), "{}", stderr(&o));
    assert!(empty_dir(&to), "a wrong password writes nothing");
    e.fails(&["restore", "secret", "--to", to.to_str().unwrap()], 1, "password");
    let o = e
        .cmd()
        .args(["restore", "secret", "--to", to.to_str().unwrap()])
        .env("BAKTHAT_PASSWORD", "s3cr3t pässword")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(snapshot(&to.join("secret")), snapshot(&src));
    let o = e.cmd().args(["verify", "secret"]).env("BAKTHAT_PASSWORD", "s3cr3t pässword").output().unwrap();
    assert!(o.status.success() && stdout(&o).starts_with("ok "), "{}{}", stdout(&o), stderr(&o));
    // The standalone decryptor reads what the CLI wrote.
    let python = std::env::var("BAKTHAT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bakthat-decrypt");
    let o = Command::new(python)
        .arg(&script)
        .arg(e.store().join(&stored))
        .env("BAKTHAT_PASSWORD", "s3cr3t pässword")
        .output()
        .unwrap();
    assert!(o.status.success(), "bakthat-decrypt: {}", stderr(&o));
    assert_eq!(&o.stdout[..2], &[0x1f, 0x8b], "decrypts to a gzip stream");
}

#[test]
fn missing_path_unknown_profile_destination_and_bad_yaml() {
    let e = Env::new();
    e.fails(&["backup", "/nonexistent/path", "--prompt", "no"], 1, "does not exist");
    e.fails(&["show", "-p", "nope"], 1, "nope");
    let src = e.path().join("d");
    fs::create_dir(&src).unwrap();
    // A destination is parsed with the flags: a usage error (exit 2), as for any bad flag value.
    e.fails(
        &["backup", src.to_str().unwrap(), "-d", "ftp", "--prompt", "no"],
        2,
        "unknown destination \"ftp\"; use local, s3",
    );
    e.fails(&["restore", "never-backed-up"], 1, "no backup matches");
    fs::write(e.config(), "default:\n  local_path: /x\n  bad: [unclosed\n").unwrap();
    let o = e.fails(&["show"], 1, "bakthat.yml:");
    assert!(
        regex::Regex::new(r"bakthat\.yml:\d+:\d+").unwrap().is_match(&stderr(&o)),
        "line and column: {}",
        stderr(&o)
    );
    assert!(e.store_files().is_empty());
}

#[test]
fn corrupt_and_truncated_archives_are_refused() {
    let e = Env::new();
    let src = e.path().join("data");
    rich_tree(&src);
    for (pw, compression) in [None, Some("pw")].into_iter().flat_map(|p| [(p, "gzip"), (p, "zstd")]) {
        let name = format!("data-{compression}-{}", pw.is_some());
        let args = ["backup", src.to_str().unwrap(), "--prompt", "no", "--compression", compression, "--name", &name];
        let o = run_pw(&e, &args, pw);
        assert!(o.status.success(), "{}", stderr(&o));
        let stored = stored_name(&stdout(&o));
        let path = e.store().join(&stored);
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        let at = good.len() / 2;
        flipped[at] ^= 0x20;
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 0x01;
        let mut cases = vec![("flipped", flipped), ("truncated", good[..good.len() * 2 / 3].to_vec())];
        if pw.is_some() {
            // Regression: a damaged header must not be taken for a bakthat 0.6 (beefish) file.
            cases.push(("bad-magic", bad_magic));
        }
        for (what, bad) in cases {
            fs::write(&path, &bad).unwrap();
            let to = e.path().join(format!("out-{what}-{name}"));
            fs::create_dir(&to).unwrap();
            for verb in ["restore", "verify"] {
                let mut c = e.cmd();
                c.args([verb, &stored, "--to", to.to_str().unwrap()]);
                if verb == "verify" {
                    c = e.cmd();
                    c.args([verb, &stored]);
                }
                if let Some(p) = pw {
                    c.env("BAKTHAT_PASSWORD", p);
                }
                let o = c.output().unwrap();
                assert_eq!(o.status.code(), Some(1), "{verb} of a {what} archive: {}", stderr(&o));
                let err = stderr(&o);
                assert!(
                    err.contains("corrupt") || err.contains("truncated") || err.contains("tampered"),
                    "{verb} {what}: {err}"
                );
            }
            assert!(empty_dir(&to), "nothing restored from a {what} archive");
        }
        fs::write(&path, &good).unwrap();
    }
}

#[test]
fn unreadable_files_are_skipped_with_a_warning_and_exit_1() {
    assert!(is_root(), "this test runs bakthat as `nobody` through setpriv, which needs root");
    let e = Env::new();
    let src = e.path().join("partly");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("ok.txt"), b"readable").unwrap();
    fs::write(src.join("secret.txt"), b"not for nobody").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    run(Command::new("chown").arg("-R").arg("nobody:nogroup").arg(e.path()));
    run(Command::new("chown").arg("root:root").arg(src.join("secret.txt")));
    fs::set_permissions(e.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_bakthat"), "backup"])
        .arg(&src)
        .args(["--prompt", "no"])
        .env_clear_keep(&e.cmd());
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("secret.txt") && stderr(&o).contains("warning"), "{}", stderr(&o));
    let stored = stored_name(&stdout(&o));
    let to = e.path().join("out");
    e.ok(&["restore", &stored, "--to", to.to_str().unwrap()]);
    assert_eq!(fs::read(to.join("partly/ok.txt")).unwrap(), b"readable");
    assert!(!to.join("partly/secret.txt").exists());
}

// Regression (issue 11, item 7): a restore of a backup whose index marks a file as read part way at backup time
// warned and exited 0, so a script took the zero-padded file for the original. It exits 1 with a summary line.
#[test]
fn restore_of_a_backup_with_incomplete_files_exits_1() {
    let e = Env::new();
    let src = e.path().join("docs");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("log.bin"), vec![1u8; 4096]).unwrap();
    fs::write(src.join("ok.txt"), b"ok").unwrap();
    let stored = stored_name(&e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no"]));
    // Mark log.bin as a file whose read failed part way (what backup records when it does).
    let inv = bakthat::inventory::Inventory::open(e.path().join("inventory.sqlite")).unwrap();
    let key = bakthat::model::StoredName::from_key(&stored);
    let mut index = bakthat::archive::read_index_sidecar(&inv.get_index(&key).unwrap().unwrap(), None).unwrap();
    index.entries.iter_mut().find(|x| x.path == b"docs/log.bin").unwrap().damaged = true;
    inv.put_index(&key, &bakthat::archive::index_sidecar(&index, None)).unwrap();
    drop(inv);

    let to = e.path().join("out");
    let o = e.run(&["restore", &stored, "--to", to.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("docs/log.bin"), "the warning names the file: {}", stderr(&o));
    assert!(stderr(&o).contains("1 file(s) were incomplete at backup time"), "{}", stderr(&o));
    assert_eq!(fs::read(to.join("docs/ok.txt")).unwrap(), b"ok", "the data is still restored");
    assert_eq!(fs::read(to.join("docs/log.bin")).unwrap(), vec![1u8; 4096]);
}

trait EnvClearKeep {
    fn env_clear_keep(&mut self, from: &Command) -> &mut Self;
}
impl EnvClearKeep for Command {
    fn env_clear_keep(&mut self, from: &Command) -> &mut Self {
        self.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in from.get_envs() {
            if let Some(v) = v {
                self.env(k, v);
            }
        }
        self.stdin(Stdio::null())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}
extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn full_disk_during_restore_leaves_nothing() {
    assert!(is_root(), "this test mounts a small tmpfs, which needs root");
    let e = Env::new();
    let src = e.path().join("big");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.bin"), bytes(5, 3 << 20, false)).unwrap();
    fs::write(src.join("b.bin"), bytes(6, 3 << 20, false)).unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no"]);
    let small = e.path().join("small-disk");
    fs::create_dir(&small).unwrap();
    run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&small));
    let o = e.run(&["restore", "big", "--to", small.to_str().unwrap()]);
    let listing: Vec<_> = fs::read_dir(&small).unwrap().map(|e| e.unwrap().file_name()).collect();
    run(Command::new("umount").arg(&small));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left"), "{}", stderr(&o));
    assert!(listing.is_empty(), "temp files removed, nothing under a final name: {listing:?}");
}

/// A child process killed when the test ends, even by a panic.
struct Reaped(Option<std::process::Child>);

impl Reaped {
    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
    fn take(mut self) -> std::process::Child {
        self.0.take().unwrap()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a backup of a huge sparse file (zeros read fast but take a while), waits until its upload has begun.
fn start_long_backup(e: &Env) -> Reaped {
    let src = e.path().join("huge");
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(64 << 30).unwrap();
    fs::write(src.join("first"), b"first").unwrap();
    let child = Reaped(Some(
        e.cmd()
            .args(["backup", src.to_str().unwrap(), "--prompt", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !e.store_files().iter().any(|f| f.starts_with(".bakthat-tmp.")) {
        assert!(Instant::now() < deadline, "the backup never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn sigkill_during_backup_leaves_no_row_and_no_object_and_is_cleaned_up() {
    let e = Env::new();
    let mut child = start_long_backup(&e).take();
    child.kill().unwrap();
    child.wait().unwrap();
    let files = e.store_files();
    assert!(files.iter().all(|f| f.starts_with(".bakthat-tmp.")), "nothing under a final name: {files:?}");
    assert!(e.show_json().is_empty(), "no inventory row");
    let small = e.path().join("small");
    fs::create_dir(&small).unwrap();
    let o = e.run(&["backup", small.to_str().unwrap(), "--prompt", "no"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("removed 1 leftover"), "{}", stderr(&o));
    assert!(e.store_files().iter().all(|f| !f.starts_with(".bakthat-tmp.")));
}

#[test]
fn ctrl_c_during_backup_stops_cleanly() {
    let e = Env::new();
    let child = start_long_backup(&e);
    // SAFETY: kill(2) on our own child.
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    assert_eq!(unsafe { kill(child.id() as i32, 2) }, 0);
    let o = child.take().wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(e.store_files().is_empty(), "the temp file is removed at once: {:?}", e.store_files());
    assert!(e.show_json().is_empty());
}

#[test]
fn excludes_merge_with_gitignore_semantics() {
    let e = Env::new();
    let src = e.path().join("proj");
    fs::create_dir_all(src.join("build")).unwrap();
    fs::create_dir_all(src.join("notmp")).unwrap();
    fs::write(src.join("build/out.o"), b"o").unwrap();
    fs::write(src.join("a.log"), b"log").unwrap();
    fs::write(src.join("keep.txt"), b"keep").unwrap();
    fs::write(src.join("notmp/file"), b"kept: tmp must not match notmp").unwrap();
    fs::write(src.join("tmp"), b"excluded").unwrap();
    fs::write(src.join("secret.key"), b"excluded by --exclude-file").unwrap();
    fs::write(src.join(".bakthatexclude"), "# comment line\n*.log\ntmp\n").unwrap();
    fs::write(src.join(".gitignore"), "build/\n").unwrap();
    let extra = e.path().join("extra-excludes");
    fs::write(&extra, "*.key\n").unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no", "--exclude-file", extra.to_str().unwrap()]);
    let to = e.path().join("out");
    e.ok(&["restore", "proj", "--to", to.to_str().unwrap()]);
    let got: Vec<String> = snapshot(&to.join("proj")).into_keys().collect();
    assert_eq!(got, vec!["", ".bakthatexclude", ".gitignore", "keep.txt", "notmp", "notmp/file"]);
}

/// A project tree for the exclude flags: a gitignored `build/` and `.env`, a cache directory, a tagged directory.
fn exclude_tree(e: &Env) -> PathBuf {
    let src = e.path().join("proj");
    for d in ["build", "cache/sub", "fakecache", "private", "logs"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join(".gitignore"), "# built\nbuild/\n.env\n").unwrap();
    fs::write(src.join(".env"), b"SECRET=1").unwrap();
    fs::write(src.join("build/out.o"), b"o").unwrap();
    fs::write(src.join("keep.txt"), b"keep").unwrap();
    fs::write(src.join("cache/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n").unwrap();
    fs::write(src.join("cache/blob"), b"cached").unwrap();
    fs::write(src.join("cache/sub/blob"), b"cached").unwrap();
    fs::write(src.join("fakecache/CACHEDIR.TAG"), "not the signature\n").unwrap();
    fs::write(src.join("fakecache/data"), b"kept: the tag is not valid").unwrap();
    fs::write(src.join("private/.nobackup"), b"").unwrap();
    fs::write(src.join("private/diary"), b"d").unwrap();
    fs::write(src.join("logs/a.log"), b"l").unwrap();
    fs::write(src.join("logs/keep.txt"), b"k").unwrap();
    src
}

fn restored_paths(e: &Env, name: &str) -> Vec<String> {
    let to = e.path().join(format!("out-{}", e.show_json().len()));
    e.ok(&["restore", name, "--to", to.to_str().unwrap()]);
    snapshot(&to.join("proj")).into_keys().collect()
}

#[test]
fn exclude_flags_each_do_their_part_and_are_counted() {
    let e = Env::new();
    let src = exclude_tree(&e);
    let s = src.to_str().unwrap();
    let o = e.run(&[
        "backup",
        s,
        "--prompt",
        "no",
        "--exclude",
        "*.log",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let want = "excluded 6 paths (2 by --exclude-caches, 2 by .gitignore, 1 by --exclude, 1 by --exclude-if-present); -v lists them";
    assert!(err.lines().any(|l| l == want), "{err}");
    assert_eq!(
        restored_paths(&e, "proj"),
        vec![
            "",
            ".gitignore",
            "cache",
            "cache/CACHEDIR.TAG",
            "fakecache",
            "fakecache/CACHEDIR.TAG",
            "fakecache/data",
            "keep.txt",
            "logs",
            "logs/keep.txt",
        ]
    );
}

#[test]
fn verbose_backup_lists_each_excluded_path_with_its_rule() {
    let e = Env::new();
    let src = exclude_tree(&e);
    let o = e.run(&["-v", "backup", src.to_str().unwrap(), "--prompt", "no", "--exclude", "logs/*.log"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for line in [
        "excluded .env (.gitignore:3: .env)",
        "excluded build/ (.gitignore:2: build/)",
        "excluded logs/a.log (--exclude logs/*.log)",
    ] {
        assert!(err.lines().any(|l| l == line), "{line:?} missing: {err}");
    }
    assert!(err.lines().any(|l| l == "excluded 3 paths (2 by .gitignore, 1 by --exclude)"), "{err}");
}

#[test]
fn gitignore_stays_on_by_default_and_no_ignore_turns_it_off() {
    let e = Env::new();
    let src = exclude_tree(&e);
    e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no"]);
    let got = restored_paths(&e, "proj");
    assert!(!got.contains(&".env".to_string()) && !got.contains(&"build".to_string()), "{got:?}");
    assert!(got.contains(&"cache/blob".to_string()) && got.contains(&"private/diary".to_string()), "{got:?}");
    e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no", "--no-ignore", "--name", "all"]);
    let got = restored_paths(&e, "all");
    for p in [".env", "build/out.o", "logs/a.log"] {
        assert!(got.contains(&p.to_string()), "{p} missing: {got:?}");
    }
}

#[test]
fn dry_run_stores_nothing_writes_no_row_and_prints_the_plan() {
    let e = Env::new();
    let src = exclude_tree(&e);
    // -d s3 with no S3 settings: a store would fail to open; the dry run never opens one.
    let o = e.run(&["backup", src.to_str().unwrap(), "--dry-run", "-d", "s3", "--exclude-caches"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    // .gitignore, keep.txt, cache/CACHEDIR.TAG, fakecache/{CACHEDIR.TAG,data}, private/{.nobackup,diary}, logs/*
    assert!(out.starts_with("would store 9 files ("), "{out}");
    assert!(out.lines().any(|l| l == "excluded cache/blob (--exclude-caches: CACHEDIR.TAG in its directory)"), "{out}");
    assert!(out.lines().any(|l| l == "excluded build/ (.gitignore:2: build/)"), "{out}");
    assert!(!e.store().exists(), "nothing stored");
    assert!(!e.path().join("inventory.sqlite").exists(), "no inventory opened");
    assert!(e.show_json().is_empty());
}

#[test]
fn zero_six_shortcuts_gzipped_inputs_and_compress_off() {
    let e = Env::new();
    let inner = e.path().join("inner");
    fs::create_dir(&inner).unwrap();
    fs::write(inner.join("x"), b"inside").unwrap();
    let tgz = e.path().join("already.tar.gz");
    run(Command::new("tar").arg("czf").arg(&tgz).arg("-C").arg(e.path()).arg("inner"));
    let out = e.ok(&["backup", tgz.to_str().unwrap(), "--prompt", "no"]);
    let stored = stored_name(&out);
    assert!(stored.starts_with("already.") && stored.ends_with(".tgz") && !stored.contains("tar"), "{stored}");
    assert_eq!(fs::read(e.store().join(&stored)).unwrap(), fs::read(&tgz).unwrap(), "stored as it is");
    let to = e.path().join("out");
    e.ok(&["restore", "already.tar.gz", "--to", to.to_str().unwrap()]);
    assert_eq!(fs::read(to.join("inner/x")).unwrap(), b"inside");

    fs::write(e.config(), format!("default:\n  local_path: {}\n  compress: false\n", e.store().display())).unwrap();
    let f = e.path().join("a.txt");
    fs::write(&f, b"plain file").unwrap();
    let o = e.cmd().args(["backup", f.to_str().unwrap()]).env("BAKTHAT_PASSWORD", "pw").output().unwrap();
    let stored = stored_name(&stdout(&o));
    assert!(regex::Regex::new(r"^a\.txt\.\d{14}\.enc$").unwrap().is_match(&stored), "{stored}");
    let to = e.path().join("out2");
    let o = e
        .cmd()
        .args(["restore", "a.txt", "--to", to.to_str().unwrap()])
        .env("BAKTHAT_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(to.join("a.txt")).unwrap(), b"plain file");
    e.fails(&["backup", inner.to_str().unwrap(), "--prompt", "no"], 1, "single file");
}

#[test]
fn delete_and_guards_on_destructive_commands() {
    let e = Env::new();
    for name in ["foo", "foobar"] {
        let d = e.path().join(name);
        fs::create_dir(&d).unwrap();
        e.ok(&["backup", d.to_str().unwrap(), "--prompt", "no"]);
    }
    e.fails(&["delete_older_than", "foo", ""], 1, "empty interval");
    e.fails(&["delete_older_than", "foo", "1d"], 1, "bad interval");
    e.fails(&["rotate_backups", "foo"], 1, "configure_backups_rotation");
    // Issue 12: without a policy a dry run explains and shows what a sensible one would do; --keep-* for one run.
    let o = e.run(&["rotate_backups", "foo", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("has no rotation policy; this is what --keep-daily 7"), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("keep "), "{}", stdout(&o));
    assert!(e.ok(&["rotate_backups", "foo", "--keep-daily", "3", "--dry-run"]).starts_with("keep "));
    // Regression (0.6 §14.6): `foo` never matches `foobar`.
    let o = e.ok(&["delete-older-than", "foo", "1s", "--dry-run"]);
    assert!(!o.contains("foobar"), "{o}");
    let o = e.ok(&["delete", "foo"]);
    assert!(o.starts_with("deleted foo."), "{o}");
    let rows = e.show_json();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["filename"], "foobar");
    assert_eq!(e.store_files().len(), 2, "foobar's archive and index remain");
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&e.ok(&["show", "--json", "--deleted"])).unwrap().len(),
        2
    );
    e.fails(&["delete", "foo"], 1, "no backup matches");
}

#[test]
fn configure_from_flags_and_rotation() {
    let e = Env::new();
    fs::remove_file(e.config()).unwrap();
    e.ok(&[
        "configure",
        "--access-key",
        "AK",
        "--secret-key",
        "SK",
        "--s3-bucket",
        "b",
        "--default-destination",
        "local",
    ]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(e.config()).unwrap().permissions().mode() & 0o777, 0o600);
    e.ok(&["configure_backups_rotation", "--days", "7", "--weeks", "4", "--months", "3", "--first-week-day", "monday"]);
    let text = fs::read_to_string(e.config()).unwrap();
    assert!(
        text.contains("access_key: AK") && text.contains("days: 7") && text.contains("first_week_day: 0"),
        "{text}"
    );
    // A malformed file is never truncated by configure.
    fs::write(e.config(), "default: [oops\n").unwrap();
    e.fails(&["configure", "--s3-bucket", "x"], 1, "bakthat.yml");
    assert_eq!(fs::read_to_string(e.config()).unwrap(), "default: [oops\n");
}

#[test]
fn completions_manpage_and_usage_errors() {
    let e = Env::new();
    assert!(e.ok(&["completions", "bash"]).contains("bakthat"));
    assert!(e.ok(&["manpage"]).starts_with(".ie") || e.ok(&["manpage"]).contains(".TH"));
    // Issue 12: the top-level page points at bakthat-backup(1) and the like; `manpage --dir` writes every one of them.
    let dir = e.path().join("man1");
    e.ok(&["manpage", "--dir", dir.to_str().unwrap()]);
    let top = fs::read_to_string(dir.join("bakthat.1")).unwrap();
    let named: Vec<&str> =
        top.split("bakthat\\-").skip(1).filter_map(|s| s.split_once("(1)").map(|(n, _)| n)).collect();
    assert!(named.len() >= 20 && named.contains(&"restore"), "{named:?}");
    for n in named {
        let page = fs::read_to_string(dir.join(format!("bakthat-{}.1", n.replace("\\-", "-")))).unwrap_or_default();
        assert!(page.contains(".TH"), "bakthat-{n}.1 is missing or empty");
    }
    // Every argument and option says what it is for.
    for c in ["restore", "verify", "delete", "rotate_backups", "show", "umount", "completions"] {
        let help = e.ok(&[c, "--help"]);
        let bare = help
            .lines()
            .filter(|l| l.starts_with("  <") || l.starts_with("  ["))
            .filter(|l| !l.trim_end().contains("  "));
        assert_eq!(bare.count(), 0, "{c} has an argument without help:\n{help}");
    }
    let o = e.run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Regression (issue 12): `bakthat completions fish | head -3` panicked with rc 101 when the reader went away.
/// The reading end of the pipe is closed before bakthat starts, so every write fails with EPIPE.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let e = Env::new();
    backup_named(&e, "piped", None); // so that show has lines to write
    for args in [&["completions", "fish"][..], &["manpage"], &["show", "--json"], &["show"]] {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(reader);
        let out = e.cmd().args(args).stdout(Stdio::from(writer)).stderr(Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed on stderr: {err}");
    }
}

/// A bakthat 0.6 `~/.bakthat.sqlite` with its tables and `rows` (SQL statements), at `path`.
fn legacy_db(path: &Path, rows: &str) {
    let schema = "CREATE TABLE backups (id INTEGER NOT NULL PRIMARY KEY, backend VARCHAR(255) NOT NULL, backend_hash VARCHAR(255), backup_date INTEGER NOT NULL, filename TEXT NOT NULL, is_deleted SMALLINT NOT NULL, last_updated INTEGER NOT NULL, metadata VARCHAR(255) NOT NULL, size INTEGER NOT NULL, stored_filename TEXT NOT NULL, tags VARCHAR(255) NOT NULL); CREATE UNIQUE INDEX backups_stored_filename ON backups (stored_filename); CREATE TABLE jobs (id INTEGER NOT NULL PRIMARY KEY, filename VARCHAR(255) NOT NULL, job_id VARCHAR(255) NOT NULL); CREATE TABLE inventory (id INTEGER NOT NULL PRIMARY KEY, archive_id VARCHAR(255) NOT NULL, filename VARCHAR(255) NOT NULL); CREATE TABLE config (id INTEGER NOT NULL PRIMARY KEY, key VARCHAR(255) NOT NULL, value VARCHAR(255) NOT NULL); CREATE TABLE history (id INTEGER NOT NULL PRIMARY KEY, data VARCHAR(255) NOT NULL, ts INTEGER NOT NULL, action VARCHAR(255) NOT NULL, model VARCHAR(255) NOT NULL, pk VARCHAR(255) NOT NULL); ";
    run(Command::new("python3").arg("-c").arg(format!(
        "import sqlite3; c=sqlite3.connect({:?}); c.executescript('''{schema}{rows}'''); c.commit()",
        path.to_str().unwrap(),
    )));
}

const LEGACY_ROW: &str = "INSERT INTO backups VALUES (1, 's3', 'h', 1369000000, 'mydir', 0, 1369000000, '{\"is_enc\": true, \"client\": \"old-host\"}', 256, 'mydir.20130519214640.tgz.enc', 'tag1 tag2');";

#[test]
fn import_legacy_database_read_only() {
    let e = Env::new();
    let legacy = e.path().join("old.sqlite");
    legacy_db(&legacy, LEGACY_ROW);
    let before = fs::read(&legacy).unwrap();
    let o = e.ok(&["import-legacy", "--db", legacy.to_str().unwrap()]);
    assert_eq!(o.trim(), "imported 1 backups, 0 Glacier archive ids, 0 retrieval jobs and 0 config values", "{o}");
    assert_eq!(fs::read(&legacy).unwrap(), before, "the 0.6 database is never modified");
    let show = e.ok(&["show"]);
    assert!(show.contains("mydir.20130519214640.tgz.enc (tag1 tag2)"), "{show}");
    assert!(show.starts_with("2013-05-19T21:46:40Z\ts3\t256 B\tencrypted\t"), "{show}");
}

/// Issue 12: import-legacy printed `ImportReport { .. }`; a refused row (issue 11) is a warning line and exit 1.
#[test]
fn import_legacy_says_what_it_refused() {
    let e = Env::new();
    let legacy = e.path().join("old.sqlite");
    let hostile =
        LEGACY_ROW.replace("(1, ", "(2, ").replace("'mydir'", "'../out/rel.txt'").replace("mydir.2013", "evil.2013");
    legacy_db(&legacy, &format!("{LEGACY_ROW} {hostile}"));
    let o = e.run(&["import-legacy", "--db", legacy.to_str().unwrap()]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.starts_with("imported 1 backups,") && out.trim_end().ends_with("refused 1 rows with unsafe names"),
        "{out}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("bakthat: warning: refusing a row whose filename is \"../out/rel.txt\""), "{err}");
}

/// Backs up a small tree named `name` (encrypted with `pw` when given); returns the stored name.
fn backup_named(e: &Env, name: &str, pw: Option<&str>) -> String {
    let src = e.path().join("src").join(name);
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join(format!("{name}.txt")), format!("the contents of {name}\n").repeat(50)).unwrap();
    let o = run_pw(e, &["backup", src.to_str().unwrap(), "--prompt", "no"], pw);
    assert!(o.status.success(), "{}", stderr(&o));
    stored_name(&stdout(&o))
}

fn run_pw(e: &Env, args: &[&str], pw: Option<&str>) -> Output {
    let mut c = e.cmd();
    c.args(args);
    if let Some(p) = pw {
        c.env("BAKTHAT_PASSWORD", p);
    }
    c.output().unwrap()
}

/// Issue 12: messages read as one line each, whatever prints them: a log warning in a pipe has no ANSI codes and no
/// module path, appears once, and the backup says where it went and whether it is encrypted, in honest units.
#[test]
fn warnings_are_plain_single_lines_and_the_backup_says_where_it_went() {
    let e = Env::new();
    let config =
        format!("default:\n  local_path: {}\n  hooks:\n    on_backup: 'cat >/dev/null; exit 3'\n", e.store().display());
    fs::write(e.config(), config).unwrap();
    let src = e.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "x".repeat(5000)).unwrap();
    let o = e.run(&["backup", src.to_str().unwrap(), "--prompt", "no"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    let want = format!(" in local (local store {}), not encrypted", e.store().display());
    assert!(out.starts_with("stored src.") && out.trim_end().ends_with(&want), "{out}");
    assert!(!err.contains('\x1b'), "ANSI codes in a pipe: {err:?}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("hook")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].starts_with("bakthat: warning: the on_backup hook"), "{err}");
    assert!(!err.contains("WARN") && !err.contains("bakthat::"), "{err}");
    // Sizes in binary units say so.
    let show = e.ok(&["show"]);
    assert!(!show.contains(" KB") && !show.contains(" MB"), "{show}");
}

/// Issue 12: `show` reads as a table on a terminal (header, UTC dates with Z, aligned columns, the store and the
/// encryption), stays tab-separated in a pipe, says "no backups yet" when empty, and `--json` has tags as a list,
/// ISO dates beside the epochs, the host and the source path.
#[test]
fn show_is_a_table_on_a_terminal_lines_in_a_pipe_and_documented_json() {
    let e = Env::new();
    let o = e.run(&["show"]);
    assert!(o.status.success() && stdout(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(stderr(&o).trim(), "no backups yet");
    let src = e.path().join("src").join("site");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("index.html"), "<html/>").unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no", "-t", "web daily"]);
    backup_named(&e, "longer-name", Some("pw"));
    // A pipe: one tab-separated line per backup, no header.
    let lines = e.ok(&["show"]);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.lines().all(|l| l.split('\t').count() == 6 && l.split('\t').next().unwrap().ends_with('Z')),
        "{lines}"
    );
    // A terminal (script(1) gives bakthat a pty).
    let cmd = format!("{} show", env!("CARGO_BIN_EXE_bakthat"));
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", e.path())
        .env("BAKTHAT_CONFIG", e.config())
        .env("BAKTHAT_DB", e.path().join("inventory.sqlite"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let table = stdout(&o).replace('\r', "");
    let rows: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].starts_with("DATE (UTC)") && rows[0].contains("ENCRYPTED") && rows[0].contains("STORE"), "{table}");
    let col = |row: &str, what: &str| row.find(what).unwrap_or_else(|| panic!("{what} in {row}"));
    assert_eq!(col(rows[1], "local "), col(rows[0], "DEST"), "aligned:\n{table}");
    assert_eq!(col(rows[2], "local "), col(rows[0], "DEST"), "aligned:\n{table}");
    assert!(rows.iter().skip(1).all(|r| r.contains("Z  ") && r.contains(" KiB") || r.contains(" B ")), "{table}");
    assert!(table.contains("yes") && table.contains("web daily"), "{table}");
    // JSON.
    let rows = e.show_json();
    let site = rows.iter().find(|r| r["filename"] == "site").unwrap();
    assert_eq!(site["tags"], serde_json::json!(["web", "daily"]));
    assert!(site["date"].as_str().unwrap().ends_with('Z') && site["backup_date"].is_i64(), "{site}");
    assert_eq!(site["encrypted"], false);
    assert_eq!(site["source"], fs::canonicalize(&src).unwrap().to_str().unwrap());
    assert!(site["host"].is_string() && site["store"].as_str().unwrap().starts_with("local:"), "{site}");
    let enc = rows.iter().find(|r| r["filename"] == "longer-name").unwrap();
    assert_eq!(enc["encrypted"], true);
}

/// Issue 12: completions complete backup names (from the local inventory) where a command takes one, in a real
/// bash with the generated script sourced.
#[test]
fn bash_completion_offers_backup_names() {
    let e = Env::new();
    backup_named(&e, "site", None);
    backup_named(&e, "sitemap", None);
    backup_named(&e, "other", None);
    let script = e.path().join("bakthat.bash");
    fs::write(&script, e.ok(&["completions", "bash"])).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_bakthat")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let complete = |words: &str| {
        let line = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=\"{words}\"; \
             COMP_POINT=${{#COMP_LINE}}; _bakthat_names bakthat; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash")
            .args(["-c", &line])
            .env_clear()
            .env("PATH", &path)
            .env("HOME", e.path())
            .env("BAKTHAT_CONFIG", e.config())
            .env("BAKTHAT_DB", e.path().join("inventory.sqlite"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let mut got: Vec<String> = stdout(&out).lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        got.sort();
        got
    };
    assert_eq!(complete("bakthat restore si"), ["site", "sitemap"]);
    assert_eq!(complete("bakthat verify o"), ["other"]);
    assert!(complete("bakthat restore --t").contains(&"--to".to_string()), "flags still complete");
    assert!(!complete("bakthat show si").contains(&"site".to_string()), "show takes a query, not a name");
    let fish = e.ok(&["completions", "fish"]);
    assert!(fish.contains("__fish_seen_subcommand_from restore") && fish.contains("(bakthat __names"), "{fish}");
}

/// Issue 12: an unreachable S3 endpoint printed a 569-character line ending in the SDK's Debug text
/// (`DispatchFailure { source: ConnectorError { … }`); now one line that names the endpoint and the root cause.
#[test]
fn an_unreachable_endpoint_is_one_readable_line() {
    let e = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed on drop
    let config = format!(
        "default:\n  access_key: AK\n  secret_key: SK\n  s3_bucket: bucket1\n  region_name: us-east-1\n  \
         endpoint_url: http://127.0.0.1:{port}\n"
    );
    fs::write(e.config(), config).unwrap();
    fs::write(e.path().join("f.txt"), "x").unwrap();
    let o = e.run(&["backup", e.path().join("f.txt").to_str().unwrap(), "-d", "s3", "--prompt", "no"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("at http://127.0.0.1:{port}")) && err.contains("Connection refused"), "{err}");
    assert!(!err.contains("DispatchFailure") && !err.contains('{') && err.len() < 300, "{err}");
}

/// Issue 12: `--password-file` and `--password-command` on every command that needs a password (only `mount` had
/// a file option). Global flags, before or after the command.
#[test]
fn password_file_and_password_command_work_for_every_command() {
    let e = Env::new();
    let pwfile = e.path().join("pw.txt");
    fs::write(&pwfile, "correct horse\nignored second line\n").unwrap();
    let file = pwfile.to_str().unwrap();
    let command = format!("cat {file}");
    let src = e.path().join("src").join("secret");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "alpha\n").unwrap();
    let stored = stored_name(&e.ok(&["backup", src.to_str().unwrap(), "--password-file", file]));
    assert!(stored.ends_with(".tgz.enc"), "{stored}");
    // Each command that reads an encrypted backup takes either flag (and the password is the file's first line).
    let out = e.path().join("out");
    e.ok(&["--password-command", &command, "restore", "secret", "--to", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(out.join("secret/a.txt")).unwrap(), "alpha\n");
    e.ok(&["verify", "secret", "--password-file", file]);
    e.ok(&["check", "--read-data", "--password-command", &command]);
    // Without a password the encrypted backup cannot be read; a wrong one is refused; a failing command is one line.
    assert!(!e.run(&["verify", "secret"]).status.success());
    fs::write(e.path().join("wrong.txt"), "wrong\n").unwrap();
    let o = e.run(&["verify", "secret", "--password-file", e.path().join("wrong.txt").to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("password"), "{}", stderr(&o));
    let o = e.run(&["verify", "secret", "--password-command", "exit 3"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "bakthat: error: the password command \"exit 3\" failed (exit status: 3); nothing was done"
    );
    let o = e.run(&["verify", "secret", "--password-file", "/nonexistent/pw"]);
    assert!(stderr(&o).starts_with("bakthat: error: reading the password file /nonexistent/pw: "), "{}", stderr(&o));
    assert_eq!(e.run(&["show", "--password-file", file, "--password-command", "x"]).status.code(), Some(2));
}

// Regression (issue 11, item 6): verify read the archive and the inventory's copy of its index, never the `.index`
// sidecar in the store, so a flipped or swapped sidecar still verified "ok".
#[test]
fn verify_checks_the_index_sidecar_in_the_store() {
    let e = Env::new();
    for pw in [None, Some("pw")] {
        let tag = if pw.is_some() { "enc" } else { "plain" };
        let a = backup_named(&e, &format!("a-{tag}"), pw);
        let b = backup_named(&e, &format!("b-{tag}"), pw);
        for s in [&a, &b] {
            let o = run_pw(&e, &["verify", s], pw);
            assert!(o.status.success() && stdout(&o).starts_with("ok "), "{s}: {}", stderr(&o));
        }
        let sidecar = |s: &str| e.store().join(format!("{s}.index"));
        let good_a = fs::read(sidecar(&a)).unwrap();
        let good_b = fs::read(sidecar(&b)).unwrap();
        let mut flipped = good_a.clone();
        let at = flipped.len() - 5;
        flipped[at] ^= 0x01;
        fs::write(sidecar(&a), &flipped).unwrap();
        fs::write(sidecar(&b), &good_a).unwrap();
        for s in [&a, &b] {
            let o = run_pw(&e, &["verify", s], pw);
            assert_eq!(o.status.code(), Some(1), "{s} ({tag}) with a bad sidecar: {}{}", stdout(&o), stderr(&o));
            assert!(stderr(&o).contains("index sidecar"), "{}", stderr(&o));
        }
        fs::remove_file(sidecar(&a)).unwrap();
        let o = run_pw(&e, &["verify", &a], pw);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("is missing"), "{}", stderr(&o));
        fs::write(sidecar(&a), &good_a).unwrap();
        fs::write(sidecar(&b), &good_b).unwrap();
    }
}

// Issue 11, item 6: `bakthat check` over the whole inventory.
#[test]
fn check_finds_missing_objects_bad_sidecars_bad_journal_entries_and_orphans() {
    let e = Env::new();
    let a = backup_named(&e, "a", None);
    let b = backup_named(&e, "b", None);
    let c = backup_named(&e, "c", None);
    let d = backup_named(&e, "d", Some("pw"));
    let ok = run_pw(&e, &["check", "--read-data"], Some("pw"));
    assert!(ok.status.success(), "a sound inventory checks out: {}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).starts_with("ok: 4 backups, 4 sidecars"), "{}", stdout(&ok));

    // An orphan, as a kill -9 between storing and recording leaves it: an archive with its sidecar, no row, no
    // journal entry.
    let orphan = a.replace(&a[2..16], "20200101000000");
    fs::copy(e.store().join(&a), e.store().join(&orphan)).unwrap();
    fs::copy(e.store().join(format!("{a}.index")), e.store().join(format!("{orphan}.index"))).unwrap();
    // A flipped sidecar, a swapped one, a missing archive, a damaged journal entry.
    let mut flipped = fs::read(e.store().join(format!("{a}.index"))).unwrap();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x40;
    fs::write(e.store().join(format!("{a}.index")), &flipped).unwrap();
    fs::copy(e.store().join(format!("{c}.index")), e.store().join(format!("{b}.index"))).unwrap();
    fs::remove_file(e.store().join(&c)).unwrap();
    fs::write(e.store().join(format!("{}0000000000001.0123456789abcdef", bakthat::journal::JOURNAL_PREFIX)), b"junk")
        .unwrap();

    let o = run_pw(&e, &["check"], Some("pw"));
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("{a}: its index sidecar {a}.index differs")), "{out}");
    assert!(out.contains(&format!("{b}: its index sidecar {b}.index differs")), "{out}");
    assert!(out.contains(&format!("{c}: missing from local")), "{out}");
    assert!(
        out.contains("journal entry bakthat-journal.0000000000001.0123456789abcdef: not a bakthat journal"),
        "{out}"
    );
    let line = out.lines().find(|l| l.contains("has no inventory row")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with(&format!("local: {orphan} has no inventory row")), "{line}");
    assert_eq!(stderr(&o).trim().lines().count(), 1, "one summary line: {}", stderr(&o));
    assert!(stderr(&o).contains("4 problems, 1 archives without a row"), "{}", stderr(&o));

    // The printed command adopts the orphan: it is verified, recorded and restorable.
    let cmd = line.split("adopt it with: ").nth(1).unwrap();
    let words: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    assert_eq!(words, ["adopt", orphan.as_str(), "-d", "local"]);
    let adopted = e.ok(&words);
    assert!(adopted.starts_with(&format!("adopted {orphan}")), "{adopted}");
    let to = e.path().join("restored");
    e.ok(&["restore", &orphan, "--to", to.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(to.join("a/a.txt")).unwrap(), "the contents of a\n".repeat(50));
    assert!(e.ok(&["verify", &orphan]).starts_with("ok "));
    e.fails(&["adopt", &orphan], 1, "already in the inventory");

    // Damaged contents are found only by reading them; --read-data-subset reads a deterministic part.
    fs::write(e.store().join(format!("{a}.index")), fs::read(e.store().join(format!("{orphan}.index"))).unwrap())
        .unwrap();
    fs::copy(e.store().join(format!("{c}.index")), e.store().join(format!("{b}.index"))).unwrap();
    let mut data = fs::read(e.store().join(&d)).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x01;
    fs::write(e.store().join(&d), &data).unwrap();
    let o = run_pw(&e, &["check", "--read-data-subset", "100%"], Some("pw"));
    let out = stdout(&o);
    assert!(out.contains(&format!("{b}: its index sidecar {b}.index differs")), "{out}");
    assert!(out.lines().any(|l| l.starts_with(&format!("{d}: ")) && l.contains("tampered")), "{out}");
    // Parts (without the password: the plain backup b is damaged too, and the key derivation is slow).
    let mut data = fs::read(e.store().join(&b)).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x01;
    fs::write(e.store().join(&b), &data).unwrap();
    let parts: Vec<String> =
        (1..=3).map(|n| stdout(&run_pw(&e, &["check", "--read-data-subset", &format!("{n}/3")], None))).collect();
    let damaged = |out: &String| out.lines().any(|l| l.starts_with(&format!("{b}: ")) && !l.contains("sidecar"));
    assert_eq!(parts.iter().filter(|p| damaged(p)).count(), 1, "b is read in exactly one part: {parts:?}");
    let again = stdout(&run_pw(&e, &["check", "--read-data-subset", "1/3"], None));
    assert_eq!(again, parts[0], "the same part every run");
    e.fails(&["check", "--read-data-subset", "0/3"], 2, "");

    // A lost inventory: every archive of the profile's store is an orphan, each with its adopt command.
    let o = e.cmd().env("BAKTHAT_DB", e.path().join("new.sqlite")).args(["check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let orphans =
        stdout(&o).lines().filter(|l| l.contains("has no inventory row; adopt it with: bakthat adopt")).count();
    assert_eq!(orphans, 4, "a, b, d and the adopted copy of a: {}", stdout(&o));
}

// Regression (issue 11, item 9): a mount started without a password (no terminal, no BAKTHAT_PASSWORD) came up, and
// every encrypted backup in it answered "Permission denied".
#[test]
fn mount_without_a_password_refuses_when_backups_are_encrypted() {
    let e = Env::new();
    backup_named(&e, "secret", Some("pw"));
    let mp = e.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let cache = e.path().join("cache");
    let mut child = e
        .cmd()
        .args(["mount", mp.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = Command::new("fusermount3").arg("-u").arg(&mp).status();
            let _ = child.kill();
            panic!("the mount started without a password although a backup is encrypted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("1 backup(s) are encrypted and no password was given"), "{err}");
    assert!(err.contains("--without-encrypted") && err.trim().lines().count() == 1, "{err}");
    assert!(empty_dir(&mp));
}

/// Issue 12: `ls`, `find`, `diff` and `stats` answer from the inventory's index copies, with no store at all.
#[test]
fn ls_find_diff_and_stats_read_the_inventory_only() {
    let e = Env::new();
    let src = e.path().join("d");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "alpha\n").unwrap();
    fs::write(src.join("sub/b.jpg"), "jpeg").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("l")).unwrap();
    let first = stored_name(&e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no"]));
    fs::write(src.join("a.txt"), "alpha, longer\n").unwrap();
    fs::remove_file(src.join("sub/b.jpg")).unwrap();
    fs::write(src.join("new.jpg"), "new").unwrap();
    let o = run_pw(&e, &["backup", src.to_str().unwrap(), "--prompt", "no"], Some("pw"));
    let second = stored_name(&stdout(&o));
    // No store: everything below reads the inventory.
    fs::rename(e.store(), e.path().join("gone")).unwrap();

    assert_eq!(e.ok(&["ls", &first]), "d\nd/a.txt\nd/l\nd/sub\nd/sub/b.jpg\n");
    assert_eq!(e.ok(&["ls", &first, "d/sub/"]), "d/sub\nd/sub/b.jpg\n");
    let long = e.ok(&["ls", &first, "--long", "d/l"]);
    assert!(long.starts_with("lrwxrwxrwx  ") && long.trim_end().ends_with("Z  d/l -> a.txt"), "{long}");
    e.fails(&["ls", &first, "d/nope"], 1, "d/nope is not in");
    // The newest backup of `d` is encrypted: its index needs the password.
    e.fails(&["ls", "d"], 1, "password");
    let o = run_pw(&e, &["ls", "d", "--json"], Some("pw"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stored_filename"], second.as_str());
    let a = v["entries"].as_array().unwrap().iter().find(|x| x["path"] == "d/a.txt").unwrap();
    assert_eq!((a["kind"].as_str(), a["size"].as_u64(), a["mode"].as_u64()), (Some("file"), Some(14), Some(0o644)));
    assert!(a["mtime_utc"].as_str().unwrap().ends_with('Z'));

    // find: without the password the encrypted backup is skipped with a warning; with it, both are searched.
    let o = e.run(&["find", "*.jpg"]);
    assert!(o.status.success() && stderr(&o).contains(&format!("{second} not searched")), "{}", stderr(&o));
    assert!(stdout(&o).contains("d/sub/b.jpg") && !stdout(&o).contains("new.jpg"), "{}", stdout(&o));
    let o = run_pw(&e, &["find", "new.*", "-n", "d", "--json"], Some("pw"));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!((v[0]["path"].as_str(), v[0]["stored_filename"].as_str()), (Some("d/new.jpg"), Some(second.as_str())));

    let o = run_pw(&e, &["diff", &first, &second], Some("pw"));
    let out = stdout(&o);
    assert!(out.contains("-  d/sub/b.jpg\n") && out.contains("+  d/new.jpg\n"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("M  d/a.txt  (") && l.contains("size")), "{out}");
    assert!(!out.contains("d/l"), "unchanged paths are not listed: {out}");

    let o = run_pw(&e, &["stats", "--json"], Some("pw"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["total"]["backups"], 2);
    assert_eq!(v["total"]["files"], 4);
    assert_eq!(v["total"]["plain_bytes"], 6 + 4 + 14 + 3);
    assert_eq!(v["stores"][0]["store"], "local");
    assert_eq!(v["names"]["d"]["unknown"], 0);
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["stats", "--json"])).unwrap();
    assert_eq!(v["total"]["unknown"], 1, "the encrypted one without a password");
    let text = e.ok(&["stats"]);
    assert!(text.starts_with("name ") && text.contains("total") && !text.contains('\x1b'), "{text}");
}

/// Issue 12: `restore NAME --path P` from the command line, and a path not in the backup in one line.
#[test]
fn restore_path_restores_only_that_subtree() {
    let e = Env::new();
    let src = e.path().join("d");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "alpha\n").unwrap();
    fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--prompt", "no"]);
    let to = e.path().join("out");
    e.ok(&["restore", "d", "--path", "d/sub", "--to", to.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(to.join("d/sub/b.txt")).unwrap(), "beta\n");
    assert!(!to.join("d/a.txt").exists());
    e.fails(&["restore", "d", "--path", "d/nope", "--to", to.to_str().unwrap(), "--force"], 1, "d/nope is not in");
}

/// `restore --path P` of a hard link whose first name is outside P restores it as a file with its bytes (it failed
/// with "hard link target is not a file extracted earlier"), encrypted or not; names inside P stay linked.
#[test]
fn restore_path_of_a_hard_link_whose_first_name_is_elsewhere() {
    use std::os::unix::fs::MetadataExt;
    let e = Env::new();
    let src = e.path().join("h");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    fs::write(src.join("a/f.txt"), "shared bytes\n").unwrap();
    fs::hard_link(src.join("a/f.txt"), src.join("b/l1.txt")).unwrap();
    fs::hard_link(src.join("a/f.txt"), src.join("b/l2.txt")).unwrap();
    for (i, pw) in [None, Some("pw")].into_iter().enumerate() {
        let o = run_pw(&e, &["backup", src.to_str().unwrap(), "--prompt", "no"], pw);
        assert!(o.status.success(), "{}", stderr(&o));
        let stored = stored_name(&stdout(&o));
        assert_eq!(stored.ends_with(".enc"), pw.is_some(), "{stored}");
        let to = e.path().join(format!("out{i}"));
        let o = run_pw(&e, &["restore", &stored, "--path", "h/b", "--to", to.to_str().unwrap()], pw);
        assert!(o.status.success(), "{}", stderr(&o));
        for l in ["h/b/l1.txt", "h/b/l2.txt"] {
            assert_eq!(fs::read_to_string(to.join(l)).unwrap(), "shared bytes\n", "{l}");
        }
        let (m1, m2) = (fs::metadata(to.join("h/b/l1.txt")).unwrap(), fs::metadata(to.join("h/b/l2.txt")).unwrap());
        assert_eq!((m1.ino(), m1.nlink()), (m2.ino(), 2), "the two names inside the path stay one file");
        assert!(!to.join("h/a").exists());
    }
}

/// `local:<dir>` as bakthat records it (the directory made canonical).
fn local_id(dir: &Path) -> String {
    format!("local:{}", fs::canonicalize(dir).unwrap().display())
}

/// A directory `<parent>/data` holding one file with `text`.
fn data_dir(parent: &Path, text: &str) -> PathBuf {
    let src = parent.join("data");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), text).unwrap();
    src
}

// Regression (issue 11 item 4): a second profile with its own local_path made `restore data` and `verify data` of
// the default profile pick the other profile's newer row and fail with "not in the local store", and the default
// profile's own backup was never tried.
#[test]
fn two_profiles_with_their_own_local_path_each_restore_and_verify_their_own_backup() {
    let e = Env::new();
    let other = e.path().join("other-store");
    let yml = format!("default:\n  local_path: {}\nother:\n  local_path: {}\n", e.store().display(), other.display());
    fs::write(e.config(), yml).unwrap();
    for (profile, text) in [("default", "mine"), ("other", "theirs")] {
        let src = data_dir(&e.path().join(profile), text);
        e.ok(&["backup", src.to_str().unwrap(), "-p", profile]);
    }
    for (profile, text) in [("default", "mine"), ("other", "theirs")] {
        let to = e.path().join(format!("out-{profile}"));
        e.ok(&["restore", "data", "--to", to.to_str().unwrap(), "-p", profile]);
        assert_eq!(fs::read_to_string(to.join("data/f.txt")).unwrap(), text, "profile {profile}");
        assert!(e.ok(&["verify", "data", "-p", profile]).starts_with("ok "));
    }
    // Every row says its store, in the table and in --json.
    let rows = e.show_json();
    let store_of = |id: &str| rows.iter().find(|r| r["store"] == id).map(|r| r["stored_filename"].as_str().unwrap());
    let theirs = store_of(&local_id(&other)).expect("a row in the other store").to_string();
    assert!(store_of(&local_id(&e.store())).is_some(), "{rows:?}");
    assert!(e.ok(&["show"]).contains(&format!("\t{}", local_id(&other))));
    // The other profile's backup asked for by its stored name under the default profile: one line naming its store
    // and the profile to use, not "not in the local store".
    let to = e.path().join("out-theirs");
    let o = e.fails(&["restore", &theirs, "--to", to.to_str().unwrap()], 1, "use -p other");
    assert!(stderr(&o).contains(&local_id(&other)), "{}", stderr(&o));
    e.fails(&["delete", &theirs], 1, "use -p other");
    assert_eq!(fs::read_dir(&other).unwrap().filter(|f| f.as_ref().unwrap().file_name() == *theirs).count(), 1);
    // The mount of the default profile lists its own backup only: the other profile's was a file answering EIO.
    use bakthat::fs::{Fs, MountOptions, OpenBackend};
    use std::sync::Arc;
    let config = bakthat::config::Config::load(&e.config()).unwrap();
    let inventory = bakthat::inventory::Inventory::open(e.path().join("inventory.sqlite")).unwrap();
    let client = Arc::new(
        bakthat::client::Client::from_ctx(bakthat::ops::Ctx::new(config, "default", inventory).unwrap()).unwrap(),
    );
    let c2 = client.clone();
    let open: OpenBackend = Arc::new(move |r| Ok(c2.ctx().stores().open_record(r)?));
    let mount = Fs::new(client, open, None, MountOptions::new(e.path().join("cache"))).unwrap();
    let lookup = |parent, name: &str| mount.lookup(parent, name.as_bytes()).unwrap().attr.ino;
    let data = lookup(lookup(1, "by-name"), "data");
    let names: Vec<String> =
        mount.readdir(data, 0).unwrap().into_iter().skip(2).map(|d| String::from_utf8(d.name).unwrap()).collect();
    assert_eq!(names.len(), 2, "one dated backup and latest: {names:?}");
    let newest = String::from_utf8(mount.readlink(lookup(data, "latest")).unwrap()).unwrap();
    let file = lookup(lookup(lookup(data, &newest), "data"), "f.txt");
    let opened = mount.open(file, false).unwrap();
    assert_eq!(mount.read(file, opened.fh, 0, 100).unwrap(), b"mine");
}

// Regression (issue 11 item 4): `configure --local-path` orphaned every earlier row (restore said "not in the local
// store"; the mount answered EIO). They keep their store and stay readable while its directory exists.
#[test]
fn configure_local_path_keeps_earlier_backups_readable() {
    let e = Env::new();
    let src = data_dir(e.path(), "before");
    e.ok(&["backup", src.to_str().unwrap()]);
    let new = e.path().join("new-store");
    let o = e.run(&["configure", "--local-path", new.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("1 backup(s) stay in {}", local_id(&e.store()))), "{}", stderr(&o));
    let to = e.path().join("out");
    e.ok(&["restore", "data", "--to", to.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(to.join("data/f.txt")).unwrap(), "before");
    assert!(e.ok(&["verify", "data"]).starts_with("ok "));
    // A new backup goes to the new store, and the name now means it.
    fs::write(src.join("f.txt"), "after").unwrap();
    e.ok(&["backup", src.to_str().unwrap()]);
    e.ok(&["restore", "data", "--to", to.to_str().unwrap(), "--force"]);
    assert_eq!(fs::read_to_string(to.join("data/f.txt")).unwrap(), "after");
    let stores: Vec<String> = e.show_json().iter().map(|r| r["store"].as_str().unwrap().to_string()).collect();
    assert_eq!(stores, [local_id(&new), local_id(&e.store())]);
}

/// Turns the inventory back into the schema before stores were recorded (version 1).
fn downgrade_to_schema_1(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(
        "DROP INDEX IF EXISTS backups_parent; ALTER TABLE backups DROP COLUMN parent; DROP TABLE IF EXISTS snapshot; \
         DROP INDEX backups_store; ALTER TABLE backups DROP COLUMN store; PRAGMA user_version = 1;",
    )
    .unwrap();
}

// Issue 11 item 4: an inventory of the previous schema is migrated; its rows are placed in the store their backend
// hash names, before and after a change of local_path.
#[test]
fn an_inventory_of_schema_1_is_migrated_and_its_rows_placed() {
    let e = Env::new();
    let src = data_dir(e.path(), "old");
    e.ok(&["backup", src.to_str().unwrap()]);
    let db = e.path().join("inventory.sqlite");
    downgrade_to_schema_1(&db);
    let version = |db: &Path| -> i64 {
        rusqlite::Connection::open(db).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(version(&db), 1);
    let rows = e.show_json();
    assert_eq!(version(&db), bakthat::inventory::SCHEMA_VERSION as i64);
    assert_eq!(rows[0]["store"], local_id(&e.store()), "placed by its backend hash");
    // Rows of schema 1 that nothing had placed yet are placed before local_path changes, so they stay readable.
    downgrade_to_schema_1(&db);
    e.ok(&["configure", "--local-path", e.path().join("elsewhere").to_str().unwrap()]);
    let to = e.path().join("out");
    e.ok(&["restore", "data", "--to", to.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(to.join("data/f.txt")).unwrap(), "old");
    // A row no profile's store matches stays "store unknown", and resolves as before (the profile's store).
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute("UPDATE backups SET store = '', backend_hash = 'nowhere'", []).unwrap();
    drop(c);
    assert_eq!(e.show_json()[0]["store"], "");
    assert!(e.ok(&["show"]).contains("(store unknown)"));
}
