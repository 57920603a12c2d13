//! `compression: zstd` end to end (issue 16): seekable zstd archives written by the command line, read back by
//! bakthat (restore, restore --path, verify) and by the tools alone: `zstd -d`, GNU tar's `--zstd` and `-I zstd`, and
//! `scripts/bakthat-decrypt` under Debian's python3 for an encrypted one. A missing tool fails the test
//! (`scripts/install-test-deps.sh` installs zstd, tar and Debian's python3-cryptography and python3-argon2).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::cli::{ok, stored_name, Home};
use crate::common::{bytes, rich_tree, snapshot};

const PW: &str = "zstd pässword";

fn home(extra: &str) -> Home {
    Home::new(|d| format!("default:\n  local_path: {}\n{extra}", d.join("store").display()))
}

/// A tree of several zstd frames: the rich tree and a compressible file of a few spans.
fn source(h: &Home) -> PathBuf {
    let src = h.path("src");
    rich_tree(&src);
    fs::write(src.join("spans.txt"), bytes(9, 2_000_000, true)).unwrap();
    src
}

/// Runs a tool, failing with its stderr (or with how to install it when it is missing).
fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}): run scripts/install-test-deps.sh"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Extracts `archive` into a fresh directory `to` with GNU tar and `flags` (`--zstd`, `-I zstd`, ...).
fn untar(archive: &Path, to: &Path, flags: &[&str]) {
    fs::create_dir_all(to).unwrap();
    tool(Command::new("tar").args(flags).arg("-xf").arg(archive).arg("-C").arg(to));
}

#[test]
fn a_zstd_backup_is_read_by_bakthat_and_by_zstd_and_gnu_tar_alone() {
    let h = home("");
    let src = source(&h);
    let stored =
        stored_name(&h.ok(&["backup", src.to_str().unwrap(), "--compression", "zstd", "--prompt", "no"], None));
    assert!(stored.starts_with("src.") && stored.ends_with(".tar.zst"), "{stored}");
    let object = h.path("store").join(&stored);
    let want = snapshot(&src);
    // Tools alone: zstd -d, tar --zstd, tar -I zstd.
    tool(Command::new("zstd").args(["-q", "-d", "-o"]).arg(h.path("plain.tar")).arg(&object));
    untar(&h.path("plain.tar"), &h.path("by-zstd"), &[]);
    untar(&object, &h.path("by-tar-zstd"), &["--zstd"]);
    untar(&object, &h.path("by-tar-I"), &["-I", "zstd"]);
    for dir in ["by-zstd", "by-tar-zstd", "by-tar-I"] {
        assert_eq!(snapshot(&h.path(dir).join("src")), want, "{dir}");
    }
    // bakthat: show, verify, restore, restore --path (ranged reads of single frames).
    let rows = h.show(false);
    assert_eq!(rows[0]["stored_filename"], stored.as_str());
    assert_eq!(rows[0]["filename"], "src");
    assert!(h.ok(&["verify", &stored], None).starts_with("ok "));
    let to = h.path("restored");
    h.ok(&["restore", "src", "--to", to.to_str().unwrap()], None);
    assert_eq!(snapshot(&to.join("src")), want);
    let part = h.path("part");
    h.ok(&["restore", "src", "--path", "src/spans.txt", "--to", part.to_str().unwrap()], None);
    assert_eq!(fs::read(part.join("src/spans.txt")).unwrap(), fs::read(src.join("spans.txt")).unwrap());
}

#[test]
fn an_encrypted_zstd_backup_decrypts_with_the_script_under_debian_python_then_untars() {
    let h = home("");
    let src = source(&h);
    let out = h.ok(&["backup", src.to_str().unwrap(), "--compression", "zstd"], Some(PW));
    let stored = stored_name(&out);
    assert!(stored.ends_with(".tar.zst.enc"), "{stored}");
    let to = h.path("restored");
    h.ok(&["restore", "src", "--to", to.to_str().unwrap()], Some(PW));
    assert_eq!(snapshot(&to.join("src")), snapshot(&src));
    assert!(h.ok(&["verify", &stored], Some(PW)).starts_with("ok "));
    // The decryptor leaves the .tar.zst, as it leaves a .tgz: Debian's python3 with Debian's packages.
    let python = std::env::var("BAKTHAT_DEBIAN_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bakthat-decrypt");
    let plain = tool(Command::new(python).arg(&script).arg(h.path("store").join(&stored)).env("BAKTHAT_PASSWORD", PW));
    assert_eq!(&plain[..4], &[0x28, 0xb5, 0x2f, 0xfd], "decrypts to a zstd stream");
    let mut tar = Command::new("tar")
        .args(["--zstd", "-x", "-C"])
        .arg({
            fs::create_dir_all(h.path("by-tools")).unwrap();
            h.path("by-tools")
        })
        .stdin(Stdio::piped())
        .spawn()
        .expect("running GNU tar");
    tar.stdin.take().unwrap().write_all(&plain).unwrap();
    assert!(tar.wait().unwrap().success());
    assert_eq!(snapshot(&h.path("by-tools/src")), snapshot(&src));
}

#[test]
fn the_profile_key_chooses_zstd_and_its_levels() {
    let h = home("  compression: zstd\n  compression_level: 19\n");
    let src = h.path("one");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.txt"), bytes(3, 300_000, true)).unwrap();
    let stored = stored_name(&h.ok(&["backup", src.to_str().unwrap(), "--prompt", "no"], None));
    assert!(stored.ends_with(".tar.zst"), "{stored}");
    // The flag wins over the profile, both ways.
    let gz = stored_name(&h.ok(&["backup", src.to_str().unwrap(), "--compression", "gzip", "--name", "g"], None));
    assert!(gz.starts_with("g.") && gz.ends_with(".tgz"), "{gz}");
    // Level 19 is zstd's, not deflate's: a gzip profile refuses it, in one line naming the key.
    let bad = home("  compression_level: 19\n");
    let o = bad.run(&["show"], None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("default.compression_level") && err.contains("1 to 12 for gzip"), "{err}");
    let bad = home("  compression: lz4\n");
    let o = bad.run(&["show"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected gzip or zstd"), "{:?}", o);
    ok(&h.run(&["show"], None), "show");
}
