//! The library client against moto S3 started by scripts/test.sh: a helper scope's backups, restore, rotation and
//! delete with `default_destination: s3`, and events carrying the destination. A missing server is a failure.

mod common;

use std::fs;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bakthat::archive::Secret;
use bakthat::client::Client;
use bakthat::config::Config;
use bakthat::storage::s3::S3Store;
use bakthat::storage::Backend;
use common::moto;

#[test]
fn the_client_drives_an_s3_bucket_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let endpoint = moto::endpoint();
    let bucket = moto::unique("client");
    let yaml = format!(
        "default:\n  default_destination: s3\n  access_key: test\n  secret_key: test\n  s3_bucket: {bucket}\n  \
         endpoint_url: {endpoint}\n  region_name: us-east-1\n  rotation: {{days: 1}}\n"
    );
    let config = Config::from_yaml(&t.path().join("bakthat.yml"), &yaml).unwrap();
    let mut client = Client::from_config(config, "default", &t.path().join("inv.sqlite")).unwrap();
    let clock = Arc::new(AtomicI64::new(1_357_009_200));
    let c2 = clock.clone();
    client.ctx_mut().clock = Arc::new(move || c2.load(Ordering::SeqCst));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    client.events().on_any(move |ev| s.lock().unwrap().push((ev.kind.name(), ev.session_id)));

    let password = Arc::new(Secret::new(b"correct horse"));
    let mut stored = Vec::new();
    for day in 0..2 {
        clock.store(1_357_009_200 + day * 86_400, Ordering::SeqCst);
        let scope = client.helper("mysql").unwrap().password(password.clone());
        fs::write(scope.path().join("all.sql"), format!("day {day}")).unwrap();
        let out = scope.backup().unwrap();
        assert_eq!(out.record.backend, "s3");
        stored.push(out.record.stored_filename.to_string());
    }
    let store = S3Store::new(&moto::s3_settings(&endpoint, &bucket)).unwrap();
    let keys: Vec<String> = store.list("mysql.").unwrap().into_iter().map(|o| o.key).collect();
    for s in &stored {
        assert!(keys.contains(s) && keys.contains(&format!("{s}.index")), "{s} not in {keys:?}");
    }
    let scope = client.helper("mysql").unwrap().password(password);
    let to = t.path().join("restored");
    scope.restore(&to).unwrap();
    assert_eq!(fs::read_to_string(to.join("mysql/all.sql")).unwrap(), "day 1");
    let plan = scope.rotate().unwrap();
    assert_eq!(plan.iter().filter(|p| !p.keep).count(), 1);
    assert!(store.head(&stored[0]).unwrap().is_none(), "rotation deleted the older archive from S3");
    client.delete("mysql", None).unwrap();
    assert!(store.head(&stored[1]).unwrap().is_none());
    drop(scope);
    let seen = seen.lock().unwrap();
    let backups: Vec<_> = seen.iter().filter(|(k, _)| k.ends_with("backup")).collect();
    assert_eq!(backups.len(), 4, "before/on for each of the two backups: {seen:?}");
    assert_eq!(backups[0].1, backups[1].1);
    assert_ne!(backups[1].1, backups[2].1);
}
