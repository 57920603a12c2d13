//! Listing at scale and the kernel's caches: what the mount tells the kernel to forget when the inventory changes,
//! and backups' content let go under the listing budget and laid out again with the same inode numbers. Driven
//! without a kernel (see `tests.rs` for the helpers).

use std::collections::BTreeMap;

use super::tests::{names, requests, resolve, walk, Env};
use super::*;
use crate::storage::testing::counting;

fn ino_of(fs: &Fs, path: &str) -> Ino {
    resolve(fs, path).unwrap()
}

#[test]
fn cached_listings_are_invalidated_when_the_inventory_changes() {
    let env = Env::new();
    let first = env.backup(&env.source("first"), &["t"], None);
    let counting = counting(env.store());
    let fs = env.fs(counting.clone(), None).unwrap();
    let watcher = fs.watcher();
    let by_name = ino_of(&fs, "/by-name");
    let first_dir = ino_of(&fs, "/by-name/first");
    assert!(fs.opendir(by_name).unwrap().keep_cache);
    assert_eq!(watcher.next(Duration::ZERO).unwrap(), []);

    // A backup lands: the next open of /by-name must not reuse the kernel's listing, and the kernel is told.
    env.backup(&env.source("second"), &[], None);
    let o = fs.opendir(by_name).unwrap();
    assert!(o.cache_dir && !o.keep_cache, "a changed listing is dropped on open");
    assert!(fs.opendir(by_name).unwrap().keep_cache, "once");
    let told = watcher.next(Duration::ZERO).unwrap();
    assert!(told.contains(&Invalidation::Inode(by_name)), "{told:?}");
    assert!(!told.contains(&Invalidation::Inode(first_dir)), "unchanged directories keep their cache: {told:?}");
    assert_eq!(names(&fs, "/by-name"), ["first", "second"]);

    // A backup is deleted: its name goes from /by-name and /by-tag/t, each name the kernel may hold is dropped.
    env.ctx().inventory.set_deleted(&first.stored_filename, env.ctx().now()).unwrap();
    fs.opendir(ROOT).unwrap();
    let told = watcher.next(Duration::ZERO).unwrap();
    let by_tag = ino_of(&fs, "/by-tag");
    for (parent, name) in [(by_name, "first"), (by_tag, "t")] {
        assert!(told.contains(&Invalidation::Entry { parent, name: name.into() }), "{name}: {told:?}");
    }
    let ts = String::from_utf8(names::timestamp(first.backup_date)).unwrap();
    assert!(told.contains(&Invalidation::Entry { parent: first_dir, name: ts.into_bytes() }), "{told:?}");
    assert!(matches!(fs.lookup(by_name, b"first"), Err(FsError::NotFound)));
    assert!(matches!(fs.getattr(first_dir), Err(FsError::NotFound)));
    assert_eq!(requests(&counting), 0);
}

#[test]
fn content_is_let_go_under_the_listing_budget_and_comes_back_with_the_same_inodes() {
    let env = Env::new();
    let src = env.source("data");
    for _ in 0..3 {
        env.backup(&src, &[], None);
    }
    let counting = counting(env.store());
    let mut opts = MountOptions::new(env.path().join("cache"));
    opts.listing_budget = 1;
    let b = counting.clone();
    let open: OpenBackend = Arc::new(move |_| Ok(b.clone() as Arc<dyn crate::storage::Backend>));
    let fs = Fs::new(env.client(), open, None, opts).unwrap();
    let backups = names(&fs, "/by-name/data");
    assert_eq!(backups.len(), 4, "{backups:?}");
    let file = format!("/by-name/data/{}/data/sub/big.bin", backups[0]);
    let big = ino_of(&fs, &file);
    let before = fs.getattr(big).unwrap().attr;
    // Listing the others lets the first one go (the budget holds one backup at most)...
    let mut all = BTreeMap::new();
    walk(&fs, ino_of(&fs, "/by-name/data"), "", &mut all);
    assert!(fs.inner.tree().slots.len() <= 1, "{} backups held", fs.inner.tree().slots.len());
    // ...and the kernel's numbers still work: the same inode, the same attributes, the same path.
    assert_eq!(fs.getattr(big).unwrap().attr, before);
    assert_eq!(ino_of(&fs, &file), big);
    let mut again = BTreeMap::new();
    walk(&fs, ino_of(&fs, "/by-name/data"), "", &mut again);
    assert_eq!(all, again);
    let o = fs.open(big, false).unwrap();
    walk(&fs, ino_of(&fs, &format!("/by-name/data/{}", backups[2])), "", &mut BTreeMap::new());
    assert_eq!(requests(&counting), 0, "listing, laying out and letting go never reach the store");
    assert_eq!(fs.read(big, o.fh, 0, 4).unwrap().len(), 4, "an open file reads after its backup was let go");
}

/// An inventory of `n` sample backups (see [`crate::inventory::sample`]) and a mount of it.
fn sample_fs(env: &Env, n: i64, budget: usize) -> (Fs, Arc<crate::storage::metered::Metered>) {
    let rows: Vec<_> = (0..n).map(crate::inventory::sample::row).collect();
    env.ctx().inventory.insert_with_indexes(&rows).unwrap();
    let counting = counting(env.store());
    let mut opts = MountOptions::new(env.path().join("cache"));
    opts.listing_budget = budget;
    let b = counting.clone();
    let open: OpenBackend = Arc::new(move |_| Ok(b.clone() as Arc<dyn crate::storage::Backend>));
    (Fs::new(env.client(), open, None, opts).unwrap(), counting)
}

// Regression (issue 16): the budget charged ~1.8 KB for an expanded backup that held ~4.5 KB (its full row and
// metadata were not charged at all), so ten thousand expanded backups held far more than the budget said.
#[test]
fn the_listing_budget_charges_what_expanded_backups_hold() {
    let env = Env::new();
    let n = 300;
    let (fs, counting) = sample_fs(&env, n, 1 << 30);
    let by_name = ino_of(&fs, "/by-name");
    let before = crate::test_heap::held();
    walk(&fs, by_name, "", &mut BTreeMap::new());
    let held = crate::test_heap::held() - before;
    let t = fs.inner.tree();
    assert_eq!(t.slots.len() as i64, n, "every backup was laid out");
    let charged = t.used as i64;
    assert!(charged >= held, "charged {charged} bytes, held {held}");
    assert!(charged <= held + held / 2, "charged {charged} bytes, held only {held}");
    assert_eq!(requests(&counting), 0);
}

/// Path to inode of the virtual directories and backup directories under `ino`, `depth` levels down.
fn inodes(fs: &Fs, ino: Ino, prefix: &str, depth: usize, out: &mut BTreeMap<String, Ino>) {
    for e in fs.readdir(ino, 0).unwrap().into_iter().skip(2) {
        let p = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
        out.insert(p.clone(), e.ino);
        if depth > 1 && e.kind == Kind::Dir {
            inodes(fs, e.ino, &p, depth - 1, out);
        }
    }
}

fn virtual_inodes(fs: &Fs) -> BTreeMap<String, Ino> {
    let mut out = BTreeMap::new();
    for (dir, depth) in [("/by-name", 2), ("/by-tag", 3), ("/by-date", 4)] {
        inodes(fs, ino_of(fs, dir), dir, depth, &mut out);
    }
    out
}

// Issue 16: one backup added made the mount read every row of the inventory again (a million rows for one new
// backup). Now only the rows past the highest id it had are read when the others are unchanged; a deletion (or any
// update) still reads everything. Either way the directories that were there keep their inode numbers.
#[test]
fn a_new_backup_reads_only_the_new_rows_and_every_path_keeps_its_inode() {
    let env = Env::new();
    let (fs, counting) = sample_fs(&env, 200, 1 << 30);
    assert_eq!(fs.inner.tree().rows_read, 200);
    let before = virtual_inodes(&fs);

    let (added, index) = crate::inventory::sample::row(200);
    env.ctx().inventory.insert_with_indexes(&[(added.clone(), index)]).unwrap();
    fs.inner.refresh(true).unwrap();
    assert_eq!(fs.inner.tree().rows_read, 1, "only the new row is read");
    let after = virtual_inodes(&fs);
    for (path, ino) in &before {
        assert_eq!(after.get(path), Some(ino), "{path}");
    }
    let ts = String::from_utf8(names::timestamp(added.backup_date)).unwrap();
    let new_dir = format!("/by-name/{}/{ts}", added.filename);
    assert!(after.contains_key(&new_dir) && !before.contains_key(&new_dir), "{new_dir}");
    let new: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    // By name, by date, by tag, and the tag's first backup of that name: /by-tag/t4/svc000.
    assert_eq!(new.len(), 4, "{new:?}");
    assert!(after.contains_key("/by-tag/t4/svc000"), "{new:?}");
    assert_eq!(names(&fs, &format!("{new_dir}/{}", added.filename)).len(), 4, "its files are listed");

    let gone = crate::inventory::sample::row(7).0;
    env.ctx().inventory.set_deleted(&gone.stored_filename, env.ctx().now()).unwrap();
    fs.inner.refresh(true).unwrap();
    assert_eq!(fs.inner.tree().rows_read, 200, "a deletion reads every row again");
    let last = virtual_inodes(&fs);
    let gone_dir =
        format!("/by-name/{}/{}", gone.filename, String::from_utf8(names::timestamp(gone.backup_date)).unwrap());
    assert!(!last.contains_key(&gone_dir), "{gone_dir}");
    for (path, ino) in &after {
        assert!(last.get(path).is_none_or(|i| i == ino), "{path}");
    }
    assert_eq!(requests(&counting), 0);
}
