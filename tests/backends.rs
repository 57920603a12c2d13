//! The store conformance body run against every backend. S3, Glacier and Swift run against real servers started
//! by scripts/test.sh (moto, Swift all-in-one); a missing server is a failure, not a skip.

mod common;

use std::sync::Arc;

use bakthat::inventory::Inventory;
use bakthat::ops::InventoryCatalog;
use bakthat::storage::glacier::GlacierStore;
use bakthat::storage::local::LocalStore;
use bakthat::storage::s3::S3Store;
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
