//! The library client against the Swift all-in-one started by scripts/test.sh: the helper's backup, events,
//! restore, rotation and delete with `default_destination: swift`. A missing server is a failure, not a skip.

use crate::common;

use std::sync::Arc;

use bakthat::archive::Secret;
use bakthat::storage::swift::SwiftStore;
use bakthat::storage::Backend;
use common::client::Fixture;
use common::swift::{self, env};

#[test]
fn the_client_drives_a_swift_container_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let container = swift::unique("client");
    let yaml = format!(
        "default:\n  default_destination: swift\n  access_key: '{}'\n  secret_key: '{}'\n  s3_bucket: {container}\n  \
         auth_url: {}\n  auth_version: '1'\n  rotation: {{days: 1}}\n",
        env("BAKTHAT_TEST_SWIFT_USER"),
        env("BAKTHAT_TEST_SWIFT_KEY"),
        env("BAKTHAT_TEST_SWIFT_AUTH"),
    );
    let f = Fixture::new(t.path(), &yaml);

    let store = SwiftStore::new(&swift::settings(&container)).unwrap();
    let password = Arc::new(Secret::new(b"correct horse"));
    let stored = f.two_daily_backups("pgdump", &password, "swift");
    let keys: Vec<String> = store.list("pgdump.").unwrap().into_iter().map(|o| o.key).collect();
    for s in &stored {
        assert!(keys.contains(s), "{s} not in {keys:?}");
    }
    f.restore_rotate_delete(t.path(), "pgdump", password, &store, &stored);

    let seen = f.seen.lock().unwrap();
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "before_backup",
            "on_backup",
            "before_backup",
            "on_backup",
            "before_restore",
            "on_restore",
            "before_rotate_backups",
            "on_rotate_backups",
            "before_delete",
            "on_delete"
        ]
    );
    assert!(seen.chunks(2).all(|p| p[0].session == p[1].session));
    assert_eq!(seen[0].destination.as_deref(), Some("swift"));
}
