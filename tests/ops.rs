//! The operations layer driven as a library with a controlled clock: rotation and delete_older_than over months
//! of simulated backups, and the inventory/store invariant.

use std::fs;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bakthat::config::{Config, Profile, RotationConfig};
use bakthat::inventory::Inventory;
use bakthat::ops::{self, BackupOptions, Ctx, RotateOptions};

const DAY: i64 = 86_400;
/// 2013-01-01 03:00 UTC, as in the grandfatherson example.
const START: i64 = 1_357_009_200;

fn ctx(dir: &std::path::Path, clock: Arc<AtomicI64>, rotation: Option<RotationConfig>) -> Ctx {
    let mut config = Config::empty(&dir.join("bakthat.yml"));
    let profile = Profile { local_path: Some(dir.join("store")), rotation, ..Profile::default() };
    config.set_profile("default", profile);
    let mut ctx = Ctx::new(config, "default", Inventory::open(dir.join("inv.sqlite")).unwrap()).unwrap();
    ctx.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    ctx
}

fn objects(dir: &std::path::Path) -> usize {
    fs::read_dir(dir.join("store")).unwrap().count()
}

#[test]
fn rotation_keeps_the_grandfather_father_son_set_and_deletes_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("db");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("dump.sql"), b"select 1;").unwrap();
    let clock = Arc::new(AtomicI64::new(START));
    let policy = RotationConfig {
        days: Some(7),
        weeks: Some(4),
        months: Some(3),
        first_week_day: Some(5),
        ..RotationConfig::default()
    };
    let c = ctx(t.path(), clock.clone(), Some(policy));
    for day in 0..200 {
        clock.store(START + day * DAY, Ordering::SeqCst);
        ops::backup(&c, &BackupOptions { source: src.clone(), ..BackupOptions::default() }).unwrap();
    }
    // Another set whose name starts the same must never be touched (0.6 matched substrings).
    let other = t.path().join("db2");
    fs::create_dir(&other).unwrap();
    ops::backup(&c, &BackupOptions { source: other, ..BackupOptions::default() }).unwrap();
    assert_eq!(objects(t.path()), 2 * 201);
    // now = 2013-07-19 10:00, the reference example.
    clock.store(START + 199 * DAY + 7 * 3600, Ordering::SeqCst);
    let dry = ops::rotate(&c, "db", &RotateOptions { dry_run: true, ..RotateOptions::default() }).unwrap();
    assert_eq!(dry.len(), 200);
    assert_eq!(dry.iter().filter(|p| p.keep).count(), 13);
    assert_eq!(objects(t.path()), 2 * 201, "a dry run deletes nothing");
    assert!(dry[0].keep && dry[0].reasons.iter().any(|r| r.contains("newest")), "{:?}", dry[0]);
    assert!(dry.iter().filter(|p| !p.keep).all(|p| p.reasons.len() == 1));
    let done = ops::rotate(&c, "db", &RotateOptions::default()).unwrap();
    let kept: Vec<String> = done.iter().filter(|p| p.keep).map(|p| p.record.stored_filename.to_string()).collect();
    let dates: Vec<&str> = kept.iter().map(|k| &k[3..11]).collect();
    assert_eq!(
        dates,
        [
            "20130719", "20130718", "20130717", "20130716", "20130715", "20130714", "20130713", "20130706", "20130701",
            "20130629", "20130622", "20130601", "20130501"
        ]
    );
    assert_eq!(objects(t.path()), 2 * (13 + 1), "deleted archives and their index sidecars are gone");
    let live = ops::show(&c, &ops::ShowQuery::default()).unwrap();
    assert_eq!(live.len(), 14);
    assert!(live.iter().any(|r| r.filename == "db2"));
}

#[test]
fn delete_older_than_matches_the_name_exactly() {
    let t = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(START));
    let c = ctx(t.path(), clock.clone(), None);
    for name in ["foo", "foobar"] {
        let d = t.path().join(name);
        fs::create_dir(&d).unwrap();
        for day in 0..10 {
            clock.store(START + day * DAY, Ordering::SeqCst);
            ops::backup(&c, &BackupOptions { source: d.clone(), ..BackupOptions::default() }).unwrap();
        }
    }
    clock.store(START + 10 * DAY, Ordering::SeqCst);
    let planned = ops::delete_older_than(&c, "foo", "5D", None, true).unwrap();
    assert_eq!(planned.len(), 5, "backups of days 0-4 are older than 5 days");
    assert!(planned.iter().all(|p| p.record.filename == "foo"));
    let done = ops::delete_older_than(&c, "foo", "5D", None, false).unwrap();
    assert_eq!(done.len(), 5);
    let left = ops::show(&c, &ops::ShowQuery::default()).unwrap();
    assert_eq!(left.iter().filter(|r| r.filename == "foo").count(), 5);
    assert_eq!(left.iter().filter(|r| r.filename == "foobar").count(), 10);
    assert!(ops::delete_older_than(&c, "foo", "", None, true).is_err(), "an empty interval is refused");
}

#[test]
fn a_failed_upload_leaves_no_row_and_no_object() {
    let t = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(START));
    let c = ctx(t.path(), clock, None);
    let src = t.path().join("gone");
    let err = ops::backup(&c, &BackupOptions { source: src, ..BackupOptions::default() }).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(ops::show(&c, &ops::ShowQuery::default()).unwrap().is_empty());
}

#[test]
fn two_backups_in_one_second_get_distinct_names() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("x");
    fs::create_dir(&src).unwrap();
    let clock = Arc::new(AtomicI64::new(START));
    let c = ctx(t.path(), clock, None);
    let a = ops::backup(&c, &BackupOptions { source: src.clone(), ..BackupOptions::default() }).unwrap();
    let b = ops::backup(&c, &BackupOptions { source: src, ..BackupOptions::default() }).unwrap();
    assert_ne!(a.record.stored_filename, b.record.stored_filename);
    assert_eq!(b.record.backup_date, a.record.backup_date + 1);
}
