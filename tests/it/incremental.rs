//! Incremental chains (issue 15), through the library with a controlled clock and through GNU tar itself: each
//! step of a scripted change sequence (and of seeded random ones) restores, with `tar -x -G` applied in order and
//! with `bakthat restore`, to a tree equal to the source (contents, types, link targets, modes, mtimes, hard links).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bakthat::archive::Secret;
use bakthat::config::{Config, IncrementalConfig, Profile};
use bakthat::inventory::Inventory;
use bakthat::model::{BackupRecord, Compression};
use bakthat::ops::{self, BackupKind, BackupOptions, Ctx, OpsError, RestoreOptions, RotateOptions};
use bakthat::rotation::Policy;
use bakthat::storage::Op;

use crate::common::run;

/// 2026-11-01 03:00 UTC.
const START: i64 = 1_793_502_000;
const HOUR: i64 = 3600;

fn ctx(dir: &Path, inv: &str, clock: Arc<AtomicI64>, policy: Option<IncrementalConfig>) -> Ctx {
    ctx_with(dir, inv, clock, policy, None)
}

fn ctx_with(
    dir: &Path,
    inv: &str,
    clock: Arc<AtomicI64>,
    policy: Option<IncrementalConfig>,
    compression: Option<Compression>,
) -> Ctx {
    let mut config = Config::empty(&dir.join("bakthat.yml"));
    let profile =
        Profile { local_path: Some(dir.join("store")), incremental: policy, compression, ..Profile::default() };
    config.set_profile("default", profile);
    let mut ctx = Ctx::new(config, "default", Inventory::open(dir.join(inv)).unwrap()).unwrap();
    ctx.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    ctx
}

fn weekly() -> Option<IncrementalConfig> {
    Some(IncrementalConfig { full_every: Some("7D".into()), max_chain: Some(14), ..IncrementalConfig::default() })
}

/// Everything a restore must give back, per relative path: type, mode, size and content hash or link target,
/// mtime (not for symlinks, which neither side sets), and which paths share an inode.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, String> = HashMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, String>, inodes: &mut HashMap<u64, String>) {
    let meta = fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let desc = if meta.file_type().is_symlink() {
        format!("link -> {}", fs::read_link(p).unwrap().display())
    } else if meta.is_dir() {
        format!("dir {:o} mtime {}", meta.mode() & 0o7777, meta.mtime())
    } else {
        let data = fs::read(p).unwrap();
        let h = data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3));
        let link = if meta.nlink() > 1 {
            let first = inodes.entry(meta.ino()).or_insert_with(|| rel.clone());
            format!(" same inode as {first}")
        } else {
            String::new()
        };
        format!("file {:o} {} {h:x} mtime {}{link}", meta.mode() & 0o7777, data.len(), meta.mtime())
    };
    out.insert(rel, desc);
    if meta.is_dir() {
        let mut kids: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        kids.sort();
        for k in kids {
            walk(root, &k, out, inodes);
        }
    }
}

/// Asserts two trees are equal, with `diff -r --no-dereference` first (its output is the clearer message).
fn assert_same(expected: &Path, got: &Path, what: &str) {
    let diff = Command::new("diff").args(["-r", "--no-dereference"]).arg(expected).arg(got).output().unwrap();
    assert!(diff.status.success(), "{what}: diff -r says\n{}", String::from_utf8_lossy(&diff.stdout));
    assert_eq!(tree(expected), tree(got), "{what}: modes, mtimes or hard links differ");
}

fn set_mtime(p: &Path, secs: i64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64);
    fs::File::open(p).unwrap().set_modified(t).unwrap();
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn backup(c: &Ctx, src: &Path, kind: BackupKind, password: Option<&Arc<Secret>>) -> BackupRecord {
    let opts =
        BackupOptions { source: src.to_path_buf(), kind, password: password.cloned(), ..BackupOptions::default() };
    let out = ops::backup(c, &opts).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    out.record
}

fn restore(c: &Ctx, name: &str, to: &Path, password: Option<&Arc<Secret>>) -> Result<ops::RestoreOutcome, OpsError> {
    fs::create_dir_all(to).unwrap();
    let opts = RestoreOptions {
        name: name.to_string(),
        to: Some(to.to_path_buf()),
        password: password.cloned(),
        ..RestoreOptions::default()
    };
    ops::restore(c, &opts)
}

/// Extracts one stored archive with GNU tar's incremental semantics into `dir` (decrypting it with the standalone
/// `scripts/bakthat-decrypt` first when encrypted).
fn gnu_extract(store: &Path, rec: &BackupRecord, dir: &Path, password: Option<&str>) {
    let archive = store.join(rec.stored_filename.as_str());
    let plain = dir.with_extension("tgz");
    if rec.is_enc() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bakthat-decrypt");
        let out = Command::new("python3")
            .arg(script)
            .arg(&archive)
            .env("BAKTHAT_PASSWORD", password.unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "bakthat-decrypt: {}", String::from_utf8_lossy(&out.stderr));
        fs::write(&plain, out.stdout).unwrap();
    } else {
        fs::copy(&archive, &plain).unwrap();
    }
    let codec = if rec.stored_filename.as_str().contains(".tar.zst") { "--zstd" } else { "-z" };
    run(Command::new("tar").args(["-x", "-G", codec, "-f"]).arg(&plain).arg("-C").arg(dir));
    fs::remove_file(plain).unwrap();
}

/// The scripted change sequence: each step changes `src` (a directory named `site`) in one of the ways the issue
/// lists; the tree after each step is what a restore of that step's backup must give.
/// One change to the source tree.
type Step = Box<dyn Fn(&Path)>;

fn steps() -> Vec<Step> {
    let long = "n".repeat(200);
    let long2 = long.clone();
    vec![
        Box::new(move |s: &Path| {
            write(&s.join("a.txt"), b"first version\n");
            write(&s.join("sub/b.bin"), &bakthat::storage::testing::bytes(1, 300_000));
            write(&s.join("sub/deeper/c.txt"), b"c\n");
            fs::create_dir_all(s.join("e1/e2/e3/e4")).unwrap();
            write(&s.join("café/ünïcødé ☃.txt"), b"unicode\n");
            write(&s.join("long").join(&long).join("x".repeat(150)), b"long names\n");
            std::os::unix::fs::symlink("a.txt", s.join("link")).unwrap();
            write(&s.join("h1"), b"hard linked\n");
            fs::hard_link(s.join("h1"), s.join("sub/h2")).unwrap();
            write(&s.join("run.sh"), b"#!/bin/sh\n");
            fs::set_permissions(s.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        }),
        // Nothing changes.
        Box::new(|_: &Path| {}),
        // Add, and modify in place keeping the size.
        Box::new(|s: &Path| {
            write(&s.join("new.txt"), b"new\n");
            write(&s.join("a.txt"), b"second version\n");
        }),
        // Delete, rename in a directory, move across directories.
        Box::new(|s: &Path| {
            fs::remove_file(s.join("new.txt")).unwrap();
            fs::rename(s.join("sub/deeper/c.txt"), s.join("sub/deeper/c2.txt")).unwrap();
            fs::rename(s.join("sub/b.bin"), s.join("e1/b.bin")).unwrap();
        }),
        // file -> dir, dir -> symlink, symlink -> file.
        Box::new(|s: &Path| {
            fs::remove_file(s.join("run.sh")).unwrap();
            write(&s.join("run.sh/inside"), b"was a file\n");
            fs::remove_dir_all(s.join("sub/deeper")).unwrap();
            std::os::unix::fs::symlink("../a.txt", s.join("sub/deeper")).unwrap();
            fs::remove_file(s.join("link")).unwrap();
            write(&s.join("link"), b"was a symlink\n");
        }),
        // chmod only, touch only.
        Box::new(|s: &Path| {
            fs::set_permissions(s.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
            set_mtime(&s.join("e1/b.bin"), START - 86_400);
        }),
        // Hard links: a new link to an old file, and a link broken by replacing one side.
        Box::new(|s: &Path| {
            fs::hard_link(s.join("a.txt"), s.join("e1/a-again.txt")).unwrap();
            fs::remove_file(s.join("sub/h2")).unwrap();
            write(&s.join("sub/h2"), b"no longer linked\n");
        }),
        // A deleted directory tree, a new deep empty one, a directory renamed, a dir -> file.
        Box::new(move |s: &Path| {
            fs::remove_dir_all(s.join("long")).unwrap();
            fs::create_dir_all(s.join("z/y/x/w/v")).unwrap();
            fs::rename(s.join("café"), s.join("cafe-renamed")).unwrap();
            fs::remove_dir_all(s.join("e1/e2")).unwrap();
            write(&s.join("e1/e2"), long2.as_bytes());
        }),
    ]
}

/// Every step's backup restores exactly, by GNU tar (`tar -x -G` of each archive in order) and by bakthat.
fn chain_round_trips(password: Option<&str>, compression: Option<Compression>) {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    fs::create_dir(&src).unwrap();
    let clock = Arc::new(AtomicI64::new(START));
    let c = ctx_with(t.path(), "inv.sqlite", clock.clone(), weekly(), compression);
    let secret = password.map(|p| Arc::new(Secret::new(p.as_bytes())));
    let gnu = t.path().join("gnu");
    fs::create_dir(&gnu).unwrap();
    let mut stored = Vec::new();
    for (i, step) in steps().iter().enumerate() {
        step(&src);
        // Directories' mtimes as the steps left them would vary with the wall clock: pin them.
        for d in ["", "sub", "e1", "z"] {
            if src.join(d).is_dir() && !src.join(d).is_symlink() {
                set_mtime(&src.join(d), START - 1000 * i as i64);
            }
        }
        clock.store(START + i as i64 * HOUR, Ordering::SeqCst);
        let rec = backup(&c, &src, BackupKind::Policy, secret.as_ref());
        assert_eq!(rec.parent().is_some(), i > 0, "step {i}: {}", rec.stored_filename);
        assert_eq!(rec.stored_filename.parse().unwrap().incremental, i > 0);
        stored.push(rec.clone());
        gnu_extract(&t.path().join("store"), &rec, &gnu, password);
        assert_same(&src, &gnu.join("site"), &format!("step {i}: GNU tar -x -G of the chain in order"));
        let to = t.path().join(format!("r{i}"));
        let out = restore(&c, rec.stored_filename.as_str(), &to, secret.as_ref()).unwrap();
        assert_eq!(out.written, [to.join("site")]);
        assert_same(&src, &to.join("site"), &format!("step {i}: bakthat restore"));
    }
    // An unchanged tree stores little: the second backup is dumpdirs only.
    assert!(stored[1].size < 4096, "an incremental of an unchanged tree is {} bytes", stored[1].size);
    // Each backup still restores its own point in time (a restore of an older step, after later ones).
    let to = t.path().join("again");
    restore(&c, stored[2].stored_filename.as_str(), &to, secret.as_ref()).unwrap();
    assert!(to.join("site/new.txt").exists() && to.join("site/run.sh").is_file());
}

#[test]
fn gnu_tar_and_bakthat_restore_every_step_of_a_chain() {
    chain_round_trips(None, None);
}

#[test]
fn encrypted_chains_restore_with_gnu_tar_after_bakthat_decrypt() {
    chain_round_trips(Some("chain secret"), None);
}

#[test]
fn zstd_chains_restore_with_gnu_tar_zstd() {
    chain_round_trips(None, Some(Compression::Zstd));
}

/// A seeded generator of random change sequences (the property test): paths from a small alphabet so that
/// changes collide (a file replaced by a directory, a directory removed with what is in it, ...).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn path(&mut self, root: &Path) -> PathBuf {
        let depth = 1 + self.below(3);
        let mut p = root.to_path_buf();
        for _ in 0..depth {
            p.push(["a", "b", "c", "d"][self.below(4) as usize]);
        }
        p
    }
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).unwrap(),
        Ok(_) => fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

/// Makes the parent directories of `p`, replacing anything in the way.
fn make_parents(root: &Path, p: &Path) {
    let mut at = root.to_path_buf();
    for c in p.parent().unwrap().strip_prefix(root).unwrap().components() {
        at.push(c);
        if !fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
            remove_any(&at);
            fs::create_dir(&at).unwrap();
        }
    }
}

fn random_change(rng: &mut Rng, root: &Path, step: u64) {
    let p = rng.path(root);
    make_parents(root, &p);
    match rng.below(7) {
        0 | 1 => {
            remove_any(&p);
            fs::write(&p, bakthat::storage::testing::text(rng.next(), rng.below(3000) as usize)).unwrap();
        }
        2 => remove_any(&p),
        3 => {
            remove_any(&p);
            fs::create_dir(&p).unwrap();
        }
        4 => {
            remove_any(&p);
            std::os::unix::fs::symlink(format!("target-{step}"), &p).unwrap();
        }
        5 => {
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600 + (rng.below(2) as u32) * 0o44)).unwrap();
            }
        }
        _ => {
            let q = rng.path(root);
            if q != p && !q.starts_with(&p) && !p.starts_with(&q) && fs::symlink_metadata(&p).is_ok() {
                make_parents(root, &q);
                remove_any(&q);
                fs::rename(&p, &q).unwrap();
            }
        }
    }
}

/// Pins every directory's mtime (they change with the wall clock as the generator works).
fn pin_dir_mtimes(p: &Path, secs: i64) {
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if fs::symlink_metadata(&e).unwrap().is_dir() {
            pin_dir_mtimes(&e, secs);
        }
    }
    set_mtime(p, secs);
}

#[test]
fn random_change_sequences_round_trip_through_gnu_tar_and_bakthat() {
    for seed in [0x9e3779b97f4a7c15u64, 0x2545f4914f6cdd1d, 0x5851f42d4c957f2d] {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("r");
        fs::create_dir(&src).unwrap();
        let clock = Arc::new(AtomicI64::new(START));
        let c = ctx(t.path(), "inv.sqlite", clock.clone(), weekly());
        let gnu = t.path().join("gnu");
        fs::create_dir(&gnu).unwrap();
        let mut rng = Rng(seed);
        for step in 0..10 {
            for _ in 0..1 + rng.below(6) {
                random_change(&mut rng, &src, step);
            }
            pin_dir_mtimes(&src, START - step as i64);
            clock.store(START + step as i64 * HOUR, Ordering::SeqCst);
            let rec = backup(&c, &src, BackupKind::Policy, None);
            gnu_extract(&t.path().join("store"), &rec, &gnu, None);
            let what = format!("seed {seed:x} step {step}");
            assert_same(&src, &gnu.join("r"), &format!("{what}: GNU tar"));
            let to = t.path().join(format!("b{step}"));
            restore(&c, rec.stored_filename.as_str(), &to, None).unwrap();
            assert_same(&src, &to.join("r"), &format!("{what}: bakthat restore"));
        }
    }
}

/// A tree of `n` incompressible files of `size` bytes each (so each file sits in members of its own).
fn big_tree(src: &Path, n: u64, size: usize) {
    for i in 0..n {
        write(&src.join(format!("f{i}")), &bakthat::storage::testing::bytes(i + 100, size));
    }
}

#[test]
fn restore_reads_from_each_archive_only_the_members_the_tree_needs() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("data");
    big_tree(&src, 4, 2 << 20);
    let clock = Arc::new(AtomicI64::new(START));
    let mut c = ctx(t.path(), "inv.sqlite", clock.clone(), weekly());
    let full = backup(&c, &src, BackupKind::Policy, None);
    write(&src.join("f1"), &bakthat::storage::testing::bytes(7, 2 << 20));
    clock.store(START + HOUR, Ordering::SeqCst);
    let inc = backup(&c, &src, BackupKind::Policy, None);
    assert_eq!(inc.parent().as_ref(), Some(&full.stored_filename));
    // About one file's bytes: f1 only.
    assert!(inc.size < (2 << 20) + 100_000 && inc.size > 2 << 20, "{}", inc.size);
    let meter = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = meter.clone();
    c.store_layer = Some(Arc::new(move |inner| {
        let m = bakthat::storage::testing::counting(inner);
        seen.lock().unwrap().push(m.clone());
        m
    }));
    let to = t.path().join("out");
    restore(&c, "data", &to, None).unwrap();
    assert_same(&src, &to.join("data"), "restore of the chain");
    let meters = meter.lock().unwrap();
    let gets: u64 = meters.iter().map(|m| m.meter().count(Op::Get)).sum();
    let ranged: u64 = meters.iter().map(|m| m.meter().count(Op::GetRange)).sum();
    let bytes: u64 = meters.iter().map(|m| m.meter().totals().bytes_read).sum();
    assert_eq!(gets, 0, "no archive is read whole");
    assert!(ranged >= 2, "both archives are read: {ranged}");
    // f0, f2, f3 from the full (its stale f1 is not read) and f1 from the incremental: 4 files' worth, not 5.
    assert!(bytes < 4 * (2 << 20) + (1 << 20), "read {bytes} bytes for 4 files of 2 MiB");
}

/// `site` (two files) backed up at [`START`] under the weekly policy, then again an hour later with f0 changed: the
/// context, its clock, the full and the incremental.
fn small_chain(dir: &Path) -> (Ctx, Arc<AtomicI64>, BackupRecord, BackupRecord) {
    let src = dir.join("site");
    big_tree(&src, 2, 1000);
    let clock = Arc::new(AtomicI64::new(START));
    let c = ctx(dir, "inv.sqlite", clock.clone(), weekly());
    let full = backup(&c, &src, BackupKind::Policy, None);
    write(&src.join("f0"), b"changed");
    clock.store(START + HOUR, Ordering::SeqCst);
    let inc = backup(&c, &src, BackupKind::Policy, None);
    (c, clock, full, inc)
}

#[test]
fn a_broken_chain_is_an_error_naming_the_missing_backup() {
    let t = tempfile::tempdir().unwrap();
    let (c, _, full, inc) = small_chain(t.path());
    // The full's archive gone from the store, its row still there.
    let archive = t.path().join("store").join(full.stored_filename.as_str());
    let saved = fs::read(&archive).unwrap();
    fs::remove_file(&archive).unwrap();
    let to = t.path().join("out");
    let e = restore(&c, inc.stored_filename.as_str(), &to, None).unwrap_err();
    let line = bakthat::error_chain(&e);
    assert!(matches!(e, OpsError::MissingArchive { .. }), "{line}");
    assert!(line.contains(full.stored_filename.as_str()), "{line}");
    assert_eq!(fs::read_dir(&to).unwrap().count(), 0, "nothing restored");
    fs::write(&archive, saved).unwrap();
    // The full's row gone (another host deleted it, say).
    c.inventory.remove(&full.stored_filename).unwrap();
    let e = restore(&c, inc.stored_filename.as_str(), &to, None).unwrap_err();
    assert!(matches!(e, OpsError::BrokenChain { .. }), "{e}");
    assert!(e.to_string().contains(full.stored_filename.as_str()), "{e}");
    assert_eq!(fs::read_dir(&to).unwrap().count(), 0, "nothing restored");
}

#[test]
fn a_chain_continues_on_a_new_inventory_from_the_store_alone() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    big_tree(&src, 3, 1000);
    let clock = Arc::new(AtomicI64::new(START));
    let secret = Arc::new(Secret::new(b"pw"));
    let c = ctx(t.path(), "inv.sqlite", clock.clone(), weekly());
    let full = backup(&c, &src, BackupKind::Policy, Some(&secret));
    // A new machine: an empty inventory, rebuilt from the store's journal.
    let c2 = ctx(t.path(), "new.sqlite", clock.clone(), weekly());
    let journal = c2.stores().open(c2.destination(None)).unwrap();
    bakthat::sync::sync_store(&c2, journal.as_ref(), Some(&secret), true).unwrap();
    assert!(c2.inventory.get(&full.stored_filename).unwrap().unwrap().in_chain());
    write(&src.join("f1"), b"changed on the new machine");
    clock.store(START + HOUR, Ordering::SeqCst);
    let inc = backup(&c2, &src, BackupKind::Policy, Some(&secret));
    assert_eq!(inc.parent().as_ref(), Some(&full.stored_filename), "the chain continues");
    assert!(inc.size < 8000, "only f1 is stored again: {}", inc.size);
    let to = t.path().join("out");
    restore(&c2, "site", &to, Some(&secret)).unwrap();
    assert_same(&src, &to.join("site"), "restore on the new machine");
    // Without the password, the encrypted snapshot cannot be read: said so, nothing restored.
    let e = restore(&c2, "site", &t.path().join("nopw"), None).unwrap_err();
    assert!(bakthat::error_chain(&e).contains("password"), "{e}");
}

/// Two hosts backing up the same path into one shared store (one inventory through sync): each continues its own
/// chain; the other host's backup is never a parent (its snapshot has that machine's inodes, so everything would be
/// stored again, and each host's rotation would have to keep the other's backups).
#[test]
fn two_hosts_sharing_a_store_keep_their_own_chains() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    big_tree(&src, 3, 1000);
    let clock = Arc::new(AtomicI64::new(START));
    let mut a = ctx(t.path(), "inv.sqlite", clock.clone(), weekly());
    a.host = "host-a".into();
    let full_a = backup(&a, &src, BackupKind::Policy, None);
    let mut b = ctx(t.path(), "inv.sqlite", clock.clone(), weekly());
    b.host = "host-b".into();
    clock.store(START + HOUR, Ordering::SeqCst);
    let first_b = backup(&b, &src, BackupKind::Policy, None);
    assert_eq!(first_b.parent(), None, "host b starts its own chain");
    clock.store(START + 2 * HOUR, Ordering::SeqCst);
    let inc_a = backup(&a, &src, BackupKind::Policy, None);
    assert_eq!(inc_a.parent().as_ref(), Some(&full_a.stored_filename), "host a continues its own chain");
    clock.store(START + 3 * HOUR, Ordering::SeqCst);
    let inc_b = backup(&b, &src, BackupKind::Policy, None);
    assert_eq!(inc_b.parent().as_ref(), Some(&first_b.stored_filename), "host b continues its own chain");
}

#[test]
fn the_policy_starts_a_new_chain_after_full_every_or_max_chain() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    big_tree(&src, 1, 10);
    let clock = Arc::new(AtomicI64::new(START));
    let policy =
        Some(IncrementalConfig { full_every: Some("2D".into()), max_chain: Some(2), ..IncrementalConfig::default() });
    let c = ctx(t.path(), "inv.sqlite", clock.clone(), policy);
    let kinds: Vec<bool> = (0..8)
        .map(|i| {
            // Every 12 hours: max_chain (2) cuts chains at 3 backups; the 2-day age never comes first.
            clock.store(START + i * 12 * HOUR, Ordering::SeqCst);
            backup(&c, &src, BackupKind::Policy, None).parent().is_some()
        })
        .collect();
    assert_eq!(kinds, [false, true, true, false, true, true, false, true]);
    clock.store(START + 100 * HOUR, Ordering::SeqCst);
    assert!(backup(&c, &src, BackupKind::Full, None).parent().is_none(), "--full");
    clock.store(START + 101 * HOUR, Ordering::SeqCst);
    assert!(backup(&c, &src, BackupKind::Incremental, None).parent().is_some(), "--incremental");
    // full_every: a chain whose full is 2 days old ends.
    clock.store(START + 150 * HOUR, Ordering::SeqCst);
    assert!(backup(&c, &src, BackupKind::Policy, None).parent().is_none(), "the full is older than full_every");
    // Without a policy, backups stay full (0.6) unless --incremental.
    let plain = ctx(t.path(), "plain.sqlite", clock.clone(), None);
    let other = t.path().join("other");
    big_tree(&other, 1, 10);
    let r = backup(&plain, &other, BackupKind::Policy, None);
    assert!(!r.in_chain() && !t.path().join("store").join(format!("{}.snap", r.stored_filename)).exists());
}

#[test]
fn deleting_and_rotating_keep_chains_whole() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    big_tree(&src, 2, 100);
    let clock = Arc::new(AtomicI64::new(START));
    let policy =
        Some(IncrementalConfig { full_every: Some("7D".into()), max_chain: Some(100), ..IncrementalConfig::default() });
    let c = ctx(t.path(), "inv.sqlite", clock.clone(), policy);
    let mut recs = Vec::new();
    for day in 0..10 {
        clock.store(START + day * 86_400, Ordering::SeqCst);
        write(&src.join("f0"), format!("day {day}").as_bytes());
        recs.push(backup(&c, &src, BackupKind::Policy, None));
    }
    // Days 0 and 7 are fulls.
    let fulls: Vec<usize> = (0..10).filter(|&i| recs[i].parent().is_none()).collect();
    assert_eq!(fulls, [0, 7]);
    // Deleting a full that incrementals need is refused, in one line naming them.
    let e = ops::delete(&c, recs[7].stored_filename.as_str(), None, None).unwrap_err();
    assert!(matches!(e, OpsError::HasDependents { .. }), "{e}");
    assert!(e.to_string().contains(recs[9].stored_filename.as_str()) && !e.to_string().contains('\n'), "{e}");
    // Rotation keeping 2 days keeps days 8, 9 and what they need: 7.
    let opts = RotateOptions { policy: Some(Policy { days: 2, ..Policy::default() }), ..RotateOptions::default() };
    let plan = ops::rotate(&c, "site", &opts).unwrap();
    let kept: Vec<&str> = plan.iter().filter(|p| p.keep).map(|p| p.record.stored_filename.as_str()).collect();
    assert_eq!(
        kept,
        [recs[9].stored_filename.as_str(), recs[8].stored_filename.as_str(), recs[7].stored_filename.as_str()]
    );
    let seven = plan.iter().find(|p| p.record.stored_filename == recs[7].stored_filename).unwrap();
    assert_eq!(seven.reasons, [format!("needed by {}", recs[8].stored_filename)]);
    let to = t.path().join("out");
    restore(&c, "site", &to, None).unwrap();
    assert_same(&src, &to.join("site"), "the newest still restores after rotation");
    // delete_older_than 1 day: day 8 is older, but day 9 needs it.
    clock.store(START + 9 * 86_400 + HOUR, Ordering::SeqCst);
    let done = ops::delete_older_than(&c, "site", "1D", None, true, None).unwrap();
    let eight = done.iter().find(|p| p.record.stored_filename == recs[8].stored_filename).unwrap();
    assert!(eight.keep && eight.reasons == [format!("needed by {}", recs[9].stored_filename)], "{eight:?}");
    // --with-dependents deletes the chain, dependents first.
    let deleted = ops::delete_with(&c, recs[7].stored_filename.as_str(), None, None, true).unwrap();
    let names: Vec<&str> = deleted.iter().map(|r| r.stored_filename.as_str()).collect();
    assert_eq!(
        names,
        [recs[9].stored_filename.as_str(), recs[8].stored_filename.as_str(), recs[7].stored_filename.as_str()]
    );
    let left: Vec<String> = fs::read_dir(t.path().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("site."))
        .collect();
    assert!(left.is_empty(), "archives and sidecars are gone: {left:?}");
}

/// Cold storage: a restore reports as pending (exit 75) exactly the archives of the chain it needs, all at once.
#[test]
fn cold_chain_members_are_reported_pending_for_exactly_the_archives_needed() {
    let t = tempfile::tempdir().unwrap();
    let bucket = crate::common::moto::unique("incr");
    let yaml = format!(
        "default:\n{}  default_destination: s3\n  incremental: {{full_every: 7D, max_chain: 14}}\n",
        crate::common::moto::profile_yaml(&bucket)
    );
    fs::write(t.path().join("bakthat.yml"), yaml).unwrap();
    let config = Config::load(&t.path().join("bakthat.yml")).unwrap();
    let clock = Arc::new(AtomicI64::new(START));
    let mut c = Ctx::new(config, "default", Inventory::open(t.path().join("inv.sqlite")).unwrap()).unwrap();
    let now = clock.clone();
    c.clock = Arc::new(move || now.load(Ordering::SeqCst));
    let src = t.path().join("site");
    big_tree(&src, 2, 1000);
    let full = backup(&c, &src, BackupKind::Policy, None);
    // Every file changes: the newest tree no longer needs the full.
    big_tree(&src, 2, 1200);
    clock.store(START + HOUR, Ordering::SeqCst);
    let inc1 = backup(&c, &src, BackupKind::Policy, None);
    clock.store(START + 2 * HOUR, Ordering::SeqCst);
    let inc2 = backup(&c, &src, BackupKind::Policy, None);
    assert_eq!(inc2.parent().as_ref(), Some(&inc1.stored_filename));
    assert_eq!(inc1.parent().as_ref(), Some(&full.stored_filename));
    // Everything goes cold (one store object seen through every open).
    let cold: Arc<std::sync::OnceLock<Arc<bakthat::storage::testing::ColdStore>>> = Arc::default();
    let shared = cold.clone();
    c.store_layer = Some(Arc::new(move |inner| {
        shared.get_or_init(|| Arc::new(bakthat::storage::testing::ColdStore::new(inner))).clone()
    }));
    let to = t.path().join("out");
    let e = restore(&c, "site", &to, None).unwrap_err();
    assert_eq!(e.exit_code(), 75, "{e}");
    let OpsError::ChainPending { stored } = &e else { panic!("{e}") };
    assert_eq!(stored, inc1.stored_filename.as_str(), "only the archive holding the files is needed");
    assert_eq!(fs::read_dir(&to).unwrap().count(), 0);
    cold.get().unwrap().finish_retrieval();
    restore(&c, "site", &to, None).unwrap();
    assert_same(&src, &to.join("site"), "restore once the retrieval is done");
}

/// `ls`, `find` and `diff` of an incremental list the complete tree at its time (not only what its archive holds),
/// from the inventory alone.
#[test]
fn ls_find_and_diff_see_an_incremental_as_its_complete_tree() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    big_tree(&src, 3, 100);
    std::os::unix::fs::symlink("f0", src.join("link")).unwrap();
    let clock = Arc::new(AtomicI64::new(START));
    let mut c = ctx(t.path(), "inv.sqlite", clock.clone(), weekly());
    let full = backup(&c, &src, BackupKind::Policy, None);
    fs::remove_file(src.join("f2")).unwrap();
    write(&src.join("new.txt"), b"new");
    clock.store(START + HOUR, Ordering::SeqCst);
    let inc = backup(&c, &src, BackupKind::Policy, None);
    // No store request: everything comes from the inventory's copies.
    c.store_layer = Some(Arc::new(|_| panic!("ls, find and diff open no store")));
    let listing = ops::ls(&c, "site", None, None, None).unwrap();
    let paths: Vec<&str> = listing.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["site", "site/f0", "site/f1", "site/link", "site/new.txt"]);
    assert_eq!(listing.entries[1].size, 100);
    assert_eq!(listing.entries[3].link.as_deref(), Some("f0"));
    let (found, _) = ops::find_paths(&c, "*f1", Some("site"), None).unwrap();
    let holders: Vec<&str> = found.iter().map(|f| f.stored_filename.as_str()).collect();
    assert_eq!(holders, [full.stored_filename.as_str(), inc.stored_filename.as_str()], "f1 is in both points in time");
    let d = ops::diff(&c, full.stored_filename.as_str(), inc.stored_filename.as_str(), None).unwrap();
    let changes: Vec<String> = d.changes.iter().map(|c| format!("{} {}", c.change, c.path)).collect();
    assert!(
        changes.contains(&"+ site/new.txt".to_string()) && changes.contains(&"- site/f2".to_string()),
        "{changes:?}"
    );
    assert!(
        !changes.iter().any(|c| c.ends_with("/f0") || c.ends_with("/f1")),
        "unchanged files are unchanged: {changes:?}"
    );
}

/// The command line: `backup --incremental`, `show` (a mark, `--json` kind and parent), and `delete` refusing a
/// full that an incremental needs in one line, or deleting the chain with `--with-dependents`.
#[test]
fn the_command_line_marks_chains_and_refuses_to_break_them() {
    use crate::common::cli::{stored_name, Home};
    let h = Home::new(|d| format!("default:\n  local_path: {}\n", d.join("store").display()));
    let src = h.path("site");
    big_tree(&src, 2, 100);
    let src = src.to_str().unwrap();
    let full = stored_name(&h.ok(&["backup", src, "--prompt", "no"], None));
    write(&h.path("site/f0"), b"changed");
    let inc = stored_name(&h.ok(&["backup", src, "--prompt", "no", "--incremental"], None));
    assert!(!full.contains(".inc.") && !inc.contains(".inc."), "{full} {inc}");
    let rows = h.show(false);
    let row = |name: &str| rows.iter().find(|r| r["stored_filename"] == name).unwrap().clone();
    // The first backup was made without a policy: a plain full outside any chain, so --incremental started one.
    assert_eq!(row(&full)["parent"], serde_json::Value::Null);
    let first_inc = row(&inc);
    assert_eq!(first_inc["kind"], "full", "--incremental with nothing to continue from makes a chain's full");
    write(&h.path("site/f1"), b"changed too");
    let inc2 = stored_name(&h.ok(&["backup", src, "--prompt", "no", "--incremental"], None));
    let rows = h.show(false);
    assert!(inc2.ends_with(".inc.tgz"), "{inc2}");
    let second = rows.iter().find(|r| r["stored_filename"] == inc2.as_str()).unwrap();
    assert_eq!((second["kind"].as_str(), second["parent"].as_str()), (Some("incremental"), Some(inc.as_str())));
    let listing = h.ok(&["show"], None);
    assert!(listing.contains(&format!("{inc2} [incremental of {inc}]")), "{listing}");
    let out = h.run(&["delete", &inc], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&inc2) && err.contains("--with-dependents"), "{err}");
    let out = h.ok(&["delete", &inc, "--with-dependents"], None);
    assert!(out.contains(&format!("deleted {inc2}")) && out.contains(&format!("deleted {inc}")), "{out}");
    let to = h.path("out");
    h.ok(&["restore", "site", "--to", to.to_str().unwrap()], None);
    assert_eq!(fs::read(to.join("site/f0")).unwrap(), bakthat::storage::testing::bytes(100, 100), "the first full");
}

/// `row`'s inventory row rewritten by `change` (as a journal entry, a sync server or an old inventory could have it).
fn rewrite_row(c: &Ctx, row: &BackupRecord, change: impl FnOnce(&mut BackupRecord)) {
    let mut r = c.inventory.get(&row.stored_filename).unwrap().unwrap();
    change(&mut r);
    r.id = None;
    let index = c.inventory.get_index(&row.stored_filename).unwrap();
    let snapshot = c.inventory.get_snapshot(&row.stored_filename).unwrap();
    c.inventory.remove(&row.stored_filename).unwrap();
    c.inventory.insert(&r).unwrap();
    if let Some(i) = index {
        c.inventory.put_index(&row.stored_filename, &i).unwrap();
    }
    if let Some(s) = snapshot {
        c.inventory.put_snapshot(&row.stored_filename, &s).unwrap();
    }
}

/// Issue 15: a parent that cannot be this chain's (another name's backup, a later one, a loop, one in another store)
/// was followed: a restore of the incremental replayed another backup's snapshot onto it. Now each is one line
/// naming the link, and nothing is restored; a journal entry carrying such a parent is refused where it enters.
#[test]
fn a_parent_that_cannot_be_the_chains_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (site, other) = (t.path().join("site"), t.path().join("other"));
    big_tree(&site, 2, 1000);
    big_tree(&other, 2, 1000);
    let clock = Arc::new(AtomicI64::new(START));
    let c = ctx(t.path(), "inv.sqlite", clock.clone(), weekly());
    let full = backup(&c, &site, BackupKind::Policy, None);
    let theirs = backup(&c, &other, BackupKind::Policy, None);
    write(&site.join("f0"), b"changed");
    clock.store(START + HOUR, Ordering::SeqCst);
    let inc = backup(&c, &site, BackupKind::Policy, None);
    write(&site.join("f1"), b"changed again");
    clock.store(START + 2 * HOUR, Ordering::SeqCst);
    let inc2 = backup(&c, &site, BackupKind::Policy, None);
    let set_parent = |r: &mut BackupRecord, p: &BackupRecord| {
        r.metadata["parent"] = serde_json::json!(p.stored_filename.as_str());
    };
    let refused = |what: &str, want: &str| {
        let to = t.path().join(format!("out-{}", what.replace(' ', "-")));
        let e = restore(&c, inc2.stored_filename.as_str(), &to, None).unwrap_err();
        let line = bakthat::error_chain(&e);
        assert!(matches!(e, OpsError::BadParent { .. }), "{what}: {line}");
        assert!(line.contains(want) && !line.contains('\n'), "{what}: {line}");
        assert_eq!(fs::read_dir(&to).unwrap().count(), 0, "{what}: nothing restored");
    };

    rewrite_row(&c, &inc, |r| set_parent(r, &theirs));
    refused("another name", "not an earlier backup of the same name");
    // A loop: inc names inc2, which names inc.
    rewrite_row(&c, &inc, |r| set_parent(r, &inc2));
    refused("a later one", "not an earlier backup of the same name");
    rewrite_row(&c, &inc, |r| set_parent(r, &full));
    rewrite_row(&c, &full, |r| r.store = bakthat::model::StoreId::parse("local:/elsewhere").unwrap());
    refused("another store", "in another store");
    rewrite_row(&c, &full, |r| r.store = inc.store.clone());
    restore(&c, inc2.stored_filename.as_str(), &t.path().join("good"), None).unwrap();

    // Where such rows enter (sync, a sync server, an imported inventory): refused.
    let mut bad = inc2.clone();
    for (p, why) in [(&theirs, "same name"), (&inc2, "own parent")] {
        set_parent(&mut bad, p);
        let e = bad.check_names().unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
    set_parent(&mut bad, &inc);
    bad.check_names().unwrap();
}

/// Issue 15: a `.snap` read from the store was trusted in size (read whole into memory, then inflated without a
/// bound), kept in the inventory before it was checked (so a repaired object was never read again), and not tied to
/// its backup (another backup's `.snap` in its place was replayed). Each case below is one line and a full
/// restore of nothing; the good object afterwards restores.
#[test]
fn a_snap_that_is_truncated_huge_malformed_or_another_backups_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    let (c, clock, _, inc) = small_chain(t.path());
    write(&src.join("f1"), b"changed too");
    clock.store(START + 2 * HOUR, Ordering::SeqCst);
    let inc2 = backup(&c, &src, BackupKind::Policy, None);
    let snap = |r: &BackupRecord| t.path().join("store").join(format!("{}.snap", r.stored_filename));
    let good = fs::read(snap(&inc)).unwrap();
    let mut bomb = b"BKTSNP\x00\x02".to_vec();
    let mut gz = flate2::write::GzEncoder::new(&mut bomb, flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; 8 << 20]).unwrap();
    gz.finish().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 5].to_vec(), "truncated"),
        ("malformed", b"BKTSNP\x00\x02 not gzip at all".to_vec(), "does not inflate"),
        ("a gzip bomb", bomb, "gzip bomb"),
        ("another backup's", fs::read(snap(&inc2)).unwrap(), "belongs to another backup"),
    ];
    for (i, (what, bytes, want)) in cases.into_iter().enumerate() {
        fs::write(snap(&inc), &bytes).unwrap();
        // A new machine: the inventory rebuilt from the store, so the `.snap` objects are read from there.
        let c2 = ctx(t.path(), &format!("new{i}.sqlite"), clock.clone(), weekly());
        let journal = c2.stores().open(c2.destination(None)).unwrap();
        bakthat::sync::sync_store(&c2, journal.as_ref(), None, true).unwrap();
        let to = t.path().join(format!("out{i}"));
        let e = restore(&c2, inc2.stored_filename.as_str(), &to, None).unwrap_err();
        let line = bakthat::error_chain(&e);
        assert!(matches!(e, OpsError::BadSnapshot { .. }), "{what}: {line}");
        assert!(line.contains(want) && line.contains(inc.stored_filename.as_str()), "{what}: {line}");
        assert_eq!(fs::read_dir(&to).unwrap().count(), 0, "{what}: nothing restored");
        // Not kept: the repaired object is read again.
        fs::write(snap(&inc), &good).unwrap();
        restore(&c2, inc2.stored_filename.as_str(), &to, None).unwrap();
    }
    // Huge: refused after reading 64 MiB of it, not all of it (a sparse file, so the test writes nothing).
    fs::File::create(snap(&inc)).unwrap().set_len((64 << 20) + 1).unwrap();
    let c3 = ctx(t.path(), "huge.sqlite", clock.clone(), weekly());
    let journal = c3.stores().open(c3.destination(None)).unwrap();
    bakthat::sync::sync_store(&c3, journal.as_ref(), None, true).unwrap();
    let e = restore(&c3, inc2.stored_filename.as_str(), &t.path().join("huge"), None).unwrap_err();
    assert!(bakthat::error_chain(&e).contains("larger than 64 MiB"), "{}", bakthat::error_chain(&e));
}
