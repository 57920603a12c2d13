//! The `bakthat` binary in a scratch home: its config, inventories and HOME in a temp dir, an environment cleared of
//! everything else (so no password, AWS profile, CA bundle or endpoint of the caller's leaks in), stdin closed (no
//! prompt can wait), and a timeout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

/// A scratch home for command-line runs: `bakthat.yml`, `inventory.sqlite` (or another inventory), `home/` as HOME
/// and `data/` as XDG_DATA_HOME, all in one temp dir. When the home holds a `ca.pem`, SSL_CERT_FILE points at it.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    /// A home whose `bakthat.yml` is what `config` makes of the home's directory.
    pub fn new(config: impl FnOnce(&Path) -> String) -> Home {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bakthat.yml"), config(dir.path())).unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        Home { dir }
    }

    /// A path in the home.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// bakthat with this home's config and `inventory.sqlite`.
    pub fn cmd(&self) -> Command {
        self.cmd_db("inventory.sqlite")
    }

    /// bakthat with this home's config and the inventory `db` (machines that share a config, each with its own).
    pub fn cmd_db(&self, db: &str) -> Command {
        let mut c = Command::cargo_bin("bakthat").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("BAKTHAT_CONFIG", self.path("bakthat.yml"))
            .env("BAKTHAT_DB", self.path(db))
            .timeout(Duration::from_secs(120));
        if let Some(tmp) = std::env::var_os("TMPDIR") {
            c.env("TMPDIR", tmp);
        }
        if self.path("ca.pem").exists() {
            c.env("SSL_CERT_FILE", self.path("ca.pem"));
        }
        c
    }

    /// Runs bakthat `args`, with `password` as BAKTHAT_PASSWORD when given.
    pub fn run(&self, args: &[&str], password: Option<&str>) -> Output {
        let mut c = self.cmd();
        if let Some(pw) = password {
            c.env("BAKTHAT_PASSWORD", pw);
        }
        c.args(args).output().unwrap()
    }

    /// Runs bakthat `args` with the inventory `db`.
    pub fn run_db(&self, db: &str, args: &[&str]) -> Output {
        self.cmd_db(db).args(args).output().unwrap()
    }

    /// [`Home::run`] that must succeed; its stdout.
    pub fn ok(&self, args: &[&str], password: Option<&str>) -> String {
        ok(&self.run(args, password), &format!("bakthat {args:?}"))
    }

    /// `show --json [--deleted]` without the local row ids.
    pub fn show(&self, deleted: bool) -> Vec<Value> {
        let args: &[&str] = if deleted { &["show", "--json", "--deleted"] } else { &["show", "--json"] };
        let mut rows: Vec<Value> = serde_json::from_str(&self.ok(args, None)).unwrap();
        for r in &mut rows {
            r.as_object_mut().unwrap().remove("id");
        }
        rows
    }

    /// Runs a command (inventory `db`) that exits 75 while a Glacier job runs, until it succeeds; its stdout.
    pub fn until_ready(&self, db: &str, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self.run_db(db, args);
            match out.status.code() {
                Some(0) => return String::from_utf8_lossy(&out.stdout).into_owned(),
                Some(75) => {
                    assert!(Instant::now() < deadline, "{args:?} still pending after 90 s");
                    std::thread::sleep(Duration::from_millis(300));
                }
                code => panic!("{args:?} exited {code:?}: {}", String::from_utf8_lossy(&out.stderr)),
            }
        }
    }
}

/// The stdout of a run that must have succeeded; `what` names it in the failure.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stored name in a backup's `stored NAME (size) in dest` line.
pub fn stored_name(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("stored ")).and_then(|r| r.split(' ').next()).unwrap().to_string()
}
