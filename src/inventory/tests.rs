use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::json;

use super::*;
use crate::model::StoredName;

fn rec(name: &str, date: Epoch, backend: &str, tags: &str) -> BackupRecord {
    BackupRecord {
        id: None,
        backend: backend.parse().unwrap(),
        backend_hash: Some(format!("hash-{backend}")),
        backup_date: date,
        filename: name.into(),
        is_deleted: false,
        last_updated: date,
        metadata: json!({"is_enc": true, "client": "host1"}),
        size: 1234,
        stored_filename: StoredName::new(name, date, Some(crate::model::Compression::Gzip), true),
        tags: tags.into(),
        store: Default::default(),
    }
}

fn names(rows: &[BackupRecord]) -> Vec<&str> {
    rows.iter().map(|r| r.stored_filename.as_str()).collect()
}

fn sn(s: &str) -> StoredName {
    StoredName::from_key(s)
}

const D: Epoch = 1_795_000_000;

#[test]
fn inventory_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Inventory>();
}

#[test]
fn insert_get_round_trip_and_duplicate() {
    let inv = Inventory::open_in_memory().unwrap();
    let mut r = rec("mydir", D, "s3", "daily db");
    r.metadata = json!({"is_enc": true, "client": "h", "enc": "v1", "nested": {"a": [1, 2]}});
    r.size = u64::try_from(i64::MAX).unwrap();
    let id = inv.insert(&r).unwrap();
    let got = inv.get(&r.stored_filename).unwrap().unwrap();
    assert_eq!(got, BackupRecord { id: Some(id), ..r.clone() });
    assert!(inv.get(&sn("nope")).unwrap().is_none());

    // Incoming ids are ignored; the stored name is what is unique.
    let mut dup = r.clone();
    dup.id = Some(999);
    match inv.insert(&dup) {
        Err(InventoryError::Duplicate(s)) => assert_eq!(s, r.stored_filename),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let host: Option<String> =
        inv.conn().query_row("SELECT host FROM backups WHERE id = ?1", [id], |row| row.get(0)).unwrap();
    assert_eq!(host.as_deref(), Some("h"));
}

#[test]
fn size_beyond_i64_is_an_error_not_a_wrap() {
    let inv = Inventory::open_in_memory().unwrap();
    let mut r = rec("big", D, "s3", "");
    r.size = u64::MAX;
    assert!(matches!(inv.insert(&r), Err(InventoryError::Sqlite(_))));
}

#[test]
fn profile_is_recorded_and_filters_search() {
    let inv = Inventory::open_in_memory().unwrap();
    let a = rec("a", D, "s3", "");
    let b = rec("b", D + 1, "s3", "");
    inv.insert_for_profile(&a, Some("work")).unwrap();
    inv.insert(&b).unwrap();
    assert_eq!(inv.profile_of(&a.stored_filename).unwrap().as_deref(), Some("work"));
    assert_eq!(inv.profile_of(&b.stored_filename).unwrap(), None);
    let q = Query { profile: Some("work".into()), ..Query::default() };
    assert_eq!(names(&inv.search(&q).unwrap()), vec![a.stored_filename.as_str()]);
}

#[test]
fn metadata_reads_python2_json_and_keeps_raw_text() {
    let inv = Inventory::open_in_memory().unwrap();
    {
        let conn = inv.conn();
        conn.execute_batch(
            r#"INSERT INTO backups (backend, backend_hash, backup_date, filename, is_deleted, last_updated, metadata,
                 size, stored_filename, tags)
               VALUES ('s3', NULL, 1, 'p', 0, 1, '{"is_enc": true, "client": "h"}', 5, 'p.20200101000000.tgz.enc', ''),
                      ('s3', NULL, 2, 'q', 0, 2, 'not json {', 5, 'q.20200101000000.tgz', '');"#,
        )
        .unwrap();
    }
    let p = inv.get(&sn("p.20200101000000.tgz.enc")).unwrap().unwrap();
    assert_eq!(p.metadata, json!({"is_enc": true, "client": "h"}));
    assert!(p.is_enc());
    let q = inv.get(&sn("q.20200101000000.tgz")).unwrap().unwrap();
    assert_eq!(q.metadata, Value::String("not json {".into()));
    // Writing the raw string back and reading it again gives the same value.
    let mut q2 = q.clone();
    q2.stored_filename = sn("q2.20200101000000.tgz");
    inv.insert(&q2).unwrap();
    assert_eq!(inv.get(&q2.stored_filename).unwrap().unwrap().metadata, q.metadata);
}

#[test]
fn search_text_is_literal_not_a_wildcard() {
    let inv = Inventory::open_in_memory().unwrap();
    for (i, n) in ["a*b", "axb", "a?c", "abc", "50%off", "50xoff", "my_dir", "myxdir", "[x]", "x"].iter().enumerate() {
        inv.insert(&rec(n, D + i as i64, "s3", "")).unwrap();
    }
    let find = |t: &str| -> Vec<String> {
        let q = Query { text: Some(t.into()), ..Query::default() };
        inv.search(&q).unwrap().into_iter().map(|r| r.filename).collect()
    };
    assert_eq!(find("a*b"), vec!["a*b"]);
    assert_eq!(find("a?c"), vec!["a?c"]);
    assert_eq!(find("%"), vec!["50%off"]);
    assert_eq!(find("y_d"), vec!["my_dir"]);
    assert_eq!(find("[x]"), vec!["[x]"]);
    assert_eq!(find("*"), vec!["a*b"]);
    assert!(find("ABC").is_empty(), "case-sensitive like 0.6's GLOB");
    // Substring of the stored name too (the date component).
    assert_eq!(find(&date_component_of(D + 3)), vec!["abc"]);
}

fn date_component_of(e: Epoch) -> String {
    crate::model::date_component(e)
}

// Regression for 0.6 §14.6: `foo` selected `foobar` backups (GLOB '*foo*') in delete_older_than/rotate.
#[test]
fn exact_name_never_matches_a_longer_name() {
    let inv = Inventory::open_in_memory().unwrap();
    inv.insert(&rec("foo", D, "s3", "")).unwrap();
    inv.insert(&rec("foobar", D + 1, "s3", "")).unwrap();
    inv.insert(&rec("xfoo", D + 2, "s3", "")).unwrap();
    let q = Query { exact_name: Some("foo".into()), ..Query::default() };
    let got = inv.search(&q).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].filename, "foo");
    let q = Query { exact_name: Some("fo".into()), ..Query::default() };
    assert!(inv.search(&q).unwrap().is_empty());
}

// Regression for 0.6 §14.5: with several tags only the last one filtered, and as a substring.
#[test]
fn tags_match_all_and_whole_words() {
    let inv = Inventory::open_in_memory().unwrap();
    inv.insert(&rec("both", D, "s3", "daily db")).unwrap();
    inv.insert(&rec("daily", D + 1, "s3", "daily")).unwrap();
    inv.insert(&rec("db", D + 2, "s3", "db")).unwrap();
    inv.insert(&rec("dbx", D + 3, "s3", "dbx daily")).unwrap();
    inv.insert(&rec("tabs", D + 4, "s3", "db\tdaily  extra")).unwrap();
    let find = |tags: &[&str]| -> Vec<String> {
        let q = Query { tags: tags.iter().map(|t| t.to_string()).collect(), ..Query::default() };
        inv.search(&q).unwrap().into_iter().map(|r| r.filename).collect()
    };
    assert_eq!(find(&["daily", "db"]), vec!["tabs", "both"]);
    assert_eq!(find(&["db daily"]), vec!["tabs", "both"], "one entry with two words means both");
    assert_eq!(find(&["db"]), vec!["tabs", "db", "both"]);
    assert!(find(&["d"]).is_empty(), "no substring match");
    assert!(find(&["daily", "weekly"]).is_empty());
    assert_eq!(find(&[]).len(), 5);
}

#[test]
fn deleted_rows_are_hidden_unless_asked() {
    let inv = Inventory::open_in_memory().unwrap();
    let a = rec("a", D, "s3", "");
    let b = rec("a", D + 10, "s3", "");
    inv.insert(&a).unwrap();
    inv.insert(&b).unwrap();
    inv.set_deleted(&b.stored_filename, D + 20).unwrap();
    let q = Query { exact_name: Some("a".into()), ..Query::default() };
    assert_eq!(names(&inv.search(&q).unwrap()), vec![a.stored_filename.as_str()]);
    let q = Query { include_deleted: true, ..q };
    assert_eq!(names(&inv.search(&q).unwrap()), vec![b.stored_filename.as_str(), a.stored_filename.as_str()]);
    let got = inv.get(&b.stored_filename).unwrap().unwrap();
    assert!(got.is_deleted);
    assert_eq!(got.last_updated, D + 20);
    assert!(matches!(inv.set_deleted(&sn("unknown"), 1), Err(InventoryError::NotFound(_))));
}

#[test]
fn search_filters_backends_hash_age_and_orders_newest_first() {
    let inv = Inventory::open_in_memory().unwrap();
    let s3 = rec("x", D, "s3", "");
    let gl = rec("y", D + 5, "glacier", "");
    let sw = rec("z", D + 5, "swift", "");
    let local = rec("w", D + 9, "local", "");
    for r in [&s3, &gl, &sw, &local] {
        inv.insert(r).unwrap();
    }
    let all = inv.search(&Query::default()).unwrap();
    // Same backup_date: by stored name, descending (the same order on every host, whatever the local row ids).
    assert_eq!(
        names(&all),
        vec![
            local.stored_filename.as_str(),
            sw.stored_filename.as_str(),
            gl.stored_filename.as_str(),
            s3.stored_filename.as_str()
        ]
    );
    let q = Query { backends: vec![Destination::S3, Destination::Swift], ..Query::default() };
    assert_eq!(names(&inv.search(&q).unwrap()), vec![sw.stored_filename.as_str(), s3.stored_filename.as_str()]);
    let q = Query { backend_hash: Some("hash-glacier".into()), ..Query::default() };
    assert_eq!(names(&inv.search(&q).unwrap()), vec![gl.stored_filename.as_str()]);
    let q = Query { older_than: Some(D + 5), ..Query::default() };
    assert_eq!(names(&inv.search(&q).unwrap()), vec![s3.stored_filename.as_str()]);
    let q = Query { older_than: Some(D + 6), backends: vec![Destination::Glacier], ..Query::default() };
    assert_eq!(names(&inv.search(&q).unwrap()), vec![gl.stored_filename.as_str()]);
}

#[test]
fn newest_prefers_stored_name_then_exact_name_then_safe_prefix() {
    let inv = Inventory::open_in_memory().unwrap();
    let old = rec("mydir", D, "s3", "");
    let new = rec("mydir", D + 100, "s3", "");
    let newer_deleted = rec("mydir", D + 200, "s3", "");
    let other_backend = rec("mydir", D + 300, "glacier", "");
    let foobar = rec("foobar", D + 400, "s3", "");
    for r in [&old, &new, &newer_deleted, &other_backend, &foobar] {
        inv.insert(r).unwrap();
    }
    inv.set_deleted(&newer_deleted.stored_filename, D + 500).unwrap();

    let n = |q: &str, b: Option<&str>| {
        inv.newest(q, b.map(|b| b.parse().unwrap())).unwrap().map(|r| r.stored_filename.to_string())
    };
    assert_eq!(n(old.stored_filename.as_str(), None), Some(old.stored_filename.to_string()));
    assert_eq!(n(old.stored_filename.as_str(), Some("glacier")), None);
    assert_eq!(n("mydir", Some("s3")), Some(new.stored_filename.to_string()), "deleted rows are skipped");
    assert_eq!(n("mydir", None), Some(other_backend.stored_filename.to_string()));
    assert_eq!(n(newer_deleted.stored_filename.as_str(), None), None, "an exact deleted name is not offered");
    // Prefix of a stored name, literal and past the name.
    let prefix = format!("mydir.{}", date_component_of(D));
    assert_eq!(n(&prefix, Some("s3")), Some(old.stored_filename.to_string()));
    assert_eq!(n("mydir.", Some("s3")), Some(new.stored_filename.to_string()));
    // 0.6 §14.6: `foo` must not select `foobar`, not even through the prefix fallback.
    assert_eq!(n("foo", None), None);
    assert_eq!(n("fooba", None), None);
    assert_eq!(n("foobar", None), Some(foobar.stored_filename.to_string()));
    assert_eq!(n("my*", None), None);
    assert_eq!(n("", None), None);
}

#[test]
fn newest_prefix_handles_pre_04_names_without_dot() {
    let inv = Inventory::open_in_memory().unwrap();
    let mut r = rec("name", D, "s3", "");
    r.stored_filename = sn("name20120927093000.tgz");
    inv.insert(&r).unwrap();
    assert_eq!(inv.newest("name2012", None).unwrap().unwrap().stored_filename, r.stored_filename);
    assert_eq!(inv.newest("nam", None).unwrap(), None);
}

#[test]
fn remove_and_changed_since() {
    let inv = Inventory::open_in_memory().unwrap();
    let a = rec("a", D, "s3", "");
    let b = rec("b", D + 10, "swift", "");
    let c = rec("c", D + 20, "local", "");
    for r in [&a, &b, &c] {
        inv.insert(r).unwrap();
    }
    inv.set_deleted(&a.stored_filename, D + 30).unwrap();
    let changed = inv.changed_since(D + 10).unwrap();
    assert_eq!(
        names(&changed),
        vec![b.stored_filename.as_str(), c.stored_filename.as_str(), a.stored_filename.as_str()],
        "deleted and all backends included, >= is inclusive"
    );
    assert_eq!(inv.changed_since(0).unwrap().len(), 3);
    assert!(inv.remove(&b.stored_filename).unwrap());
    assert!(!inv.remove(&b.stored_filename).unwrap());
    assert!(inv.get(&b.stored_filename).unwrap().is_none());
    assert_eq!(inv.changed_since(0).unwrap().len(), 2);
}

#[test]
fn upsert_newer_keeps_the_newest_row() {
    let inv = Inventory::open_in_memory().unwrap();
    let local = rec("a", D, "s3", "daily");
    assert_eq!(inv.upsert_newer(&local).unwrap(), UpsertOutcome::Inserted);
    let id = inv.get(&local.stored_filename).unwrap().unwrap().id;
    inv.conn().execute("UPDATE backups SET profile = 'p'", []).unwrap();

    let mut same = local.clone();
    same.tags = "changed".into();
    assert_eq!(inv.upsert_newer(&same).unwrap(), UpsertOutcome::KeptLocal, "equal last_updated keeps local");
    let mut older = local.clone();
    older.last_updated -= 1;
    older.tags = "older".into();
    assert_eq!(inv.upsert_newer(&older).unwrap(), UpsertOutcome::KeptLocal);
    assert_eq!(inv.get(&local.stored_filename).unwrap().unwrap().tags, "daily");

    let mut newer = local.clone();
    newer.id = Some(4242);
    newer.last_updated += 1;
    newer.tags = "weekly".into();
    newer.metadata = json!({"is_enc": false, "client": "other"});
    newer.size = 99;
    assert_eq!(inv.upsert_newer(&newer).unwrap(), UpsertOutcome::Updated);
    let got = inv.get(&local.stored_filename).unwrap().unwrap();
    assert_eq!(got, BackupRecord { id, ..newer.clone() }, "local id kept, everything else taken");
    assert_eq!(inv.profile_of(&local.stored_filename).unwrap().as_deref(), Some("p"));

    // A newer deletion from elsewhere applies and drops the entry index.
    inv.put_index(&local.stored_filename, b"idx").unwrap();
    let mut deleted = newer.clone();
    deleted.is_deleted = true;
    deleted.last_updated += 1;
    assert_eq!(inv.upsert_newer(&deleted).unwrap(), UpsertOutcome::Updated);
    assert!(inv.get(&local.stored_filename).unwrap().unwrap().is_deleted);
    assert_eq!(inv.get_index(&local.stored_filename).unwrap(), None);
}

#[test]
fn entry_index_round_trip_and_lifecycle() {
    let inv = Inventory::open_in_memory().unwrap();
    let a = rec("a", D, "s3", "");
    let b = rec("b", D, "s3", "");
    inv.insert(&a).unwrap();
    inv.insert(&b).unwrap();
    assert_eq!(inv.get_index(&a.stored_filename).unwrap(), None);
    let blob: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    inv.put_index(&a.stored_filename, &blob).unwrap();
    assert_eq!(inv.get_index(&a.stored_filename).unwrap(), Some(blob));
    inv.put_index(&a.stored_filename, b"").unwrap();
    assert_eq!(inv.get_index(&a.stored_filename).unwrap(), Some(vec![]));
    assert!(matches!(inv.put_index(&sn("unknown"), b"x"), Err(InventoryError::NotFound(_))));

    inv.put_index(&b.stored_filename, b"b").unwrap();
    inv.set_deleted(&a.stored_filename, D + 1).unwrap();
    assert_eq!(inv.get_index(&a.stored_filename).unwrap(), None);
    inv.remove(&b.stored_filename).unwrap();
    assert_eq!(inv.get_index(&b.stored_filename).unwrap(), None);
    let left: i64 = inv.conn().query_row("SELECT count(*) FROM entry_index", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
}

#[test]
fn config_round_trip() {
    let inv = Inventory::open_in_memory().unwrap();
    assert_eq!(inv.get_config("sync_ts").unwrap(), None);
    inv.set_config("sync_ts", &json!(123)).unwrap();
    inv.set_config("client_id", &Value::Null).unwrap();
    assert_eq!(inv.get_config("sync_ts").unwrap(), Some(json!(123)));
    assert_eq!(inv.get_config("client_id").unwrap(), Some(Value::Null));
    inv.set_config("sync_ts", &json!({"a": "b"})).unwrap();
    assert_eq!(inv.get_config("sync_ts").unwrap(), Some(json!({"a": "b"})));
    inv.conn().execute("INSERT INTO config (key, value) VALUES ('raw', 'plain text')", []).unwrap();
    assert_eq!(inv.get_config("raw").unwrap(), Some(json!("plain text")));
}

#[test]
fn archive_ids_round_trip() {
    let inv = Inventory::open_in_memory().unwrap();
    let a = sn("a.20200101000000.tgz");
    let b = sn("b.20200101000000.tgz");
    assert_eq!(inv.archive_id(&a).unwrap(), None);
    inv.put_archive_id(&b, "id-b").unwrap();
    inv.put_archive_id(&a, "id-a1").unwrap();
    inv.put_archive_id(&a, "id-a2").unwrap();
    assert_eq!(inv.archive_id(&a).unwrap().as_deref(), Some("id-a2"));
    assert_eq!(inv.all_archive_ids().unwrap(), vec![(a.clone(), "id-a2".to_string()), (b.clone(), "id-b".to_string())]);
    assert!(inv.remove_archive_id(&a).unwrap());
    assert!(!inv.remove_archive_id(&a).unwrap());
    assert_eq!(inv.all_archive_ids().unwrap(), vec![(b, "id-b".to_string())]);
}

#[test]
fn jobs_round_trip() {
    let inv = Inventory::open_in_memory().unwrap();
    let job = Job {
        target: "a.20200101000000.tgz".into(),
        job_id: "J1".into(),
        backend: "glacier".parse().unwrap(),
        kind: JobKind::ArchiveRetrieval,
        status: JobStatus::Pending,
        created_at: 100,
        ready_at: None,
        updated_at: 100,
    };
    inv.put_job(&job).unwrap();
    let inv_job =
        Job { target: "myvault".into(), kind: JobKind::InventoryRetrieval, job_id: "J2".into(), ..job.clone() };
    inv.put_job(&inv_job).unwrap();
    assert_eq!(inv.job(&job.target, JobKind::ArchiveRetrieval).unwrap(), Some(job.clone()));
    assert_eq!(inv.job(&job.target, JobKind::S3Restore).unwrap(), None);
    assert_eq!(inv.jobs().unwrap(), vec![job.clone(), inv_job.clone()]);

    assert!(inv.update_job_status(&job.target, JobKind::ArchiveRetrieval, JobStatus::Ready, 200).unwrap());
    assert!(inv.update_job_status(&job.target, JobKind::ArchiveRetrieval, JobStatus::Ready, 300).unwrap());
    let got = inv.job(&job.target, JobKind::ArchiveRetrieval).unwrap().unwrap();
    assert_eq!((got.status, got.ready_at, got.updated_at), (JobStatus::Ready, Some(200), 300));
    assert!(inv.update_job_status(&job.target, JobKind::ArchiveRetrieval, JobStatus::Expired, 400).unwrap());
    let got = inv.job(&job.target, JobKind::ArchiveRetrieval).unwrap().unwrap();
    assert_eq!((got.status, got.ready_at), (JobStatus::Expired, Some(200)));
    assert!(!inv.update_job_status("nope", JobKind::ArchiveRetrieval, JobStatus::Failed, 1).unwrap());

    // Re-submitting replaces the job of the same kind.
    let again = Job { job_id: "J3".into(), created_at: 500, updated_at: 500, ..job.clone() };
    inv.put_job(&again).unwrap();
    assert_eq!(inv.job(&job.target, JobKind::ArchiveRetrieval).unwrap(), Some(again));
    assert!(inv.delete_job(&job.target, JobKind::ArchiveRetrieval).unwrap());
    assert!(!inv.delete_job(&job.target, JobKind::ArchiveRetrieval).unwrap());
    assert_eq!(inv.jobs().unwrap(), vec![inv_job]);
}

fn user_version_of(path: &Path) -> i64 {
    Connection::open(path).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
}

#[test]
fn migrates_an_empty_file_once_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.sqlite");
    std::fs::write(&path, b"").unwrap();
    {
        let inv = Inventory::open(&path).unwrap();
        assert_eq!(inv.path(), path);
        inv.insert(&rec("a", D, "s3", "")).unwrap();
        let mode: String = inv.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = inv.conn().query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
    }
    assert_eq!(user_version_of(&path), i64::from(SCHEMA_VERSION));
    let inv = Inventory::open(&path).unwrap();
    assert_eq!(inv.search(&Query::default()).unwrap().len(), 1);
    let columns: Vec<String> = {
        let conn = inv.conn();
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('backups') ORDER BY cid").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(
        columns,
        [
            "id",
            "backend",
            "backend_hash",
            "backup_date",
            "filename",
            "is_deleted",
            "last_updated",
            "metadata",
            "size",
            "stored_filename",
            "tags",
            "profile",
            "host",
            "store",
            "parent"
        ]
    );
    drop(inv);
    assert_eq!(user_version_of(&path), i64::from(SCHEMA_VERSION));
}

// Issue 15: rows of schema 2 that another host synced with a parent (in their metadata) get it in the new column.
#[test]
fn schema_2_rows_get_their_parent_from_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.sqlite");
    let inv = Inventory::open(&path).unwrap();
    let mut full = rec("site", D, "local", "");
    full.stored_filename = sn("site.20261031030000.tgz");
    let mut child = rec("site", D + 1, "local", "");
    child.stored_filename = sn("site.20261101030000.inc.tgz");
    child.metadata = json!({"parent": "site.20261031030000.tgz", "chain": true});
    inv.insert(&full).unwrap();
    inv.insert(&child).unwrap();
    inv.conn()
        .execute_batch(
            "DROP INDEX backups_parent; ALTER TABLE backups DROP COLUMN parent; DROP TABLE snapshot; \
             PRAGMA user_version = 2;",
        )
        .unwrap();
    drop(inv);
    let inv = Inventory::open(&path).unwrap();
    assert_eq!(user_version_of(&path), i64::from(SCHEMA_VERSION));
    let parent = StoredName::from_key("site.20261031030000.tgz");
    let children: Vec<String> =
        inv.children_of(&parent).unwrap().iter().map(|r| r.stored_filename.to_string()).collect();
    assert_eq!(children, ["site.20261101030000.inc.tgz"]);
    inv.put_snapshot(&parent, b"delta").unwrap();
    assert_eq!(inv.get_snapshot(&parent).unwrap().as_deref(), Some(&b"delta"[..]));
}

#[test]
fn a_newer_schema_is_refused_with_guidance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.sqlite");
    Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = Inventory::open(&path).unwrap_err();
    match &err {
        InventoryError::NewerSchema { found: 99, supported, .. } => assert_eq!(*supported, SCHEMA_VERSION),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("newer bakthat") && msg.contains("schema 99") && msg.contains("upgrade bakthat"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(user_version_of(&path), 99, "left untouched");
}

#[test]
fn a_legacy_database_is_not_opened_as_an_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_legacy(dir.path());
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(Inventory::open(&path), Err(InventoryError::LegacyDatabase { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before, "not even switched to WAL");
    assert_eq!(dir_listing(dir.path()), BTreeSet::from([".bakthat.sqlite".to_string()]));
}

#[test]
fn garbage_and_missing_dirs_fail_as_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    assert!(matches!(Inventory::open(&path), Err(InventoryError::Open { .. })));
    let missing = dir.path().join("no/such/dir/inv.sqlite");
    assert!(matches!(Inventory::open(&missing), Err(InventoryError::Open { .. })));
}

#[test]
fn default_path_prefers_env_then_creates_a_private_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = default_path_from(Some("/x/y.sqlite".into()), Some(dir.path().into())).unwrap();
    assert_eq!(from_env, PathBuf::from("/x/y.sqlite"));
    assert!(!dir.path().join("bakthat").exists());
    let data = dir.path().join("share");
    let p = default_path_from(Some("".into()), Some(data.clone())).unwrap();
    assert_eq!(p, data.join("bakthat/inventory.sqlite"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("bakthat")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    assert!(matches!(default_path_from(None, None), Err(InventoryError::NoDataDir)));
}

#[test]
fn four_threads_share_one_inventory_and_a_second_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.sqlite");
    let shared = Arc::new(Inventory::open(&path).unwrap());
    let other = Arc::new(Inventory::open(&path).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let inv = if t % 2 == 0 { Arc::clone(&shared) } else { Arc::clone(&other) };
            std::thread::spawn(move || {
                for i in 0..50 {
                    let r = rec(&format!("t{t}"), D + i, "s3", "x");
                    inv.insert(&r).unwrap();
                    inv.put_index(&r.stored_filename, &[t as u8; 16]).unwrap();
                    assert_eq!(
                        inv.upsert_newer(&BackupRecord { last_updated: D + 1000, ..r.clone() }).unwrap(),
                        UpsertOutcome::Updated
                    );
                    let q = Query { exact_name: Some(format!("t{t}")), ..Query::default() };
                    assert_eq!(inv.search(&q).unwrap().len() as i64, i + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(shared.search(&Query::default()).unwrap().len(), 200);
    assert_eq!(other.changed_since(D + 1000).unwrap().len(), 200);
}

// ---- legacy import ----

/// A bakthat 0.6 database with the exact DDL of the spec (§5) and a few 0.6-style rows.
fn make_legacy(dir: &Path) -> PathBuf {
    let path = dir.join(".bakthat.sqlite");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        r#"
CREATE TABLE IF NOT EXISTS "backups" ("id" INTEGER NOT NULL PRIMARY KEY, "backend" VARCHAR(255) NOT NULL, "backend_hash" VARCHAR(255),
  "backup_date" INTEGER NOT NULL, "filename" TEXT NOT NULL, "is_deleted" SMALLINT NOT NULL, "last_updated" INTEGER NOT NULL,
  "metadata" VARCHAR(255) NOT NULL, "size" INTEGER NOT NULL, "stored_filename" TEXT NOT NULL, "tags" VARCHAR(255) NOT NULL);
CREATE INDEX IF NOT EXISTS "backups_backup_date" ON "backups" ("backup_date");
CREATE UNIQUE INDEX IF NOT EXISTS "backups_stored_filename" ON "backups" ("stored_filename");
CREATE INDEX IF NOT EXISTS "backups_backend_hash" ON "backups" ("backend_hash");
CREATE INDEX IF NOT EXISTS "backups_filename" ON "backups" ("filename");
CREATE INDEX IF NOT EXISTS "backups_backend" ON "backups" ("backend");
CREATE TABLE IF NOT EXISTS "jobs" ("id" INTEGER NOT NULL PRIMARY KEY, "filename" VARCHAR(255) NOT NULL, "job_id" VARCHAR(255) NOT NULL);
CREATE INDEX IF NOT EXISTS "jobs_filename" ON "jobs" ("filename");
CREATE TABLE IF NOT EXISTS "inventory" ("id" INTEGER NOT NULL PRIMARY KEY, "archive_id" VARCHAR(255) NOT NULL, "filename" VARCHAR(255) NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS "inventory_archive_id" ON "inventory" ("archive_id");
CREATE INDEX IF NOT EXISTS "inventory_filename" ON "inventory" ("filename");
CREATE TABLE IF NOT EXISTS "config" ("id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS "config_key" ON "config" ("key");
CREATE TABLE IF NOT EXISTS "history" ("id" INTEGER NOT NULL PRIMARY KEY, "data" VARCHAR(255) NOT NULL, "ts" INTEGER NOT NULL,
  "action" VARCHAR(255) NOT NULL, "model" VARCHAR(255) NOT NULL, "pk" VARCHAR(255) NOT NULL);
CREATE INDEX IF NOT EXISTS "history_ts" ON "history" ("ts");
CREATE INDEX IF NOT EXISTS "history_action" ON "history" ("action");
CREATE INDEX IF NOT EXISTS "history_pk" ON "history" ("pk");
CREATE INDEX IF NOT EXISTS "history_model" ON "history" ("model");

INSERT INTO backups VALUES (1, 's3', '69c02b2e6d9c', 1795000000, 'mydir', 0, 1795000000,
  '{"is_enc": true, "client": "oldhost"}', 4096, 'mydir.20261122040805.tgz.enc', 'daily db');
INSERT INTO backups VALUES (2, 'glacier', 'abcd', 1795000100, 'a.txt', 1, 1795000200,
  '{"client": "oldhost", "is_enc": false}', 10, 'a.txt.20261122040806.tgz', '');
INSERT INTO backups VALUES (3, 's3', 'h', 1348738200, 'name', 0, 1348738200, '{"is_enc": false}', 7,
  'name20120927093000.tgz', '');
INSERT INTO backups VALUES (4, 's3', 'h', 1795000300, 'mykey', 0, 1795000300,
  '{"KeyValue": true, "is_enc": false, "is_gzipped": true}', 33, 'mykey', '');
INSERT INTO inventory VALUES (1, 'ARCHIVE-A', 'a.txt.20261122040806.tgz');
INSERT INTO inventory VALUES (2, 'ARCHIVE-B', 'b.20261122040806.tgz');
INSERT INTO jobs VALUES (1, 'a.txt.20261122040806.tgz', 'JOB-1');
INSERT INTO config VALUES (1, 'client_id', 'null');
INSERT INTO config VALUES (2, 'sync_ts', '1795000000');
"#,
    )
    .unwrap();
    drop(conn);
    path
}

fn dir_listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn import_legacy_copies_everything_and_leaves_the_file_alone() {
    let legacy_dir = tempfile::tempdir().unwrap();
    let legacy = make_legacy(legacy_dir.path());
    // An old mtime, so a write during the import could not hide within the clock's resolution.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    std::fs::File::options().write(true).open(&legacy).unwrap().set_modified(old).unwrap();
    let bytes_before = std::fs::read(&legacy).unwrap();
    let listing_before = dir_listing(legacy_dir.path());
    assert_eq!(listing_before, BTreeSet::from([".bakthat.sqlite".to_string()]));

    let inv = Inventory::open_in_memory().unwrap();
    // One row already present: skipped and kept as it is.
    let mut existing = rec("name", 1, "s3", "mine");
    existing.stored_filename = sn("name20120927093000.tgz");
    inv.insert(&existing).unwrap();
    inv.set_config("sync_ts", &json!(5)).unwrap();

    let report = inv.import_legacy(&legacy).unwrap();
    assert_eq!(
        report,
        ImportReport {
            backups: 3,
            backups_skipped: 1,
            backups_refused: vec![],
            archive_ids: 2,
            archive_ids_skipped: 0,
            jobs: 1,
            jobs_skipped: 0,
            config: 1,
            config_skipped: 1
        }
    );

    assert_eq!(std::fs::read(&legacy).unwrap(), bytes_before);
    assert_eq!(std::fs::metadata(&legacy).unwrap().modified().unwrap(), old);
    assert_eq!(dir_listing(legacy_dir.path()), listing_before, "no -wal/-shm/-journal appeared");

    let a = inv.get(&sn("mydir.20261122040805.tgz.enc")).unwrap().unwrap();
    assert_eq!(
        a,
        BackupRecord {
            id: a.id,
            backend: "s3".parse().unwrap(),
            backend_hash: Some("69c02b2e6d9c".into()),
            backup_date: 1_795_000_000,
            filename: "mydir".into(),
            is_deleted: false,
            last_updated: 1_795_000_000,
            metadata: json!({"is_enc": true, "client": "oldhost"}),
            size: 4096,
            stored_filename: sn("mydir.20261122040805.tgz.enc"),
            tags: "daily db".into(),
            store: Default::default(),
        }
    );
    let b = inv.get(&sn("a.txt.20261122040806.tgz")).unwrap().unwrap();
    assert!(b.is_deleted);
    assert_eq!((b.backend.as_str(), b.backup_date, b.last_updated), ("glacier", 1_795_000_100, 1_795_000_200));
    let kv = inv.get(&sn("mykey")).unwrap().unwrap();
    assert_eq!(kv.metadata["KeyValue"], json!(true));
    assert_eq!(inv.get(&existing.stored_filename).unwrap().unwrap().tags, "mine", "existing row untouched");
    assert_eq!(inv.profile_of(&a.stored_filename).unwrap(), None);

    assert_eq!(inv.archive_id(&sn("a.txt.20261122040806.tgz")).unwrap().as_deref(), Some("ARCHIVE-A"));
    assert_eq!(inv.archive_id(&sn("b.20261122040806.tgz")).unwrap().as_deref(), Some("ARCHIVE-B"));
    let job = inv.job("a.txt.20261122040806.tgz", JobKind::ArchiveRetrieval).unwrap().unwrap();
    assert_eq!((job.job_id.as_str(), job.backend.as_str(), job.status), ("JOB-1", "glacier", JobStatus::Pending));
    assert_eq!((job.created_at, job.ready_at), (1_700_000_000, None));
    assert_eq!(inv.get_config("client_id").unwrap(), Some(Value::Null));
    assert_eq!(inv.get_config("sync_ts").unwrap(), Some(json!(5)), "existing key kept");

    // Importing again copies nothing.
    let again = inv.import_legacy(&legacy).unwrap();
    assert_eq!(
        again,
        ImportReport {
            backups: 0,
            backups_skipped: 4,
            backups_refused: vec![],
            archive_ids: 0,
            archive_ids_skipped: 2,
            jobs: 0,
            jobs_skipped: 1,
            config: 0,
            config_skipped: 2
        }
    );
    assert_eq!(std::fs::read(&legacy).unwrap(), bytes_before);
    assert_eq!(dir_listing(legacy_dir.path()), listing_before);
}

#[test]
fn import_legacy_into_a_file_inventory_and_odd_paths() {
    let legacy_dir = tempfile::tempdir().unwrap();
    let odd = legacy_dir.path().join("we?ird #dir%20");
    std::fs::create_dir(&odd).unwrap();
    let legacy = make_legacy(&odd);
    let target_dir = tempfile::tempdir().unwrap();
    let inv = Inventory::open(target_dir.path().join("inv.sqlite")).unwrap();
    assert_eq!(inv.import_legacy(&legacy).unwrap().backups, 4);
    assert_eq!(dir_listing(&odd), BTreeSet::from([".bakthat.sqlite".to_string()]));
}

// Regression (issue 11, item 1): a crafted 0.6 database put rows named `/tmp/x/pwn.txt` or `../out/rel.txt` into
// the inventory, and `restore` wrote there. Such rows are refused; the rest is imported.
#[test]
fn import_legacy_refuses_rows_whose_names_cannot_be_file_names() {
    let legacy_dir = tempfile::tempdir().unwrap();
    let legacy = make_legacy(legacy_dir.path());
    let long = "x".repeat(300);
    let deep = "d/".repeat(2100) + "f";
    let hostile: Vec<(&str, String)> = vec![
        ("/tmp/x/pwn.txt", "pwn.20261122040805".into()),
        ("../out/rel.txt", "rel.20261122040805".into()),
        ("a\0b", "nul.20261122040805".into()),
        (&long, "long.20261122040805".into()),
        (&deep, "deep.20261122040805".into()),
        ("fine", "../../escape.20261122040805".into()),
        ("fine", "/abs.20261122040805".into()),
    ];
    let conn = Connection::open(&legacy).unwrap();
    for (i, (filename, stored)) in hostile.iter().enumerate() {
        conn.execute(
            "INSERT INTO backups VALUES (?1, 's3', 'h', 1795000000, ?2, 0, 1795000000, '{}', 7, ?3, '')",
            rusqlite::params![100 + i as i64, filename, stored],
        )
        .unwrap();
    }
    drop(conn);
    let inv = Inventory::open_in_memory().unwrap();
    let report = inv.import_legacy(&legacy).unwrap();
    assert_eq!(report.backups, 4, "the ordinary rows are imported: {report:?}");
    assert_eq!(report.backups_refused.len(), hostile.len(), "{report:?}");
    for (_, stored) in &hostile {
        assert!(inv.get(&StoredName::from_key(stored.clone())).unwrap().is_none(), "{stored} was imported");
    }
    assert!(report.backups_refused[0].to_string().contains("absolute path"), "{}", report.backups_refused[0]);
}

#[test]
fn import_legacy_refuses_non_legacy_files() {
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::open_in_memory().unwrap();
    let empty = dir.path().join("empty.sqlite");
    Connection::open(&empty).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    assert!(matches!(inv.import_legacy(&empty), Err(InventoryError::NotLegacy { .. })));
    assert!(matches!(inv.import_legacy(&dir.path().join("missing")), Err(InventoryError::Open { .. })));
    assert!(!dir.path().join("missing").exists(), "read-only open creates nothing");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Text search equals a literal `contains` on filename or stored name, whatever wildcard characters appear.
    #[test]
    fn text_search_is_a_literal_substring(
        files in proptest::collection::btree_set("[ab*?%_\\[\\].]{1,5}", 1..8),
        q in "[ab*?%_\\[\\].]{1,3}",
    ) {
        let inv = Inventory::open_in_memory().unwrap();
        let mut all = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let r = rec(f, D + i as i64, "s3", "");
            inv.insert(&r).unwrap();
            all.push(r);
        }
        let got: BTreeSet<String> = inv
            .search(&Query { text: Some(q.clone()), ..Query::default() })
            .unwrap()
            .into_iter()
            .map(|r| r.stored_filename.to_string())
            .collect();
        let want: BTreeSet<String> = all
            .iter()
            .filter(|r| r.filename.contains(&q) || r.stored_filename.as_str().contains(&q))
            .map(|r| r.stored_filename.to_string())
            .collect();
        prop_assert_eq!(got, want);
    }
}

// Regression (issue 14): two threads (or processes) opening a fresh inventory at once. Switching it to WAL needs
// the file to itself, and SQLite answers SQLITE_BUSY at once there instead of calling the busy handler, so one
// opener failed with "database is locked"; and the schema check read the version and the tables apart, so a
// migration committed between the two reads looked like a 0.6 database. Both failed within ~30 rounds.
#[test]
fn concurrent_opens_of_a_fresh_inventory_both_succeed() {
    for round in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("inv{round}.sqlite"));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Inventory::open(&path).map(drop)
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}
