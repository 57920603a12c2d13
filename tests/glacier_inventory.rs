//! The Glacier inventory commands end to end against moto (started by scripts/test.sh with a short job delay; a
//! missing server fails these tests): a vault inventory job, the local archive ids, and their JSON copy in S3
//! restoring a new machine's inventory so it can restore from the vault.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use bakthat::storage::s3::S3Store;
use bakthat::storage::Backend;
use common::moto;

struct Env {
    dir: tempfile::TempDir,
    bucket: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let bucket = moto::unique("ginv");
        let vault = moto::unique("ginv");
        let config = format!(
            "default:\n  access_key: test\n  secret_key: test\n  region_name: us-east-1\n  s3_bucket: {bucket}\n  \
             glacier_vault: {vault}\n  endpoint_url: {}\n",
            moto::endpoint()
        );
        fs::write(dir.path().join("bakthat.yml"), config).unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        Env { dir, bucket }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Runs bakthat with the inventory `db` (two machines share a config, each has its own inventory).
    fn run(&self, db: &str, args: &[&str]) -> Output {
        let mut c = Command::cargo_bin("bakthat").unwrap();
        c.env("BAKTHAT_CONFIG", self.path("bakthat.yml"))
            .env("BAKTHAT_DB", self.path(db))
            .env("HOME", self.path("home"))
            .env_remove("BAKTHAT_PASSWORD")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_ENDPOINT_URL")
            .timeout(Duration::from_secs(120));
        c.args(args).output().unwrap()
    }

    /// Runs a command that exits 75 while a Glacier job runs, until it succeeds.
    fn until_ready(&self, db: &str, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self.run(db, args);
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

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stored_name(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("stored ")).and_then(|r| r.split(' ').next()).unwrap().to_string()
}

/// `archive_id \t size \t name` lines into (name, archive_id) pairs, sorted.
fn pairs(listing: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[2].to_string(), f[0].to_string())
        })
        .collect();
    v.sort();
    v
}

fn tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.txt"), common::bytes(seed, 5000, true)).unwrap();
    fs::write(root.join("sub/b.bin"), common::bytes(seed + 1, 70_000, false)).unwrap();
}

#[test]
fn glacier_inventory_commands() {
    let env = Env::new();
    // Two different trees: moto names archives by the MD5 of their bytes.
    let (one, two) = (env.path("src/one"), env.path("src/two"));
    tree(&one, 1);
    tree(&two, 2);
    let a = stored_name(&ok(
        &env.run("m1.sqlite", &["backup", one.to_str().unwrap(), "-d", "glacier", "--prompt", "no"]),
        "backup one",
    ));
    let b = stored_name(&ok(
        &env.run("m1.sqlite", &["backup", two.to_str().unwrap(), "-d", "glacier", "--prompt", "no"]),
        "backup two",
    ));

    let local = pairs(&ok(&env.run("m1.sqlite", &["show_local_glacier_inventory"]), "show_local_glacier_inventory"));
    // Each backup is one archive in the vault; its entry index sidecar sits in the S3 bucket beside the journal.
    let mut names = vec![a.clone(), b.clone()];
    names.sort();
    assert_eq!(local.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), names);

    // The vault's own inventory: a job first (exit 75, with a clear message), then the archives.
    let first = env.run("m1.sqlite", &["show_glacier_inventory"]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("inventory of glacier vault") && stderr.contains("again later"), "{stderr}");
    let remote = pairs(&env.until_ready("m1.sqlite", &["show-glacier-inventory"]));
    assert_eq!(remote, local, "the vault lists the archives with their stored names as descriptions");
    // The finished job is reused while Glacier keeps its output.
    assert_eq!(pairs(&ok(&env.run("m1.sqlite", &["show_glacier_inventory"]), "second show")), local);

    // The JSON copy in S3, in 0.6's shape.
    ok(&env.run("m1.sqlite", &["backup_glacier_inventory"]), "backup_glacier_inventory");
    let s3 = S3Store::new(&moto::s3_settings(&moto::endpoint(), &env.bucket)).unwrap();
    let (bytes, _) = s3.get_with_metadata("bakthat_glacier_inventory").unwrap().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut copied: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["filename"].as_str().unwrap().to_string(), e["archive_id"].as_str().unwrap().to_string()))
        .collect();
    copied.sort();
    assert_eq!(copied, local);
    for name in [&a, &b] {
        assert!(s3.head(&format!("{name}.index")).unwrap().is_some(), "{name}'s index sidecar is in the S3 bucket");
    }

    // A new machine: nothing known, then everything, and it restores from the vault.
    assert_eq!(ok(&env.run("m2.sqlite", &["show_local_glacier_inventory"]), "empty").trim(), "");
    let out = ok(&env.run("m2.sqlite", &["restore_glacier_inventory"]), "restore_glacier_inventory");
    assert!(out.contains("2 archive id(s) added") && out.contains("2 backup row(s) created"), "{out}");
    assert_eq!(pairs(&ok(&env.run("m2.sqlite", &["show_local_glacier_inventory"]), "show local")), local);
    let out = ok(&env.run("m2.sqlite", &["restore_glacier_inventory"]), "again");
    assert!(out.contains("0 archive id(s) added, 2 already known, 0 backup row(s)"), "{out}");
    let to = env.path("restored");
    env.until_ready("m2.sqlite", &["restore", "two", "-d", "glacier", "--to", to.to_str().unwrap()]);
    assert_eq!(common::snapshot(&to.join("two")), common::snapshot(&two));

    // Without the copy in S3 (the bucket exists, the key does not): a clear error.
    s3.delete("bakthat_glacier_inventory").unwrap();
    let out = env.run("m2.sqlite", &["restore_glacier_inventory"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run backup_glacier_inventory first"), "{stderr}");
}
