//! The library client against moto S3 started by scripts/test.sh: a helper scope's backups, restore, rotation and
//! delete with `default_destination: s3`, and events carrying the destination. A missing server is a failure.

use crate::common;

use std::sync::Arc;

use bakthat::archive::Secret;
use bakthat::storage::s3::S3Store;
use bakthat::storage::Backend;
use common::client::Fixture;
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
    let f = Fixture::new(t.path(), &yaml);

    let password = Arc::new(Secret::new(b"correct horse"));
    let stored = f.two_daily_backups("mysql", &password, "s3");
    let store = S3Store::new(&moto::s3_settings(&endpoint, &bucket)).unwrap();
    let keys: Vec<String> = store.list("mysql.").unwrap().into_iter().map(|o| o.key).collect();
    for s in &stored {
        assert!(keys.contains(s) && keys.contains(&format!("{s}.index")), "{s} not in {keys:?}");
    }
    f.restore_rotate_delete(t.path(), "mysql", password, &store, &stored);
    // The KeyValue store of the same profile, from the same client.
    let kv = f.client.kv().unwrap();
    kv.set_key("settings", &serde_json::json!({"retention": 7}), true, None).unwrap();
    assert_eq!(kv.get_key("settings", None).unwrap(), Some(serde_json::json!({"retention": 7})));
    let seen = f.seen.lock().unwrap();
    let backups: Vec<_> = seen.iter().filter(|e| e.name.ends_with("backup")).collect();
    assert_eq!(backups.len(), 4, "before/on for each of the two backups: {seen:?}");
    assert_eq!(backups[0].session, backups[1].session);
    assert_ne!(backups[1].session, backups[2].session);
}
