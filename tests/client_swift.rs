//! The library client against the Swift all-in-one started by scripts/test.sh: the helper's backup, events,
//! restore, rotation and delete with `default_destination: swift`. A missing server is a failure, not a skip.

use std::fs;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bakthat::archive::Secret;
use bakthat::client::Client;
use bakthat::config::Config;
use bakthat::storage::swift::{AuthVersion, SwiftSettings, SwiftStore};
use bakthat::storage::Backend;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the Swift tests need the Swift all-in-one. Run scripts/test.sh, or \
             `scripts/swift-aio.sh start && eval \"$(scripts/swift-aio.sh env)\"` before cargo test"
        )
    })
}

#[test]
fn the_client_drives_a_swift_container_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let container = format!("bk-{}-{nanos}-client", std::process::id());
    let yaml = format!(
        "default:\n  default_destination: swift\n  access_key: '{}'\n  secret_key: '{}'\n  s3_bucket: {container}\n  \
         auth_url: {}\n  auth_version: '1'\n  rotation: {{days: 1}}\n",
        env("BAKTHAT_TEST_SWIFT_USER"),
        env("BAKTHAT_TEST_SWIFT_KEY"),
        env("BAKTHAT_TEST_SWIFT_AUTH"),
    );
    let config = Config::from_yaml(&t.path().join("bakthat.yml"), &yaml).unwrap();
    let mut client = Client::from_config(config, "default", &t.path().join("inv.sqlite")).unwrap();
    let clock = Arc::new(AtomicI64::new(1_357_009_200));
    let c2 = clock.clone();
    client.ctx_mut().clock = Arc::new(move || c2.load(Ordering::SeqCst));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    client
        .events()
        .on_any(move |ev| s.lock().unwrap().push((ev.kind.name(), ev.session_id, ev.destination.map(String::from))));

    let store = SwiftStore::new(&SwiftSettings {
        auth_url: env("BAKTHAT_TEST_SWIFT_AUTH"),
        auth_version: AuthVersion::V1,
        user: env("BAKTHAT_TEST_SWIFT_USER"),
        key: env("BAKTHAT_TEST_SWIFT_KEY"),
        container: container.clone(),
        ..SwiftSettings::default()
    })
    .unwrap();
    let password = Arc::new(Secret::new(b"correct horse"));
    let mut stored = Vec::new();
    for day in 0..2 {
        clock.store(1_357_009_200 + day * 86_400, Ordering::SeqCst);
        let scope = client.helper("pgdump").unwrap().password(password.clone());
        fs::write(scope.path().join("all.sql"), format!("day {day}")).unwrap();
        let out = scope.backup().unwrap();
        assert_eq!(out.record.backend, "swift");
        stored.push(out.record.stored_filename.to_string());
    }
    let keys: Vec<String> = store.list("pgdump.").unwrap().into_iter().map(|o| o.key).collect();
    for s in &stored {
        assert!(keys.contains(s), "{s} not in {keys:?}");
    }

    let scope = client.helper("pgdump").unwrap().password(password);
    let to = t.path().join("restored");
    scope.restore(&to).unwrap();
    assert_eq!(fs::read_to_string(to.join("pgdump/all.sql")).unwrap(), "day 1");
    let plan = scope.rotate().unwrap();
    assert_eq!(plan.iter().filter(|p| !p.keep).count(), 1);
    assert!(store.head(&stored[0]).unwrap().is_none(), "rotation deleted the older archive from Swift");
    client.delete("pgdump", None).unwrap();
    assert!(store.head(&stored[1]).unwrap().is_none());
    drop(scope);

    let seen = seen.lock().unwrap();
    let names: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
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
    assert!(seen.chunks(2).all(|p| p[0].1 == p[1].1));
    assert_eq!(seen[0].2.as_deref(), Some("swift"));
}
