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
