//! The store conformance body run against every backend. S3, Glacier and Swift run against real servers started
//! by scripts/test.sh (moto, Swift all-in-one); a missing server is a failure, not a skip.

mod common;

use bakthat::storage::local::LocalStore;

#[test]
fn local_store_conforms() {
    let t = tempfile::tempdir().unwrap();
    let s = LocalStore::open(&t.path().join("store")).unwrap();
    common::backend::conformance(&s, "conf-", 12 << 20);
}
