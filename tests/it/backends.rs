//! The store conformance body run against every backend. S3, Glacier and Swift run against real servers started
//! by scripts/test.sh (moto, Swift all-in-one); a missing server is a failure, not a skip.

use crate::common;

use std::sync::Arc;

use bakthat::inventory::Inventory;
use bakthat::storage::glacier::GlacierStore;
use bakthat::storage::local::LocalStore;
use bakthat::storage::s3::S3Store;
use bakthat::stores::InventoryCatalog;
use common::moto;

#[test]
fn local_store_conforms() {
    let t = tempfile::tempdir().unwrap();
    let s = LocalStore::open(&t.path().join("store")).unwrap();
    common::backend::conformance(&s, "conf-", 12 << 20);
}

#[test]
fn s3_conforms() {
    let s = S3Store::new(&moto::s3_settings(&moto::endpoint(), &moto::unique("conf"))).unwrap();
    // 20 MiB: three parts of 8 MiB, so the multipart path runs.
    common::backend::conformance(&s, "conf-", 20 << 20);
}

#[test]
fn glacier_conforms() {
    let catalog = Arc::new(InventoryCatalog::new(Arc::new(Inventory::open_in_memory().unwrap())));
    let s = GlacierStore::new(&moto::glacier_settings(&moto::endpoint(), &moto::unique("conf")), catalog).unwrap();
    // moto has no Glacier multipart uploads: 3 MiB stays under the single-upload limit.
    common::backend::conformance(&s, "conf-", 3 << 20);
}

// ---- Swift (the all-in-one started by scripts/test.sh) -------------------------------------------------------------

mod swift {
    use std::io::{Read, Write};

    use bakthat::storage::swift::{SwiftSettings, SwiftStore};
    use bakthat::storage::{Backend, PutOptions, StorageError};

    pub use crate::common::swift::{env, unique};

    /// The all-in-one's settings for `container`, with 4 MiB segments so the segmented path runs.
    pub fn settings(container: &str) -> SwiftSettings {
        SwiftSettings { segment_size: 4 << 20, ..crate::common::swift::settings(container) }
    }

    /// A raw v1 session (storage URL, token) for checks behind the store's back.
    fn raw_session() -> (reqwest::blocking::Client, String, String) {
        let client = reqwest::blocking::Client::new();
        let resp = client
            .get(env("BAKTHAT_TEST_SWIFT_AUTH"))
            .header("X-Auth-User", env("BAKTHAT_TEST_SWIFT_USER"))
            .header("X-Auth-Key", env("BAKTHAT_TEST_SWIFT_KEY"))
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "raw auth: {}", resp.status());
        let h = |n: &str| resp.headers()[n].to_str().unwrap().to_string();
        let (url, token) = (h("X-Storage-Url"), h("X-Auth-Token"));
        (client, url, token)
    }

    fn raw_put(path: &str, body: Vec<u8>, query: &str) -> String {
        let (client, url, token) = raw_session();
        let resp = client.put(format!("{url}/{path}{query}")).header("X-Auth-Token", token).body(body).send().unwrap();
        assert!(resp.status().is_success(), "PUT {path}: {}", resp.status());
        resp.headers()["Etag"].to_str().unwrap().trim_matches('"').to_string()
    }

    fn raw_container_exists(container: &str) -> bool {
        let (client, url, token) = raw_session();
        let resp = client.head(format!("{url}/{container}")).header("X-Auth-Token", token).send().unwrap();
        resp.status().is_success()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 + i / 4093) as u8).collect()
    }

    #[test]
    fn swift_conforms() {
        let container = unique("conf");
        assert!(!raw_container_exists(&container));
        let s = SwiftStore::new(&settings(&container)).unwrap();
        assert!(raw_container_exists(&container), "a missing container is created");
        // 12 MiB with 4 MiB segments: the large object is an SLO of three segments.
        super::common::backend::conformance(&s, "conf-", 12 << 20);
        assert_eq!(s.list_segments("").unwrap(), Vec::<String>::new(), "deleting the SLO deleted its segments");
    }

    #[test]
    fn swift_segments_are_hidden_until_commit_and_removed_on_abort() {
        let s = SwiftStore::new(&settings(&unique("abort"))).unwrap();
        let big = data(9 << 20);
        let mut up = s.create("big.tgz", &PutOptions::default()).unwrap();
        up.write_all(&big).unwrap();
        // Two full segments went to the segments container; the object is not visible yet.
        up.write_all(b"x").unwrap();
        assert!(s.head("big.tgz").unwrap().is_none());
        assert_eq!(s.list("").unwrap(), vec![]);
        assert!(!s.list_segments("big.tgz/slo/").unwrap().is_empty(), "segments are uploaded while writing");
        drop(up);
        assert_eq!(s.list_segments("").unwrap(), Vec::<String>::new(), "an aborted upload leaves no segments");

        // A committed SLO: listing and head report the whole size; segments live beside the container.
        let mut up = s.create("big.tgz", &PutOptions::default()).unwrap();
        up.write_all(&big).unwrap();
        let info = up.commit().unwrap();
        assert_eq!(info.size, big.len() as u64);
        assert!(info.modified.is_some());
        assert_eq!(s.list_segments("big.tgz/slo/").unwrap().len(), 3);
        assert_eq!(s.head("big.tgz").unwrap().unwrap().size, big.len() as u64);
        let listed = s.list("big").unwrap();
        assert_eq!((listed.len(), listed[0].size), (1, big.len() as u64));
        assert!(listed[0].modified.is_some());
        // A range across the first segment boundary.
        let r = s.get_range("big.tgz", (4 << 20) - 10, 20).unwrap();
        assert_eq!(r, &big[(4 << 20) - 10..(4 << 20) + 10]);
        // Overwriting with a small object, then deleting: the small one is plain, its delete works too.
        s.delete("big.tgz").unwrap();
        assert_eq!(s.list_segments("").unwrap(), Vec::<String>::new());
        s.put_bytes("big.tgz", b"small", &PutOptions::default()).unwrap();
        s.delete("big.tgz").unwrap();
        assert!(s.head("big.tgz").unwrap().is_none());
    }

    #[test]
    fn swift_nested_manifests_round_trip() {
        // 1 MiB segments, 2 per manifest: 5.5 MiB is 6 segments under 3 + 2 nested manifests.
        let mut cfg = settings(&unique("nested"));
        cfg.segment_size = 1 << 20;
        cfg.manifest_segments = 2;
        let s = SwiftStore::new(&cfg).unwrap();
        let big = data((11 << 20) / 2);
        let mut up = s.create("n.tgz", &PutOptions::default()).unwrap();
        for piece in big.chunks(333_333) {
            up.write_all(piece).unwrap();
        }
        assert_eq!(up.commit().unwrap().size, big.len() as u64);
        assert_eq!(s.list_segments("").unwrap().len(), 6 + 3 + 2);
        let mut got = Vec::new();
        s.get("n.tgz").unwrap().read_to_end(&mut got).unwrap();
        assert!(got == big, "nested SLO round trip");
        assert_eq!(s.get_range("n.tgz", (2 << 20) - 3, 6).unwrap(), &big[(2 << 20) - 3..(2 << 20) + 3]);
        s.delete("n.tgz").unwrap();
        assert_eq!(s.list_segments("").unwrap(), Vec::<String>::new(), "a nested delete removes every level");
    }

    #[test]
    fn swift_cleanup_removes_old_unreferenced_segments_only() {
        let container = unique("cleanup");
        let s = SwiftStore::new(&settings(&container)).unwrap();
        let segs = s.segments_container().to_string();
        // Make the segments container by committing a real SLO (fresh, referenced).
        let mut up = s.create("live.tgz", &PutOptions::default()).unwrap();
        up.write_all(&data(5 << 20)).unwrap();
        up.commit().unwrap();
        // Left by a process killed long ago: removed.
        raw_put(&format!("{segs}/gone.tgz/slo/1000-dead/00000001"), data(10), "");
        raw_put(&format!("{segs}/gone.tgz/slo/1000-dead/00000002"), data(10), "");
        // Old but referenced by a committed manifest: kept.
        let etag = raw_put(&format!("{segs}/kept.tgz/slo/2000-live/00000001"), data(10), "");
        let manifest = format!(r#"[{{"path": "/{segs}/kept.tgz/slo/2000-live/00000001", "etag": "{etag}"}}]"#);
        raw_put(&format!("{container}/kept.tgz"), manifest.into_bytes(), "?multipart-manifest=put");
        // Recent (another backup may be uploading it right now): kept.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        raw_put(&format!("{segs}/busy.tgz/slo/{now}-busy/00000001"), data(10), "");

        assert_eq!(s.cleanup().unwrap(), 2);
        let left = s.list_segments("").unwrap();
        assert!(left.iter().all(|n| !n.starts_with("gone.tgz/")), "{left:?}");
        assert_eq!(left.iter().filter(|n| n.starts_with("kept.tgz/")).count(), 1, "{left:?}");
        assert_eq!(left.iter().filter(|n| n.starts_with("busy.tgz/")).count(), 1, "{left:?}");
        assert_eq!(left.iter().filter(|n| n.starts_with("live.tgz/")).count(), 2, "{left:?}");
        assert_eq!(s.cleanup().unwrap(), 0);
        assert_eq!(s.get_range("kept.tgz", 0, 100).unwrap(), data(10));
    }

    #[test]
    fn swift_wrong_key_is_an_auth_error_that_says_what_to_check() {
        let mut cfg = settings(&unique("auth"));
        cfg.key = "not-the-key".into();
        let err = SwiftStore::new(&cfg).expect_err("a wrong key is refused");
        assert!(matches!(err, StorageError::Auth { .. }), "{err:?}");
        let text = bakthat::error_chain(&err);
        for word in ["access_key", "secret_key", "auth_url", "401"] {
            assert!(text.contains(word), "{word} missing from: {text}");
        }
    }

    #[test]
    fn swift_insecure_flag_is_accepted() {
        let mut cfg = settings(&unique("insecure"));
        cfg.insecure = true;
        let s = SwiftStore::new(&cfg).unwrap();
        s.put_bytes("a", b"plain http with verification off", &PutOptions::default()).unwrap();
        let mut got = String::new();
        s.get("a").unwrap().read_to_string(&mut got).unwrap();
        assert_eq!(got, "plain http with verification off");
        s.delete("a").unwrap();
    }
}
