//! Helpers shared by the integration tests: building source trees and comparing them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What a tree holds, for comparisons: relative path -> description (kind, mode, content or link target).
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
    let meta = fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let desc = if meta.file_type().is_symlink() {
        format!("link -> {}", fs::read_link(p).unwrap().display())
    } else if meta.is_dir() {
        format!("dir {:o}", meta.mode() & 0o7777)
    } else {
        let data = fs::read(p).unwrap();
        let h = data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3));
        format!("file {:o} {} {:x} mtime {}", meta.mode() & 0o7777, data.len(), h, meta.mtime())
    };
    out.insert(rel, desc);
    if meta.is_dir() {
        let mut kids: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        kids.sort();
        for k in kids {
            walk(root, &k, out);
        }
    }
}

/// Deterministic pseudo-random bytes (compressible when `text`): [`bakthat::storage::testing::bytes`] or
/// [`bakthat::storage::testing::text`].
pub fn bytes(seed: u64, len: usize, text: bool) -> Vec<u8> {
    if text {
        bakthat::storage::testing::text(seed, len)
    } else {
        bakthat::storage::testing::bytes(seed, len)
    }
}

/// A tree with every kind of entry the format supports.
pub fn rich_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("small.txt"), b"hello world\n").unwrap();
    fs::write(root.join("sub/big.bin"), bytes(1, 3_000_000, false)).unwrap();
    fs::write(root.join("sub/text.txt"), bytes(2, 2_500_000, true)).unwrap();
    let long = "l".repeat(120);
    fs::write(root.join("sub/deeper").join(&long), b"long name\n").unwrap();
    fs::set_permissions(root.join("small.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("sub/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(150), root.join("long-target-link")).unwrap();
    fs::hard_link(root.join("sub/text.txt"), root.join("hard.txt")).unwrap();
}

/// Runs a command and returns stdout, panicking with stderr on failure.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An error and its sources on one line, `a: b: c`, as the CLI prints them.
#[allow(unused_imports)]
pub use bakthat::error_chain;

pub mod backend;
pub mod cli;
pub mod client;
pub mod moto;
pub mod swift;
pub mod tls;
