//! The integration tests, linked as one binary (as rustic and mountpoint-s3 do): each of the ~17 files linked
//! the whole crate and the AWS SDK on its own, so a change to `src/` relinked 17 binaries of ~300 MB each. A
//! module per area, named as the file was, so a test reads `cli::backup_then_restore`; select an area with
//! `cargo nextest run -E 'test(/^cli::/)'` (or `cargo test --test it cli::`). `common` holds the shared setup.
//! The real-kernel mount tests are their own binary (`mount-tests/`).

mod common;

mod archive;
mod aws_stores;
mod backends;
mod cli;
mod cli_stores;
mod cli_swift;
mod client;
mod client_s3;
mod client_swift;
mod decrypt_script;
mod glacier_inventory;
mod incremental;
mod kv_share;
mod legacy_vectors;
mod ops;
mod plugins;
mod swift_tls;
mod sync;
mod sync_server;
mod zstd_archives;
