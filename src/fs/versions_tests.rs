//! `/versions` (issue 15): every distinct version of a file across a name's backups, full and incremental, listed
//! with no store request and read from the archive holding each. Driven in kernel order without a kernel, as
//! `tests.rs` does; the backups' dates come from a clock the test sets, never from the wall clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::tests::{cat, names, requests, resolve};
use super::*;
use crate::client::Client;
use crate::config::{Config, IncrementalConfig, Profile};
use crate::inventory::Inventory;
use crate::ops::{self, BackupKind, BackupOptions};
use crate::storage::local::LocalStore;
use crate::storage::metered::Metered;
use crate::storage::testing::{bytes, counting};
use crate::storage::{Backend, Op};

pub(super) const T0: i64 = 1_793_502_000;

/// A profile with an incremental policy and a clock the test sets (`chain_tests.rs` uses it too).
pub(super) struct Setup {
    pub dir: tempfile::TempDir,
    pub client: Arc<Client>,
    pub clock: Arc<AtomicI64>,
}

impl Setup {
    /// A profile with an incremental policy, and a clock at [`T0`].
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::empty(&dir.path().join("bakthat.yml"));
        let policy = IncrementalConfig { full_every: Some("7D".into()), ..IncrementalConfig::default() };
        let profile =
            Profile { local_path: Some(dir.path().join("store")), incremental: Some(policy), ..Profile::default() };
        config.set_profile("default", profile);
        let mut ctx = Ctx::new(config, "default", Inventory::open(dir.path().join("inv.sqlite")).unwrap()).unwrap();
        let clock = Arc::new(AtomicI64::new(T0));
        let now = clock.clone();
        ctx.clock = Arc::new(move || now.load(Ordering::SeqCst));
        Setup { client: Arc::new(Client::from_ctx(ctx).unwrap()), dir, clock }
    }

    /// A backup `hours` after [`T0`].
    fn backup(&self, src: &std::path::Path, hours: i64, kind: BackupKind) -> crate::model::BackupRecord {
        self.clock.store(T0 + hours * 3600, Ordering::SeqCst);
        let opts = BackupOptions { source: src.to_path_buf(), kind, ..BackupOptions::default() };
        ops::backup(self.client.ctx(), &opts).unwrap().record
    }

    fn fs(&self, store: Arc<Metered>, budget: usize) -> Fs {
        let mut opts = MountOptions::new(self.dir.path().join("cache"));
        opts.refresh_interval = Duration::ZERO;
        opts.listing_budget = budget;
        let open: OpenBackend = Arc::new(move |_| Ok(store.clone() as Arc<dyn Backend>));
        Fs::new(self.client.clone(), open, None, opts).unwrap()
    }

    fn store(&self) -> Arc<Metered> {
        counting(Arc::new(LocalStore::open(&self.dir.path().join("store")).unwrap()))
    }
}

fn ts(hours: i64) -> String {
    String::from_utf8(names::timestamp(T0 + hours * 3600)).unwrap()
}

#[test]
fn versions_lists_each_distinct_version_across_full_and_incremental_backups_and_reads_each() {
    let s = Setup::new();
    let src = s.dir.path().join("site");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("kept.bin"), bytes(1, 1_500_000)).unwrap();
    std::fs::write(src.join("sub/doc.txt"), b"first").unwrap();
    std::fs::write(src.join("gone.txt"), b"deleted later").unwrap();
    // Each rewrite changes the size, so no version can look like the last one whatever the clock's second.
    s.backup(&src, 0, BackupKind::Policy);
    std::fs::write(src.join("sub/doc.txt"), b"second").unwrap();
    std::fs::remove_file(src.join("gone.txt")).unwrap();
    let inc = s.backup(&src, 1, BackupKind::Policy);
    assert!(inc.parent().is_some(), "an incremental");
    std::fs::write(src.join("sub/doc.txt"), b"third!!").unwrap();
    s.backup(&src, 2, BackupKind::Policy);
    // A new chain's full holds every file again: the same versions, nothing new.
    s.backup(&src, 3, BackupKind::Full);

    let store = s.store();
    let fs = s.fs(store.clone(), 64 << 20);
    assert_eq!(names(&fs, "/"), ["by-date", "by-name", "by-tag", "incoming", "versions"]);
    assert_eq!(names(&fs, "/versions"), ["site"]);
    assert_eq!(names(&fs, "/versions/site/site"), ["gone.txt", "kept.bin", "sub"]);
    assert_eq!(names(&fs, "/versions/site/site/sub/doc.txt"), [ts(0), ts(1), ts(2)]);
    assert_eq!(names(&fs, "/versions/site/site/kept.bin"), [ts(0)], "unchanged: one version");
    assert_eq!(names(&fs, "/versions/site/site/gone.txt"), [ts(0)]);
    let v = resolve(&fs, &format!("/versions/site/site/sub/doc.txt/{}", ts(1))).unwrap();
    let attr = fs.getattr(v).unwrap().attr;
    assert_eq!((attr.kind, attr.size), (Kind::File, 6));
    assert_eq!(fs.getattr(resolve(&fs, "/versions/site/site/sub/doc.txt").unwrap()).unwrap().attr.kind, Kind::Dir);
    assert_eq!(requests(&store), 0, "listing /versions makes no store request");

    for (h, want) in [(0, &b"first"[..]), (1, b"second"), (2, b"third!!")] {
        assert_eq!(cat(&fs, &format!("/versions/site/site/sub/doc.txt/{}", ts(h))).unwrap(), want);
    }
    assert_eq!(cat(&fs, &format!("/versions/site/site/kept.bin/{}", ts(0))).unwrap(), bytes(1, 1_500_000));
    assert_eq!(cat(&fs, &format!("/versions/site/site/gone.txt/{}", ts(0))).unwrap(), b"deleted later");
    assert_eq!(store.meter().count(Op::Get), 0, "ranged reads only");
    assert!(matches!(fs.open(v, true), Err(FsError::ReadOnly)));
    let doc = resolve(&fs, "/versions/site/site/sub/doc.txt").unwrap();
    assert!(!fs.opendir(doc).unwrap().cache_dir, "a view changes with its backups: the kernel does not keep it");

    // A backup made while mounted adds a version; the others keep their inode numbers.
    std::fs::write(src.join("sub/doc.txt"), b"fourth!!!").unwrap();
    s.backup(&src, 4, BackupKind::Policy);
    assert_eq!(names(&fs, "/versions/site/site/sub/doc.txt"), [ts(0), ts(1), ts(2), ts(4)]);
    assert_eq!(resolve(&fs, &format!("/versions/site/site/sub/doc.txt/{}", ts(1))).unwrap(), v);
    assert_eq!(cat(&fs, &format!("/versions/site/site/sub/doc.txt/{}", ts(4))).unwrap(), b"fourth!!!");
}

#[test]
fn a_view_let_go_under_the_listing_budget_comes_back_with_the_same_inodes() {
    let s = Setup::new();
    let (a, b) = (s.dir.path().join("a"), s.dir.path().join("b"));
    for (src, text) in [(&a, "alpha"), (&b, "beta")] {
        std::fs::create_dir_all(src).unwrap();
        std::fs::write(src.join("f.txt"), text).unwrap();
    }
    s.backup(&a, 0, BackupKind::Policy);
    s.backup(&b, 1, BackupKind::Policy);
    std::fs::write(a.join("f.txt"), "alpha, longer").unwrap();
    s.backup(&a, 2, BackupKind::Policy);

    let store = s.store();
    let fs = s.fs(store.clone(), 1);
    let path = format!("/versions/a/a/f.txt/{}", ts(2));
    let v = resolve(&fs, &path).unwrap();
    let before = fs.getattr(v).unwrap().attr;
    assert_eq!(requests(&store), 0);
    let o = fs.open(v, false).unwrap();
    // Laying out b's view lets a's go (a budget of one byte keeps only the view in use).
    assert_eq!(names(&fs, "/versions/b/b/f.txt"), [ts(1)]);
    assert!(fs.inner.tree().versions.get(resolve(&fs, "/versions/a").unwrap()).is_none(), "a's view was let go");
    assert_eq!(fs.getattr(v).unwrap().attr, before, "laid out again with the same numbers");
    assert_eq!(fs.read(v, o.fh, 0, 100).unwrap(), b"alpha, longer");
    fs.release(o.fh).unwrap();
    assert_eq!(resolve(&fs, &path).unwrap(), v);
    assert_eq!(store.meter().count(Op::Get), 0, "ranged reads only");
}
