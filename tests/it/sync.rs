//! Store-based sync: the journal beside the archives, driven as a library (conflicts, request counts, unreadable
//! entries) and through the CLI with two homes sharing one moto bucket (scripts/test.sh starts moto; a missing
//! server fails these tests).

use crate::common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bakthat::archive::crypto::{KdfParams, MasterKey};
use bakthat::archive::Secret;
use bakthat::config::{Config, Profile};
use bakthat::inventory::Inventory;
use bakthat::journal;
use bakthat::model::{BackupRecord, StoredName};
use bakthat::ops::Ctx;
use bakthat::storage::local::LocalStore;
use bakthat::storage::metered::{Meter, Metered};
use bakthat::storage::s3::S3Store;
use bakthat::storage::{Backend, Op, PutOptions};
use bakthat::sync::{self, SyncReport};
use common::cli::Home;
use common::moto;
use serde_json::{json, Value};

/// `inner` with its requests counted.
fn counting(inner: Arc<dyn Backend>) -> Metered {
    Metered::new(inner, Meter::new())
}

/// (listings, reads) that reached `store` since the last call.
fn take(store: &Metered) -> (u64, u64) {
    let m = store.meter();
    let counts = (m.count(Op::List), m.count(Op::Get) + m.count(Op::GetRange));
    m.reset();
    counts
}

/// A host: its own inventory, the local profile pointing at `store`.
fn host(dir: &Path, name: &str, store: &Path) -> Ctx {
    let mut config = Config::empty(&dir.join(format!("{name}.yml")));
    config.set_profile("default", Profile { local_path: Some(store.to_path_buf()), ..Profile::default() });
    let mut ctx = Ctx::new(config, "default", Inventory::open(dir.join(format!("{name}.sqlite"))).unwrap()).unwrap();
    ctx.host = name.to_string();
    ctx
}

fn record(name: &str, date: &str, last_updated: i64, tags: &str, host: &str) -> BackupRecord {
    BackupRecord {
        id: None,
        backend: "s3".parse().unwrap(),
        backend_hash: Some("h".into()),
        backup_date: 1_700_000_000,
        filename: name.into(),
        is_deleted: false,
        last_updated,
        metadata: json!({"is_enc": false, "client": host}),
        size: 42,
        stored_filename: StoredName::from_key(format!("{name}.{date}.tgz")),
        tags: tags.into(),
        store: Default::default(),
    }
}

#[test]
fn conflicting_edits_resolve_by_newer_last_updated() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let store = LocalStore::open(&store_dir).unwrap();
    let c = host(t.path(), "c", &store_dir);
    // Host A's newer edit lands in the journal before host B's older one: the order of the journal does not matter.
    journal::publish_backup(&store, &record("db", "20260101000000", 200, "new", "a"), None, None).unwrap();
    journal::publish_backup(&store, &record("db", "20260101000000", 100, "old", "b"), None, None).unwrap();
    let r = sync::sync_store(&c, &store, None, false).unwrap();
    assert_eq!((r.inserted, r.updated, r.unchanged), (1, 0, 1), "{r:?}");
    let row = c.inventory.get(&StoredName::from_key("db.20260101000000.tgz")).unwrap().unwrap();
    assert_eq!((row.tags.as_str(), row.last_updated), ("new", 200));
    assert_eq!(row.metadata["client"], "a");

    // A newer state arriving later replaces it; an older tombstone does not delete it; a newer one does.
    journal::publish_backup(&store, &record("db", "20260101000000", 300, "newest", "b"), None, None).unwrap();
    journal::publish_tombstone(&store, &record("db", "20260101000000", 0, "", "a"), 250, None).unwrap();
    let r = sync::sync_store(&c, &store, None, false).unwrap();
    assert_eq!((r.inserted, r.updated, r.unchanged), (0, 1, 1), "{r:?}");
    let row = c.inventory.get(&StoredName::from_key("db.20260101000000.tgz")).unwrap().unwrap();
    assert_eq!((row.tags.as_str(), row.is_deleted), ("newest", false));
    journal::publish_tombstone(&store, &row, 301, None).unwrap();
    sync::sync_store(&c, &store, None, false).unwrap();
    let row = c.inventory.get(&StoredName::from_key("db.20260101000000.tgz")).unwrap().unwrap();
    assert!(row.is_deleted && row.last_updated == 301, "{row:?}");
    assert_eq!(row.tags, "newest", "a tombstone keeps the row's details");

    // The local side of a conflict: a host whose own row is newer keeps it.
    let d = host(t.path(), "d", &store_dir);
    d.inventory.insert(&record("db", "20260101000000", 999, "mine", "d")).unwrap();
    sync::sync_store(&d, &store, None, false).unwrap();
    let row = d.inventory.get(&StoredName::from_key("db.20260101000000.tgz")).unwrap().unwrap();
    assert_eq!((row.tags.as_str(), row.is_deleted), ("mine", false));
}

#[test]
fn backups_and_deletes_reach_another_host_with_their_index() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let a = host(t.path(), "a", &store_dir);
    let b = host(t.path(), "b", &store_dir);
    let src = t.path().join("project");
    common::rich_tree(&src);
    let secret = Arc::new(Secret::new(b"pw"));
    let opts = bakthat::ops::BackupOptions {
        source: src.clone(),
        password: Some(secret.clone()),
        tags: vec!["daily db".into()],
        ..Default::default()
    };
    let out = bakthat::ops::backup(&a, &opts).unwrap();
    let stored = out.record.stored_filename.clone();
    let store = LocalStore::open(&store_dir).unwrap();

    // Without the password the encrypted entry is reported, not dropped, and retried later.
    let r = sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!(r.unreadable.len(), 1, "{r:?}");
    assert!(r.unreadable[0].1.contains("password"), "{r:?}");
    assert!(b.inventory.get(&stored).unwrap().is_none());
    let r = sync::sync_store(&b, &store, Some(&Secret::new(b"wrong")), false).unwrap();
    assert_eq!((r.unreadable.len(), r.rejected.len()), (0, 1), "a wrong password fails authentication: {r:?}");
    let r = sync::sync_store(&b, &store, Some(&secret), false).unwrap();
    assert_eq!((r.inserted, r.unreadable.len()), (1, 0), "{r:?}");
    let row = b.inventory.get(&stored).unwrap().unwrap();
    let mut expected = out.record.clone();
    expected.id = row.id;
    assert_eq!(row, expected);
    assert_eq!(b.inventory.get_index(&stored).unwrap(), a.inventory.get_index(&stored).unwrap());
    assert!(b.inventory.get_index(&stored).unwrap().is_some(), "the entry index travels with the record");
    assert_eq!(b.inventory.profile_of(&stored).unwrap().as_deref(), Some("default"));

    // B restores A's backup, then deletes it; A learns of the delete.
    let to = t.path().join("restored");
    let ropts = bakthat::ops::RestoreOptions {
        name: "project".into(),
        to: Some(to.clone()),
        password: Some(secret),
        ..Default::default()
    };
    bakthat::ops::restore(&b, &ropts).unwrap();
    assert_eq!(common::snapshot(&to.join("project")), common::snapshot(&src));
    bakthat::ops::delete(&b, "project", None, None).unwrap();
    let r = sync::sync_store(&a, &store, None, false).unwrap();
    assert_eq!(
        (r.updated, r.unreadable.len()),
        (1, 1),
        "A's own encrypted entry is unreadable without the password: {r:?}"
    );
    assert!(a.inventory.get(&stored).unwrap().unwrap().is_deleted);
    assert!(a.inventory.get_index(&stored).unwrap().is_none());
}

/// Writes `n` backup entries as host "a" would.
fn publish_many(store: &dyn Backend, n: usize, master: Option<&MasterKey>) {
    for i in 0..n {
        let r = record(&format!("b{i:03}"), "20260101000000", 100 + i as i64, "t", "a");
        journal::publish_backup(store, &r, Some(b"index bytes"), master).unwrap();
    }
}

fn counts(report: &SyncReport) -> (usize, usize) {
    (report.listed, report.fetched)
}

#[test]
fn a_sync_that_finds_nothing_new_lists_once_on_s3() {
    let endpoint = moto::endpoint();
    let bucket = moto::unique("sync");
    let s3: Arc<dyn Backend> = Arc::new(S3Store::new(&moto::s3_settings(&endpoint, &bucket)).unwrap());
    let store = counting(s3);
    let t = tempfile::tempdir().unwrap();
    let b = host(t.path(), "b", &t.path().join("unused"));
    publish_many(&store, 60, None);
    take(&store);

    let r = sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!(take(&store), (1, 60), "first sync: one listing, one read per entry");
    assert_eq!((r.inserted, counts(&r)), (60, (60, 60)));
    let r = sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!(take(&store), (1, 0), "nothing new: one listing, no reads");
    assert_eq!(r.inserted + r.updated, 0);
    publish_many(&store, 1, None);
    take(&store);
    sync::sync_store(&b, &store, None, false).unwrap();
    // The one new entry has the same stored name and an older last_updated than b000's newest state: unchanged.
    assert_eq!(take(&store), (1, 1), "one new entry: one listing, one read");
    eprintln!(
        "measured on moto: 60 entries -> 1 list + 60 gets; nothing new -> 1 list + 0 gets; one new -> 1 list + 1 get"
    );

    // --rebuild reads everything again.
    let r = sync::sync_store(&b, &store, None, true).unwrap();
    assert_eq!(take(&store), (1, 61));
    assert_eq!(r.inserted, 0);
}

#[test]
fn entries_of_encrypted_backups_are_authenticated_and_encrypted() {
    let t = tempfile::tempdir().unwrap();
    let store = LocalStore::open(t.path()).unwrap();
    let master = MasterKey::derive(b"pw", MasterKey::random_salt(), KdfParams::default()).unwrap();
    let mut r = record("b000", "20260101000000", 100, "t", "a");
    r.metadata["is_enc"] = json!(true);
    journal::publish_backup(&store, &r, Some(b"index bytes"), Some(&master)).unwrap();
    let key = store.list(journal::JOURNAL_PREFIX).unwrap().remove(0).key;
    let mut raw = Vec::new();
    store.get(&key).unwrap().read_to_end(&mut raw).unwrap();
    assert!(raw.starts_with(journal::AUTH_MAGIC.as_bytes()));
    let body = &raw[raw.iter().position(|b| *b == b'\n').unwrap() + 1..];
    assert!(bakthat::archive::crypto::is_v1(body));
    assert!(!String::from_utf8_lossy(&raw).contains("b000"), "the record is not readable without the password");
    let d = journal::decode_entry(&raw, Some(&Secret::new(b"pw"))).unwrap();
    assert!(d.authenticated);
    assert_eq!(d.entry.record.filename, "b000");
    assert_eq!(d.entry.index, b"index bytes");
    assert_eq!(journal::decode_entry(&raw, None).unwrap_err(), journal::DecodeError::NeedsPassword);
    assert_eq!(journal::decode_entry(&raw, Some(&Secret::new(b"other"))).unwrap_err(), journal::DecodeError::BadTag);
}

// ---- issue 11, item 2: the journal is authenticated for a profile with a password ----

/// Host "a" with the password "pw" backs up an encrypted tree into `store_dir`; returns a, its record and the store.
fn encrypted_backup(t: &Path, store_dir: &Path) -> (Ctx, BackupRecord, LocalStore) {
    let a = host(t, "a", store_dir);
    let src = t.join("project");
    common::rich_tree(&src);
    let opts =
        bakthat::ops::BackupOptions { source: src, password: Some(Arc::new(Secret::new(b"pw"))), ..Default::default() };
    let record = bakthat::ops::backup(&a, &opts).unwrap().record;
    (a, record, LocalStore::open(store_dir).unwrap())
}

// Regression: a plain entry dropped into the store by anyone who can write to it added a backup to every host.
#[test]
fn a_planted_plain_entry_adds_no_backup_to_a_profile_with_a_password() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let (_a, real, store) = encrypted_backup(t.path(), &store_dir);
    let planted = record("evil", "20260101000000", 100, "", "mallory");
    journal::publish_backup(&store, &planted, None, None).unwrap();

    let b = host(t.path(), "b", &store_dir);
    let r = sync::sync_store(&b, &store, Some(&Secret::new(b"pw")), false).unwrap();
    assert_eq!((r.inserted, r.rejected.len()), (1, 1), "{r:?}");
    assert!(r.rejected[0].1.contains("not authenticated"), "{r:?}");
    assert!(b.inventory.get(&real.stored_filename).unwrap().is_some(), "the authenticated entry is applied");
    assert!(b.inventory.get(&planted.stored_filename).unwrap().is_none(), "the planted one is not");
    // Once synced with the password, a sync without it believes no plain entry either (it says what it needs).
    let r = sync::sync_store(&b, &store, None, true).unwrap();
    assert_eq!(r.inserted + r.updated, 0, "{r:?}");
    assert!(b.inventory.get(&planted.stored_filename).unwrap().is_none());
}

// Regression: a plain tombstone for an encrypted backup hid it (marked deleted, archive still there) without the
// password.
#[test]
fn a_plain_tombstone_does_not_hide_an_encrypted_backup() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let (a, real, store) = encrypted_backup(t.path(), &store_dir);
    let b = host(t.path(), "b", &store_dir);
    sync::sync_store(&b, &store, Some(&Secret::new(b"pw")), false).unwrap();
    journal::publish_tombstone(&store, &real, real.last_updated + 100, None).unwrap();

    let r = sync::sync_store(&b, &store, Some(&Secret::new(b"pw")), false).unwrap();
    assert_eq!((r.updated, r.rejected.len()), (0, 1), "{r:?}");
    assert!(r.rejected[0].1.contains("still in the store"), "{r:?}");
    assert!(!b.inventory.get(&real.stored_filename).unwrap().unwrap().is_deleted);
    // The writer itself, syncing without the password, does not believe it either.
    let r = sync::sync_store(&a, &store, None, false).unwrap();
    assert_eq!(r.updated, 0, "{r:?}");
    assert!(!a.inventory.get(&real.stored_filename).unwrap().unwrap().is_deleted);
}

#[test]
fn a_tampered_authenticated_entry_is_rejected() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let store = LocalStore::open(&store_dir).unwrap();
    let master = MasterKey::derive(b"pw", MasterKey::random_salt(), KdfParams::default()).unwrap();
    // An unencrypted backup's entry, authenticated: readable, so an attacker can edit it in place.
    let r0 = record("db", "20260101000000", 100, "daily", "a");
    let key = journal::publish_backup(&store, &r0, None, Some(&master)).unwrap();
    let mut raw = Vec::new();
    store.get(&key).unwrap().read_to_end(&mut raw).unwrap();
    let edited = String::from_utf8(raw).unwrap().replace("\"size\":42", "\"size\":43");
    store.put_bytes(&key, edited.as_bytes(), &PutOptions::default()).unwrap();

    let b = host(t.path(), "b", &store_dir);
    let r = sync::sync_store(&b, &store, Some(&Secret::new(b"pw")), false).unwrap();
    assert_eq!((r.inserted, r.rejected.len()), (0, 1), "{r:?}");
    assert!(r.rejected[0].1.contains("fails authentication"), "{r:?}");
    assert!(b.inventory.get(&r0.stored_filename).unwrap().is_none());
}

// Regression: an encrypted raw backup whose content is a journal entry, copied to a journal key, decrypted with the
// password and was applied: the journal's key is now separate from the archives' (an HKDF label).
#[test]
fn an_archive_copied_into_the_journal_is_not_an_entry() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let mut a = host(t.path(), "a", &store_dir);
    a.profile.compress = false;
    let forged = t.path().join("forged");
    let head = json!({"kind": "backup", "record": record("evil", "20260101000000", 100, "", "mallory")});
    fs::write(&forged, format!("bakthat-record-1 {head}\n")).unwrap();
    let opts = bakthat::ops::BackupOptions {
        source: forged,
        password: Some(Arc::new(Secret::new(b"pw"))),
        ..Default::default()
    };
    let archive = bakthat::ops::backup(&a, &opts).unwrap().record.stored_filename;
    let store = LocalStore::open(&store_dir).unwrap();
    let mut bytes = Vec::new();
    store.get(archive.as_str()).unwrap().read_to_end(&mut bytes).unwrap();
    store
        .put_bytes(
            &format!("{}9999999999999.0000000000000000", journal::JOURNAL_PREFIX),
            &bytes,
            &PutOptions::default(),
        )
        .unwrap();

    let b = host(t.path(), "b", &store_dir);
    let r = sync::sync_store(&b, &store, Some(&Secret::new(b"pw")), false).unwrap();
    assert!(b.inventory.get(&StoredName::from_key("evil.20260101000000.tgz")).unwrap().is_none(), "{r:?}");
}

#[test]
fn a_delete_by_a_host_without_the_password_still_reaches_the_others() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let (a, real, store) = encrypted_backup(t.path(), &store_dir);
    let pw = Secret::new(b"pw");
    sync::sync_store(&a, &store, Some(&pw), false).unwrap();
    let b = host(t.path(), "b", &store_dir);
    sync::sync_store(&b, &store, Some(&pw), false).unwrap();
    // B deletes without the password: the archive goes, and its tombstone is plain.
    bakthat::ops::delete(&b, "project", None, None).unwrap();
    assert!(store.head(real.stored_filename.as_str()).unwrap().is_none());
    let r = sync::sync_store(&a, &store, Some(&pw), false).unwrap();
    assert_eq!((r.updated, r.rejected.len()), (1, 0), "the archive is gone, so the tombstone is believed: {r:?}");
    assert!(a.inventory.get(&real.stored_filename).unwrap().unwrap().is_deleted);
}

// Regression: a delete with the password wrote a plain tombstone, which a host of a password profile believes only
// once the archive is gone from what *it* sees of the store; Glacier's presence check asks that host's own catalog,
// so the delete never reached it. Here the archive stays visible to B (put back after A's delete): the tombstone,
// authenticated with the password, is believed all the same.
#[test]
fn a_delete_with_the_password_reaches_a_host_that_still_sees_the_archive() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let (a, real, store) = encrypted_backup(t.path(), &store_dir);
    let pw = Secret::new(b"pw");
    let b = host(t.path(), "b", &store_dir);
    sync::sync_store(&b, &store, Some(&pw), false).unwrap();
    let mut archive = Vec::new();
    store.get(real.stored_filename.as_str()).unwrap().read_to_end(&mut archive).unwrap();
    bakthat::ops::delete(&a, "project", None, Some(&pw)).unwrap();
    store.put_bytes(real.stored_filename.as_str(), &archive, &PutOptions::default()).unwrap();

    let r = sync::sync_store(&b, &store, Some(&pw), false).unwrap();
    assert_eq!((r.updated, r.rejected.len()), (1, 0), "an authenticated tombstone is believed: {r:?}");
    assert!(b.inventory.get(&real.stored_filename).unwrap().unwrap().is_deleted);
}

// ---- the CLI: two homes sharing one moto bucket ----

/// A home whose default profile is the moto bucket `bucket` (destination s3), with `extra` lines of YAML.
fn home(bucket: &str, extra: &str) -> Home {
    let profile = moto::profile_yaml(bucket);
    Home::new(|_| format!("default:\n{profile}  default_destination: s3\n{extra}"))
}

fn names(rows: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r["stored_filename"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

fn stored(stdout: &str) -> String {
    stdout.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn two_hosts_share_one_bucket() {
    let bucket = moto::unique("sync");
    let a = home(&bucket, "");
    let b = home(&bucket, "");
    let src = a.path("project");
    common::rich_tree(&src);
    fs::write(a.path("notes.txt"), b"notes").unwrap();
    let s = src.to_str().unwrap();

    let enc = stored(&a.ok(&["backup", s, "--tags", "daily db"], Some("pw")));
    let plain = stored(&a.ok(&["backup", a.path("notes.txt").to_str().unwrap(), "--prompt", "no"], None));
    assert!(b.show(false).is_empty());

    // Without a password, B gets the plain backup and reports the encrypted one (exit 1); with it, both.
    let o = b.run(&["sync"], None);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("BAKTHAT_PASSWORD"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(names(&b.show(false)), [plain]);
    let out = b.ok(&["sync"], Some("pw"));
    assert!(out.contains("1 new"), "{out}");
    assert_eq!(b.show(false), a.show(false), "B sees what A backed up");
    let to = b.path("restored");
    b.ok(&["restore", "project", "--to", to.to_str().unwrap()], Some("pw"));
    assert_eq!(common::snapshot(&to.join("project")), common::snapshot(&src));

    // A delete on B reaches A.
    b.ok(&["delete", "notes.txt"], None);
    a.ok(&["sync"], Some("pw"));
    assert_eq!(names(&a.show(false)), std::slice::from_ref(&enc));
    assert_eq!(a.show(true), b.show(true), "both agree, deleted rows included");

    // B loses its inventory: a rebuild from the store with the password gives the same live rows. The plain entry
    // of the backup made without the password is not believed by a profile with a password (issue 11, item 2):
    // reported, exit 1; its deletion is, as the archive is gone.
    fs::remove_file(b.path("inventory.sqlite")).unwrap();
    assert!(b.show(true).is_empty());
    let o = b.run(&["sync", "--rebuild"], Some("pw"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("rejected journal entry") && err.contains("not authenticated"), "{err}");
    assert_eq!(b.show(false), a.show(false));

    // sync.auto: a third host syncs by itself after its own backup.
    let c = home(&bucket, "  sync_auto: true\n");
    c.ok(&["backup", a.path("notes.txt").to_str().unwrap(), "--prompt", "no", "--name", "c-notes"], Some("pw"));
    let c_rows = names(&c.show(false));
    assert_eq!(c_rows.len(), 2, "{c_rows:?}");
    assert!(c_rows.contains(&enc));
}

#[test]
fn a_sync_that_finds_nothing_new_lists_once_on_swift() {
    use bakthat::storage::swift::SwiftStore;
    let settings = common::swift::settings(&moto::unique("sync"));
    let store = counting(Arc::new(SwiftStore::new(&settings).unwrap()));
    let t = tempfile::tempdir().unwrap();
    let b = host(t.path(), "b", &t.path().join("unused"));
    publish_many(&store, 20, None);
    take(&store);
    let r = sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!((take(&store), r.inserted), ((1, 20), 20));
    sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!(take(&store), (1, 0), "nothing new: one listing (from the marker), no reads");
    publish_many(&store, 1, None);
    take(&store);
    sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!(take(&store), (1, 1));
}

#[test]
fn glacier_records_sit_in_the_s3_bucket() {
    let bucket = moto::unique("syncgl");
    let vault = format!("  glacier_vault: {}\n", moto::unique("syncgl"));
    let a = home(&bucket, &vault);
    let b = home(&bucket, &vault);
    fs::write(a.path("notes.txt"), b"notes").unwrap();
    let name =
        stored(&a.ok(&["backup", a.path("notes.txt").to_str().unwrap(), "-d", "glacier", "--prompt", "no"], None));
    let s3 = S3Store::new(&moto::s3_settings(&moto::endpoint(), &bucket)).unwrap();
    assert_eq!(s3.list(journal::JOURNAL_PREFIX).unwrap().len(), 1, "the journal entry is in the S3 bucket");
    assert!(s3.head(&name).unwrap().is_none(), "the archive is in the vault, not the bucket");
    b.ok(&["sync", "-d", "glacier"], None);
    assert_eq!(b.show(false), a.show(false));
    assert_eq!(b.show(false)[0]["backend"], "glacier");
    b.ok(&["delete", "notes.txt", "-d", "glacier"], None);
    a.ok(&["sync", "-d", "glacier"], None);
    assert!(a.show(false).is_empty());
}

#[test]
fn rows_without_entries_are_published_on_request() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let store = LocalStore::open(&store_dir).unwrap();
    let a = host(t.path(), "a", &store_dir);
    let b = host(t.path(), "b", &store_dir);
    // Rows as an import from 0.6 leaves them: no journal entries.
    let mut plain = record("old", "20120101000000", 10, "x", "a");
    plain.backend = bakthat::model::Destination::Local;
    let mut enc = record("secret", "20120101000000", 11, "", "a");
    enc.backend = bakthat::model::Destination::Local;
    enc.stored_filename = StoredName::from_key("secret.20120101000000.tgz.enc");
    enc.metadata = json!({"is_enc": true});
    let mut gone = record("gone", "20120101000000", 12, "", "a");
    gone.backend = bakthat::model::Destination::Local;
    gone.is_deleted = true;
    for r in [&plain, &enc, &gone] {
        a.inventory.insert(r).unwrap();
    }
    let e = sync::publish_all(&a, &store, bakthat::model::Destination::Local, None).unwrap_err();
    assert!(e.to_string().contains("BAKTHAT_PASSWORD"), "{e}");
    assert_eq!(
        sync::publish_all(&a, &store, bakthat::model::Destination::Local, Some(&Secret::new(b"pw"))).unwrap(),
        3
    );
    // Published with the password, every entry is authenticated with it: none is read without it.
    let r = sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!((r.inserted, r.unreadable.len()), (0, 3), "{r:?}");
    let r = sync::sync_store(&b, &store, Some(&Secret::new(b"pw")), false).unwrap();
    assert_eq!((r.inserted, r.unreadable.len()), (3, 0), "{r:?}");
    let mut rows =
        b.inventory.search(&bakthat::inventory::Query { include_deleted: true, ..Default::default() }).unwrap();
    rows.sort_by(|x, y| x.stored_filename.cmp(&y.stored_filename));
    let got: Vec<(String, bool)> = rows.iter().map(|r| (r.stored_filename.to_string(), r.is_deleted)).collect();
    assert_eq!(
        got,
        [
            ("gone.20120101000000.tgz".to_string(), true),
            ("old.20120101000000.tgz".to_string(), false),
            ("secret.20120101000000.tgz.enc".to_string(), false)
        ]
    );
}

/// The names in a directory of a mounted tree.
fn fs_names(fs: &bakthat::fs::Fs, path: &str) -> Vec<String> {
    let mut ino = bakthat::fs::ROOT;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes()).unwrap().attr.ino;
    }
    fs.readdir(ino, 0).unwrap().into_iter().skip(2).map(|e| String::from_utf8(e.name).unwrap()).collect()
}

#[test]
fn a_running_mount_shows_synced_backups_without_a_remount() {
    use bakthat::fs::{Fs, MountOptions, OpenBackend};
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let a = host(t.path(), "a", &store_dir);
    let b = Arc::new(bakthat::client::Client::from_ctx(host(t.path(), "b", &store_dir)).unwrap());
    let store: Arc<dyn Backend> = Arc::new(LocalStore::open(&store_dir).unwrap());
    let mut opts = MountOptions::new(t.path().join("cache"));
    opts.refresh_interval = std::time::Duration::ZERO;
    let s2 = store.clone();
    let open: OpenBackend = Arc::new(move |_| Ok(s2.clone()));
    let fs = Fs::new(b.clone(), open, None, opts).unwrap();
    assert!(fs_names(&fs, "/by-name").is_empty());

    let src = t.path().join("project");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small.txt"), b"hello from a\n").unwrap();
    let rec =
        bakthat::ops::backup(&a, &bakthat::ops::BackupOptions { source: src, ..Default::default() }).unwrap().record;
    // `bakthat sync` runs in another process: another connection to B's inventory.
    let b_sync = host(t.path(), "b", &store_dir);
    sync::sync_store(&b_sync, store.as_ref(), None, false).unwrap();
    assert_eq!(fs_names(&fs, "/by-name"), ["project"]);
    let dates = fs_names(&fs, "/by-name/project");
    assert!(dates.contains(&"latest".to_string()) && dates.len() == 2, "{dates:?}");
    // A delete on A disappears from B's running mount after B's sync.
    bakthat::ops::delete(&a, &rec.stored_filename.to_string(), None, None).unwrap();
    sync::sync_store(&b_sync, store.as_ref(), None, false).unwrap();
    assert!(fs_names(&fs, "/by-name").is_empty());
}

// Regression (issue 11, item 1): one journal object dropped into a shared store put a row named `/abs/pwn.txt` or
// `../out/rel.txt` into every syncing host's inventory (and `restore` wrote there). Such entries are refused,
// reported and not retried; `sync --rebuild` refuses them too.
#[test]
fn journal_entries_with_hostile_names_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let store = LocalStore::open(&store_dir).unwrap();
    let c = host(t.path(), "c", &store_dir);
    let long = "x".repeat(300);
    let hostile = ["/tmp/x/pwn.txt", "../out/rel.txt", "a\0b", long.as_str(), ".."];
    for (i, name) in hostile.iter().enumerate() {
        let mut r = record("ok", &format!("2026010100000{i}"), 100, "", "evil");
        r.filename = name.to_string();
        journal::publish_backup(&store, &r, None, None).unwrap();
    }
    let mut r = record("ok", "20260101000009", 100, "", "evil");
    r.stored_filename = StoredName::from_key("../../outside.20260101000009.tgz");
    journal::publish_backup(&store, &r, None, None).unwrap();
    journal::publish_backup(&store, &record("fine", "20260101000000", 100, "", "a"), None, None).unwrap();
    for rebuild in [false, true] {
        let report = sync::sync_store(&c, &store, None, rebuild).unwrap();
        assert_eq!(report.unreadable.len(), hostile.len() + 1, "{report:?}");
        assert!(report.unreadable.iter().all(|(_, why)| why.starts_with("refusing a row whose")), "{report:?}");
        let rows = c.inventory.search(&Default::default()).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.filename.as_str()).collect();
        assert_eq!(names, ["fine"]);
    }
    let again = sync::sync_store(&c, &store, None, false).unwrap();
    assert_eq!((again.fetched, again.unreadable.len()), (0, 0), "refused entries are not read again: {again:?}");
}

// Issue 11 item 4: a journal entry carries the store of its backup. One naming another directory must not send this
// host's restore or delete there (an entry in a store's journal is about that store), and one that is not a store
// identity at all is refused as damaged, never applied.
#[test]
fn a_journal_entry_carrying_a_hostile_store_identity_is_not_believed() {
    let t = tempfile::tempdir().unwrap();
    let store_dir = t.path().join("store");
    let store = LocalStore::open(&store_dir).unwrap();
    let victim = t.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    let r = BackupRecord { backend: "local".parse().unwrap(), ..record("db", "20260101000000", 100, "", "mallory") };
    fs::write(victim.join(r.stored_filename.as_str()), b"precious").unwrap();
    let plant = |n: u64, record: &BackupRecord, store_id: &str| {
        let mut head = json!({ "kind": "backup", "record": record });
        head["record"]["store"] = json!(store_id);
        let key = format!("{}{:013}.{n:016x}", journal::JOURNAL_PREFIX, 1_700_000_000_000u64 + n);
        store.put_bytes(&key, format!("bakthat-record-1 {head}\n").as_bytes(), &PutOptions::default()).unwrap();
    };
    plant(1, &r, &format!("local:{}", victim.display()));
    let long = format!("s3:aws/{}", "b".repeat(5000));
    let hostile =
        ["local:../../etc", "local:relative/dir", "local:/a/../etc", "local:/x\n/y", "ftp:host/x", "local:", &long];
    for (i, id) in hostile.iter().enumerate() {
        plant(2 + i as u64, &record(&format!("bad{i}"), "20260101000000", 100, "", "mallory"), id);
    }
    let b = host(t.path(), "b", &store_dir);
    let rep = sync::sync_store(&b, &store, None, false).unwrap();
    assert_eq!((rep.inserted, rep.unreadable.len()), (1, hostile.len()), "{rep:?}");
    let row = b.inventory.get(&r.stored_filename).unwrap().unwrap();
    let own = format!("local:{}", fs::canonicalize(&store_dir).unwrap().display());
    assert_eq!(row.store.as_str(), own, "the journal's store, not the one the entry names");
    // Delete goes to the journal's store, never to the directory the entry named.
    let _ = bakthat::ops::delete(&b, "db", None, None);
    assert_eq!(fs::read(victim.join(r.stored_filename.as_str())).unwrap(), b"precious");
}
