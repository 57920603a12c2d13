//! The `bakthat` binary against the Swift all-in-one started by scripts/test.sh (v1 auth): backup, show, restore,
//! delete with `-d swift`. A missing server is a failure, not a skip.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use bakthat::storage::swift::SwiftStore;
use bakthat::storage::Backend;
use common::swift::{self, env, unique};

fn write_config(path: &Path, container: &str, key: &str) {
    let text = format!(
        "default:\n  access_key: '{}'\n  secret_key: '{key}'\n  s3_bucket: {container}\n  auth_url: {}\n  \
         auth_version: '1'\n  region_name: us-east-1\n",
        env("BAKTHAT_TEST_SWIFT_USER"),
        env("BAKTHAT_TEST_SWIFT_AUTH"),
    );
    fs::write(path, text).unwrap();
}

fn bakthat(home: &Path, config: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("bakthat")
        .unwrap()
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("BAKTHAT_DB", home.join("inventory.sqlite"))
        .env("BAKTHAT_PASSWORD", "correct horse")
        .env_remove("BAKTHAT_CONFIG")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bakthat failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn backup_restore_delete_through_swift() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    common::rich_tree(&src);
    let container = unique("cli");
    let config = t.path().join("bakthat.yml");
    write_config(&config, &container, &env("BAKTHAT_TEST_SWIFT_KEY"));
    let src_arg = src.to_str().unwrap();

    let out = ok(bakthat(t.path(), &config, &["backup", src_arg, "-d", "swift", "--prompt", "no"]));
    assert!(out.contains("swift"), "{out}");
    let store = SwiftStore::new(&swift::settings(&container)).unwrap();
    let stored: Vec<String> = store.list("data.").unwrap().into_iter().map(|o| o.key).collect();
    assert!(stored.iter().any(|k| k.ends_with(".tgz.enc")), "{stored:?}");

    let shown = ok(bakthat(t.path(), &config, &["show"]));
    assert!(shown.contains("swift") && shown.contains("data."), "{shown}");

    let to = t.path().join("restored");
    fs::create_dir(&to).unwrap();
    ok(bakthat(t.path(), &config, &["restore", "data", "-d", "swift", "--to", to.to_str().unwrap()]));
    assert_eq!(common::snapshot(&to.join("data")), common::snapshot(&src), "restored tree differs");

    ok(bakthat(t.path(), &config, &["delete", "data", "-d", "swift"]));
    let left: Vec<String> =
        store.list("data.").unwrap().into_iter().map(|o| o.key).filter(|k| !k.contains(".idx")).collect();
    assert!(!left.iter().any(|k| k.ends_with(".tgz.enc")), "the archive is gone: {left:?}");
}

#[test]
fn a_wrong_key_fails_with_a_message_naming_the_settings() {
    let t = tempfile::tempdir().unwrap();
    let config = t.path().join("bakthat.yml");
    write_config(&config, &unique("cli-auth"), "wrong-key");
    fs::write(t.path().join("f.txt"), b"x").unwrap();
    let out = bakthat(t.path(), &config, &["backup", t.path().join("f.txt").to_str().unwrap(), "-d", "swift"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret_key") && err.contains("auth_url"), "{err}");
}

#[test]
fn missing_swift_settings_are_named() {
    let t = tempfile::tempdir().unwrap();
    let config = t.path().join("bakthat.yml");
    fs::write(&config, "default:\n  access_key: a:b\n  secret_key: k\n  s3_bucket: c\n").unwrap();
    fs::write(t.path().join("f.txt"), b"x").unwrap();
    let out = bakthat(t.path(), &config, &["backup", t.path().join("f.txt").to_str().unwrap(), "-d", "swift"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default.auth_url") && err.contains("bakthat configure"), "{err}");
}
