//! The Glacier inventory commands end to end against moto (started by scripts/test.sh with a short job delay; a
//! missing server fails these tests): a vault inventory job, the local archive ids, and their JSON copy in S3
//! restoring a new machine's inventory so it can restore from the vault.

use crate::common;

use std::fs;
use std::path::Path;

use bakthat::storage::s3::S3Store;
use bakthat::storage::Backend;
use common::cli::{ok, stored_name, Home};
use common::moto;

/// A scratch home with a config for one bucket and one vault on moto; returns it and the bucket.
fn scratch_home() -> (Home, String) {
    let bucket = moto::unique("ginv");
    let vault = moto::unique("ginv");
    let profile = moto::profile_yaml(&bucket);
    (Home::new(|_| format!("default:\n{profile}  glacier_vault: {vault}\n")), bucket)
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
    let (env, bucket) = scratch_home();
    // Two different trees: moto names archives by the MD5 of their bytes.
    let (one, two) = (env.path("src/one"), env.path("src/two"));
    tree(&one, 1);
    tree(&two, 2);
    let a = stored_name(&ok(
        &env.run_db("m1.sqlite", &["backup", one.to_str().unwrap(), "-d", "glacier", "--prompt", "no"]),
        "backup one",
    ));
    let b = stored_name(&ok(
        &env.run_db("m1.sqlite", &["backup", two.to_str().unwrap(), "-d", "glacier", "--prompt", "no"]),
        "backup two",
    ));

    let local = pairs(&ok(&env.run_db("m1.sqlite", &["show_local_glacier_inventory"]), "show_local_glacier_inventory"));
    // Each backup is one archive in the vault; its entry index sidecar sits in the S3 bucket beside the journal.
    let mut names = vec![a.clone(), b.clone()];
    names.sort();
    assert_eq!(local.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), names);

    // The vault's own inventory: a job first (exit 75, with a clear message), then the archives.
    let first = env.run_db("m1.sqlite", &["show_glacier_inventory"]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("inventory of glacier vault") && stderr.contains("again later"), "{stderr}");
    let remote = pairs(&env.until_ready("m1.sqlite", &["show-glacier-inventory"]));
    assert_eq!(remote, local, "the vault lists the archives with their stored names as descriptions");
    // The finished job is reused while Glacier keeps its output.
    assert_eq!(pairs(&ok(&env.run_db("m1.sqlite", &["show_glacier_inventory"]), "second show")), local);

    // The JSON copy in S3, in 0.6's shape.
    ok(&env.run_db("m1.sqlite", &["backup_glacier_inventory"]), "backup_glacier_inventory");
    let s3 = S3Store::new(&moto::s3_settings(&moto::endpoint(), &bucket)).unwrap();
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
    assert_eq!(ok(&env.run_db("m2.sqlite", &["show_local_glacier_inventory"]), "empty").trim(), "");
    let out = ok(&env.run_db("m2.sqlite", &["restore_glacier_inventory"]), "restore_glacier_inventory");
    assert!(out.contains("2 archive id(s) added") && out.contains("2 backup row(s) created"), "{out}");
    assert_eq!(pairs(&ok(&env.run_db("m2.sqlite", &["show_local_glacier_inventory"]), "show local")), local);
    let out = ok(&env.run_db("m2.sqlite", &["restore_glacier_inventory"]), "again");
    assert!(out.contains("0 archive id(s) added, 2 already known, 0 backup row(s)"), "{out}");
    let to = env.path("restored");
    env.until_ready("m2.sqlite", &["restore", "two", "-d", "glacier", "--to", to.to_str().unwrap()]);
    assert_eq!(common::snapshot(&to.join("two")), common::snapshot(&two));

    // Without the copy in S3 (the bucket exists, the key does not): a clear error.
    s3.delete("bakthat_glacier_inventory").unwrap();
    let out = env.run_db("m2.sqlite", &["restore_glacier_inventory"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run backup_glacier_inventory first"), "{stderr}");
}
