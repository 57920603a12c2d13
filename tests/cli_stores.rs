//! The `bakthat` command end to end on S3 and Glacier, against moto (started by scripts/test.sh; a missing server
//! fails these tests).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bakthat::storage::s3::S3Store;
use bakthat::storage::Backend;
use common::cli::{ok, stored_name, Home};
use common::moto;

/// A scratch home with a config for one bucket and one vault on moto; returns it and the bucket.
fn scratch_home() -> (Home, String) {
    let bucket = moto::unique("cli");
    let vault = moto::unique("cli");
    let profile = moto::profile_yaml(&bucket);
    let home = Home::new(|dir| {
        format!("default:\n{profile}  glacier_vault: {vault}\n  local_path: {}\n", dir.join("local").display())
    });
    (home, bucket)
}

fn s3(bucket: &str) -> S3Store {
    S3Store::new(&moto::s3_settings(&moto::endpoint(), bucket)).unwrap()
}

fn source(root: &Path) -> PathBuf {
    let src = root.join("src").join("project");
    common::rich_tree(&src);
    src
}

#[test]
fn s3_backup_restore_delete() {
    let (env, bucket) = scratch_home();
    let src = source(env.dir.path());
    let s = env.path("src/project");
    let s = s.to_str().unwrap();

    // Encrypted, with the machine's AWS_CA_BUNDLE set; plain, with it unset: both work.
    let mut c = env.cmd();
    c.env("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt").env("BAKTHAT_PASSWORD", "secret words");
    let out = c.args(["backup", s, "-d", "s3"]).output().unwrap();
    let enc = stored_name(&ok(&out, "encrypted backup"));
    assert!(enc.ends_with(".tgz.enc"), "{enc}");
    let mut c = env.cmd();
    c.env_remove("AWS_CA_BUNDLE");
    let out =
        c.args(["backup", s, "-d", "s3", "--prompt", "no", "--name", "plain", "--s3-reduced-redundancy"]).output();
    let plain = stored_name(&ok(&out.unwrap(), "plain backup"));

    let store = s3(&bucket);
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    assert!(keys.contains(&enc) && keys.contains(&plain), "{keys:?}");
    let head = store.head(&plain).unwrap().unwrap();
    assert_eq!(head.storage_class.as_deref(), Some("REDUCED_REDUNDANCY"), "--s3-reduced-redundancy");
    assert_eq!(store.head(&enc).unwrap().unwrap().storage_class.as_deref(), Some("STANDARD"));

    let to = env.path("out");
    let out = env.run(&["restore", "project", "-d", "s3", "--to", to.to_str().unwrap()], Some("secret words"));
    ok(&out, "restore");
    assert_eq!(common::snapshot(&to.join("project")), common::snapshot(&src));
    let to2 = env.path("out2");
    ok(&env.run(&["restore", "plain", "-d", "s3", "--to", to2.to_str().unwrap()], None), "plain restore");
    assert_eq!(common::snapshot(&to2.join("project")), common::snapshot(&src));

    ok(&env.run(&["delete", "project", "-d", "s3"], None), "delete");
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    assert!(!keys.iter().any(|k| k.starts_with("project")), "deleted objects remain: {keys:?}");
    let out = env.run(&["restore", "project", "-d", "s3", "--to", env.path("out3").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn glacier_restore_is_pending_then_succeeds() {
    let (env, _) = scratch_home();
    let src = source(env.dir.path());
    let s = env.path("src/project");
    let out = env.run(&["backup", s.to_str().unwrap(), "-d", "glacier", "--prompt", "no"], None);
    let stored = stored_name(&ok(&out, "glacier backup"));

    let to = env.path("out");
    let args = ["restore", "project", "-d", "glacier", "--to", to.to_str().unwrap()];
    let first = env.run(&args, None);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(75), "the first restore starts a retrieval: {stderr}");
    assert!(stderr.contains(&stored) && stderr.contains("again later"), "{stderr}");
    assert!(!to.join("project").exists());

    // Run again until the retrieval job completes (moto_fast completes jobs after GLACIER_JOB_DELAY seconds).
    env.until_ready("inventory.sqlite", &args);
    assert_eq!(common::snapshot(&to.join("project")), common::snapshot(&src));

    ok(&env.run(&["delete", "project", "-d", "glacier"], None), "delete");
    let out = env.run(&args, None);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Regression: with `s3_storage_class: GLACIER`, only the archive goes cold. The index sidecar and the sync journal
/// must stay readable at once (they are small objects that `sync`, `show` and the mount read without a restore).
#[test]
fn an_archive_storage_class_leaves_sidecars_and_the_journal_hot() {
    let (env, bucket) = scratch_home();
    let mut config = fs::read_to_string(env.path("bakthat.yml")).unwrap();
    config.push_str("  s3_storage_class: GLACIER\n");
    fs::write(env.path("bakthat.yml"), config).unwrap();
    let src = source(&env.path("cold"));
    let out = ok(&env.run(&["backup", src.to_str().unwrap(), "-d", "s3", "--prompt", "no"], None), "backup");
    let stored = stored_name(&out);
    let s3 = s3(&bucket);
    let class = |key: &str| s3.head(key).unwrap().unwrap_or_else(|| panic!("{key} missing")).storage_class;
    assert_eq!(class(&stored).as_deref(), Some("GLACIER"), "the archive takes the profile's class");
    let hot = |c: Option<String>| c.is_none() || c.as_deref() == Some("STANDARD");
    assert!(hot(class(&format!("{stored}.index"))), "the index sidecar stays hot");
    for o in s3.list("bakthat-journal.").unwrap() {
        assert!(hot(o.storage_class.clone()) && hot(class(&o.key)), "journal entry {} stays hot", o.key);
    }
    assert!(!s3.list("bakthat-journal.").unwrap().is_empty(), "the backup was journaled");
}
