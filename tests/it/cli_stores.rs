//! The `bakthat` command end to end on S3 and Glacier, against moto (started by scripts/test.sh; a missing server
//! fails these tests).

use crate::common;

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

/// Regression (issue 13): the mount decided "archived" from a `storage_class` metadata key that no backup wrote, so
/// an S3 backup stored with `s3_storage_class: GLACIER` showed `state = ready` until a read failed. The row now
/// records the class the store applied, and the mount shows the backup archived before any request.
#[test]
fn a_glacier_class_s3_backup_shows_archived_in_the_mount_before_any_read() {
    use bakthat::fs::{Fs, MountOptions, OpenBackend, XattrReply};
    use std::sync::Arc;
    let (env, _bucket) = scratch_home();
    let mut config = fs::read_to_string(env.path("bakthat.yml")).unwrap();
    config.push_str("  s3_storage_class: GLACIER\n");
    fs::write(env.path("bakthat.yml"), config).unwrap();
    let src = source(&env.path("cold"));
    ok(&env.run(&["backup", src.to_str().unwrap(), "-d", "s3", "--prompt", "no"], None), "backup");

    let config = bakthat::config::Config::load(&env.path("bakthat.yml")).unwrap();
    let inventory = bakthat::inventory::Inventory::open(env.path("inventory.sqlite")).unwrap();
    let ctx = bakthat::ops::Ctx::new(config, "default", inventory).unwrap();
    let client = Arc::new(bakthat::client::Client::from_ctx(ctx).unwrap());
    let c2 = client.clone();
    let open: OpenBackend = Arc::new(move |r| Ok(c2.ctx().stores().open_record(r)?));
    let fs = Fs::new(client, open, None, MountOptions::new(env.path("cache"))).unwrap();
    let lookup = |parent, name: &str| fs.lookup(parent, name.as_bytes()).unwrap().attr.ino;
    let by_name = lookup(lookup(1, "by-name"), "project");
    let names: Vec<String> =
        fs.readdir(by_name, 0).unwrap().into_iter().skip(2).map(|e| String::from_utf8(e.name).unwrap()).collect();
    let date = names.iter().find(|n| n.as_str() != "latest").expect("a dated backup directory");
    let dir = lookup(by_name, date);
    let get = |name: &str| match fs.getxattr(dir, format!("user.bakthat.{name}").as_bytes(), 4096).unwrap() {
        XattrReply::Data(d) => String::from_utf8(d).unwrap(),
        XattrReply::Size(_) => unreachable!(),
    };
    assert_eq!(get("storage_class"), "GLACIER");
    assert_eq!(get("state"), "archived", "before any read");
    // The first read starts the object's restore (moto may complete it at once) and reads once it is done.
    let file = lookup(lookup(lookup(dir, "project"), "sub"), "big.bin");
    let fh = fs.open(file, false).unwrap().fh;
    match fs.read(file, fh, 0, 4096) {
        Ok(data) => {
            assert_eq!(data.len(), 4096);
            assert_eq!(get("state"), "ready");
        }
        Err(e) => {
            assert!(matches!(e, bakthat::fs::FsError::RetrievalPending { .. }), "{e}");
            assert_eq!(get("state"), "retrieving");
        }
    }
}
