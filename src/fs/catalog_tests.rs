//! The catalog's layout, names and change reports, without a filesystem.
use super::*;

const T: Epoch = 1_795_320_485; // 2026-11-22T040805Z

fn names_of(cat: &Catalog, ino: Ino) -> Vec<String> {
    let (_, list) = cat.listing(ino, 0, usize::MAX).unwrap();
    list.into_iter().map(|(n, _, _)| String::from_utf8(n).unwrap()).collect()
}

fn path(cat: &Catalog, p: &str) -> Ino {
    p.split('/').filter(|c| !c.is_empty()).fold(ROOT, |ino, c| cat.child(ino, c.as_bytes()).unwrap().unwrap())
}

fn catalog(rows: &[(i64, Epoch, &str, &str)], prev: Option<&Catalog>) -> (Catalog, Changes) {
    let mut b = Builder::default();
    for &(id, date, name, tags) in rows {
        b.push(id, date, name, tags, false);
    }
    Catalog::build(b, prev)
}

#[test]
fn rows_stay_small() {
    // A million backups are laid out from these: 32 bytes each, plus 12 bytes of directory lists.
    assert!(std::mem::size_of::<Row>() <= 32);
}

#[test]
fn same_second_backups_get_numbered_names_that_look_up_to_them() {
    let rows = [(1, T, "etc", "a b"), (2, T, "etc", "a"), (3, T + 1, "etc", ""), (4, T, "etc", "")];
    let (cat, _) = catalog(&rows, None);
    assert_eq!(
        names_of(&cat, path(&cat, "by-name/etc")),
        ["2026-11-22T040805Z", "2026-11-22T040805Z~2", "2026-11-22T040805Z~3", "2026-11-22T040806Z", "latest"]
    );
    let dir = path(&cat, "by-name/etc");
    let (_, list) = cat.listing(dir, 0, usize::MAX).unwrap();
    for (name, ino, _) in &list {
        assert_eq!(cat.child(dir, name), Some(Some(*ino)), "{}", String::from_utf8_lossy(name));
    }
    for missing in ["2026-11-22T040805Z~4", "2026-11-22T040805Z~1", "2026-11-22T040805Z~02", "2026-11-22T040807Z", "x"]
    {
        assert_eq!(cat.child(dir, missing.as_bytes()), Some(None), "{missing}");
    }
    let latest = cat.child(dir, b"latest").unwrap().unwrap();
    assert_eq!(cat.latest(latest).unwrap().0, b"2026-11-22T040806Z");
    assert_eq!(names_of(&cat, path(&cat, "by-tag")), ["a", "b"]);
    assert_eq!(names_of(&cat, path(&cat, "by-tag/a/etc")), ["2026-11-22T040805Z", "2026-11-22T040805Z~2"]);
    let day = path(&cat, "by-date/2026/11/22");
    assert_eq!(names_of(&cat, day), ["etc@040805", "etc@040805~2", "etc@040805~3", "etc@040806"]);
    let (_, list) = cat.listing(day, 0, usize::MAX).unwrap();
    for (name, ino, _) in &list {
        assert_eq!(cat.child(day, name), Some(Some(*ino)));
        let (row, parent) = cat.placement(*ino).unwrap();
        assert_eq!((cat.parent(*ino), parent), (Some(day), day));
        assert!(rows.iter().any(|r| r.0 == row.id));
    }
    // Each place of a backup is its own directory (a directory has one parent), found from its number alone.
    let by_tag_b = path(&cat, "by-tag/b/etc/2026-11-22T040805Z");
    assert_eq!(cat.placement(by_tag_b).unwrap().1, path(&cat, "by-tag/b/etc"));
    assert_ne!(by_tag_b, path(&cat, "by-tag/a/etc/2026-11-22T040805Z"));
}

#[test]
fn a_rebuild_keeps_numbers_and_says_what_changed() {
    let (a, _) = catalog(&[(1, T, "etc", "x"), (2, T + 86_400, "home", "")], None);
    let etc = path(&a, "by-name/etc");
    let home = path(&a, "by-name/home");
    let (b, changes) = catalog(&[(2, T + 86_400, "home", ""), (3, T + 5, "home", "")], Some(&a));
    assert_eq!(path(&b, "by-name/home"), home, "an unchanged path keeps its inode");
    assert_eq!(b.child(ROOT, b"by-name"), Some(Some(path(&a, "by-name"))));
    assert_eq!(b.child(etc, b"latest"), None, "a directory that is gone is not found");
    let by_name = path(&a, "by-name");
    assert!(changes.inodes.contains(&by_name) && changes.inodes.contains(&home) && changes.inodes.contains(&etc));
    assert!(changes.inodes.contains(&(LATEST_BASE + home)));
    assert!(changes.removed.contains(&(by_name, b"etc".to_vec())));
    assert!(changes.removed.contains(&(path(&a, "by-tag"), b"x".to_vec())));
    assert!(!changes.inodes.contains(&ROOT), "the root lists the same");
    let (_, none) = catalog(&[(2, T + 86_400, "home", ""), (3, T + 5, "home", "")], Some(&b));
    assert_eq!(none, Changes::default());
}

// Issue 16: a million backups must mount in 256 MiB. The catalog's share, measured per row on 100,000 rows: what it
// holds, its peak while being laid out, and the peak while a backup added is laid out beside the old catalog.
#[test]
fn the_catalog_of_many_rows_holds_under_96_bytes_a_row() {
    let n = 100_000i64;
    let row = |i: i64| (i + 1, 1_700_000_000 + i * 3600, format!("svc{:03}", i % 100), format!("t{}", i % 7));
    crate::test_heap::take_peak();
    let start = crate::test_heap::held();
    let mut b = Builder::default();
    for (id, date, name, tags) in (0..n).map(row) {
        b.push(id, date, &name, &tags, false);
    }
    let (cat, _) = Catalog::build(b, None);
    let peak = crate::test_heap::take_peak() - start;
    let held = crate::test_heap::held() - start;
    let mut again = Builder::from_catalog(&cat);
    let (id, date, name, tags) = row(n);
    again.push(id, date, &name, &tags, false);
    let (cat2, changes) = Catalog::build(again, Some(&cat));
    let peak_again = crate::test_heap::take_peak() - start;
    assert!(!changes.inodes.is_empty());
    assert_eq!(cat2.rows().len(), n as usize + 1);
    let per_row = |b: i64| b / n;
    assert!(per_row(held) <= 96, "{} bytes a row held", per_row(held));
    assert!(per_row(peak) <= 2 * 96, "{} bytes a row at the peak", per_row(peak));
    assert!(per_row(peak_again) <= 3 * 96, "{} bytes a row at the peak of a second layout", per_row(peak_again));
}
